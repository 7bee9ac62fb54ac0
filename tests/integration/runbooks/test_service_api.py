"""The API later commands build on: steps and Python callables on --env hosts, recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from celery_app.infra.models import Base
from runbooks import service
from runbooks.actions.base import Outcome, StepContext
from runbooks.engine import history
from tests.support.sshd import SSHHost

pytestmark = pytest.mark.ssh


def test_migration_0002_matches_the_history_models(app: Any) -> None:
    with app.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_run_steps_on_env_hosts_is_recorded(
    app: Any, inventory_dir: Path, sshd_hosts: list[SSHHost]
) -> None:
    result, _ = service.run_steps(
        app,
        "workers.restart",
        [{"name": "restart", "shell": "echo restarted > {{ root }}/restarted"}],
        environment="test",
        environ={},
        limit=f"{sshd_hosts[0].name},{sshd_hosts[2].name}",
        inventory_dir=inventory_dir,
    )
    assert result.ok and list(result.hosts) == [sshd_hosts[0].name, sshd_hosts[2].name]
    assert [(h.root / "restarted").exists() for h in sshd_hosts] == [True, False, True, False]
    assert result.run_id is not None
    assert history.get_run(app.sessions, result.run_id)["name"] == "workers.restart"


def test_run_python_gets_each_hosts_target_and_honours_check_mode(
    app: Any, inventory_dir: Path, sshd_hosts: list[SSHHost]
) -> None:
    def purge(ctx: StepContext, params: dict[str, Any]) -> Outcome:
        found = ctx.target.run("uname -n; echo $MAQSAFY_HOST_ROOT")
        if ctx.check:
            return Outcome("changed", f"would purge {params['queue']}")
        ctx.target.put(b"purged\n", f"{ctx.vars['root']}/purged", 0o600)
        return Outcome("changed", f"purged {params['queue']}", {"seen": found.stdout.split()})

    checked, _ = service.run_python(
        app,
        "queue.purge",
        purge,
        environment="test",
        environ={},
        check=True,
        params={"queue": "ops"},
        inventory_dir=inventory_dir,
    )
    assert checked.ok and not any((h.root / "purged").exists() for h in sshd_hosts)
    done, _ = service.run_python(
        app,
        "queue.purge",
        purge,
        environment="test",
        environ={},
        params={"queue": "ops"},
        inventory_dir=inventory_dir,
    )
    assert done.ok and all((h.root / "purged").read_text() == "purged\n" for h in sshd_hosts)
    seen = done.hosts[sshd_hosts[1].name].steps[0].data["seen"]
    assert seen[-1] == str(sshd_hosts[1].root)
    assert history.get_run(app.sessions, done.run_id or 0)["status"] == "ok"
