"""A deploy whose health gate failed can be recovered by the same deploy; what shared/.env needs.

One real sshd host, the test's Redis and PostgreSQL, and the workers the deploys start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from celery_app.celery import make_app
from celery_app.ops import workers
from celery_app.settings import load_settings
from runbooks.deploy import rollout
from runbooks.engine import history
from tests.support.deploy import Fleet, make_fleet
from tests.support.money import MoneyEnv
from tests.support.services import RedisServer, free_port
from tests.support.sshd import SSHHost

pytestmark = pytest.mark.ssh


def deploy(money: MoneyEnv, fleet: Fleet, repo: Path, ref: str) -> rollout.DeployReport:
    request = rollout.DeployRequest(
        environment="test",
        ref=ref,
        repo=repo,
        inventory_dir=fleet.inventory_dir,
        deps_cache=fleet.deps_cache,
    )
    return rollout.deploy(money.container, request, {})


def step_messages(money: MoneyEnv, report: rollout.DeployReport, phase: str) -> dict[str, Any]:
    steps = history.get_run(money.container.sessions, report.phases[phase]["run_id"])["steps"]
    return {s["action"]: s["message"] for s in steps}


def test_a_failed_gate_is_fixed_by_the_same_deploy_and_a_crashing_release_fails_at_once(
    tmp_path: Path,
    money: MoneyEnv,
    redis_server: RedisServer,
    sshd_hosts: list[SSHHost],
    repo: Path,
    deps_cache: Path,
) -> None:
    host = sshd_hosts[0]
    fleet = make_fleet(
        tmp_path / "inventory",
        [host],
        redis_server.url,
        money.env["DATABASE_URL"],
        deps_cache=deps_cache,
    )
    env_file = fleet.app_dir(host) / "shared" / ".env"
    good = env_file.read_text()
    try:
        # No settings: the preflight says which the host needs (placeholders, not values).
        env_file.unlink()
        missing = deploy(money, fleet, repo, "v1")
        assert not missing.ok and "shared/.env is missing" in missing.message
        for name in ("DATABASE_URL=postgresql", "REDIS_URL=redis://", "REDIS_HOST", "README"):
            assert name in missing.message
        env_file.write_text("DATABASE_URL=sqlite:////nowhere.db\n")
        partial = deploy(money, fleet, repo, "v1")
        assert "does not set REDIS_URL" in partial.message

        # A broker the worker cannot reach: the gate fails without waiting out its timeout,
        # naming the cause and what to do; the release stays current.
        env_file.write_text(good.replace(redis_server.url, f"redis://127.0.0.1:{free_port()}/0"))
        bad = deploy(money, fleet, repo, "v1")
        assert not bad.ok
        assert "w1@host0 cannot reach its broker" in bad.message
        assert "run the same deploy again" in bad.message
        assert "invoke deploy.rollback --env test" in bad.message
        assert fleet.current(host) == bad.release

        # Settings fixed, the same deploy again restarts the unhealthy worker: ok.
        env_file.write_text(good)
        fixed = deploy(money, fleet, repo, "v1")
        assert fixed.ok, fixed.message
        assert fixed.release == bad.release and fixed.hosts["host0"]["status"] == "changed"
        restarted = step_messages(money, fixed, "rollout")["deploy.restart"]
        assert restarted.startswith(f"restarted w1@host0 on {fixed.release} (not healthy: ")
        celery = make_app(load_settings(money.env))
        assert {s.name: s.release for s in workers.status(celery, timeout=2.0)} == {
            "w1@host0": fixed.release
        }
        again = deploy(money, fleet, repo, "v1")
        assert again.ok and again.hosts["host0"]["status"] == "ok"

        # A release whose worker exits as soon as it starts: failed at once, with its last words.
        broken = deploy(money, fleet, repo, "broken")
        assert not broken.ok
        assert "w1@host0 exited: RuntimeError: this release cannot start" in broken.message
        back = rollout.rollback(
            money.container, "test", {}, inventory_dir=fleet.inventory_dir, to=fixed.release
        )
        assert back.ok, back.message
        assert fleet.current(host) == fixed.release
    finally:
        fleet.kill_workers()
