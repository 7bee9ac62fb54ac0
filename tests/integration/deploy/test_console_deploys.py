"""The operator's deploy-side day from the browser: the console's Deploys and Workers actions
against real sshd hosts, real Redis, PostgreSQL and the workers the deploys start.

v1 goes out through the service function `invoke deploy` calls; then, signed in to a console
served by uvicorn, an operator checks a deploy of v2 and acts on that check (each host on v2),
checks a rollback to v1 and acts on it (each host back on v1), and restarts the workers
gracefully (their pids change). The refusals ride the same fixture setup: a viewer, a missing
CSRF token, another operator's check, a stale one, a spent one, a check of another action, and
the deploy lock held by someone else; and on an environment that requires approval, the real
rollback becomes an approval request, as on the command line.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from celery_app.bootstrap import Container
from celery_app.celery import make_app
from celery_app.ops import workers
from runbooks.access import approvals, operators
from runbooks.console import app as web
from runbooks.console import wiring
from runbooks.deploy import rollout
from runbooks.deploy.lock import DeployLock
from runbooks.engine import history
from tests.support.console import Browser, Served
from tests.support.console import run_finished as finished
from tests.support.console import run_started as started
from tests.support.deploy import Fleet
from tests.support.money import MoneyEnv

pytestmark = pytest.mark.ssh
ACCOUNTS = {"root": "admin", "ana": "operator", "bob": "operator", "val": "viewer"}


def runs(app: Container) -> int:
    with app.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(history.OpsRun)) or 0)


def test_rollback_deploy_and_restart_from_the_browser(
    money: MoneyEnv, fleets: Any, repo: Path
) -> None:
    fleet: Fleet = fleets(2)
    app = money.container
    control = make_app(app.settings)

    def deploy(ref: str) -> str:
        asked = rollout.DeployRequest(
            environment="test",
            ref=ref,
            repo=repo,
            serial=None,
            inventory_dir=fleet.inventory_dir,
            deps_cache=fleet.deps_cache,
        )
        report = rollout.deploy(app, asked, {})
        assert report.ok, report.message
        return report.release

    v1 = deploy("v1")
    for name, role in ACCOUNTS.items():
        operators.add(app.sessions, name, role, f"{name}-password-long", "test")
    console = wiring.wire(
        app, control, workers_timeout=0.2, inventory_dir=fleet.inventory_dir, repo=repo
    )
    served = Served(web.build(console))
    browsers: dict[str, Browser] = {}
    try:
        for name in ("ana", "bob", "val"):
            browsers[name] = Browser(served.url)
            assert browsers[name].sign_in(name, f"{name}-password-long").status_code == 303
        ana, bob, val = browsers["ana"], browsers["bob"], browsers["val"]

        page = ana.get("/deploys")
        assert page.status_code == 200 and 'id="act-test"' in page.text
        assert f'<option value="{v1}">' in page.text  # a release the deploy log names
        assert 'id="deploy-actions"' not in val.get("/deploys").text  # no forms for a viewer

        # Check mode first: nothing changes, the run's page offers the real deploy.
        check = started(ana.post("/deploys/deploy", {"env": "test", "ref": "v2"}))
        checked = finished(app, check)
        assert checked["status"] == "ok" and checked["check"] and checked["operator"] == "ana"
        assert [fleet.current(h) for h in fleet.hosts] == [v1, v1]
        shown = ana.get(f"/runs/{check}").text
        assert 'id="next-action"' in shown and f'name="check_run" value="{check}"' in shown
        assert "RECAP deploy" in shown and "(check mode)" in shown  # what it would do
        assert 'id="next-action"' not in bob.get(f"/runs/{check}").text

        # Refusals: each one records nothing and changes nothing.
        before = runs(app)
        real = {"env": "test", "ref": "v2", "check_run": str(check)}
        assert ana.post("/deploys/deploy", real, csrf="").status_code == 403
        foreign = bob.post("/deploys/deploy", real)
        assert foreign.status_code == 400 and "was run by ana" in foreign.text
        other = ana.post("/deploys/deploy", {**real, "ref": "v1"})
        assert other.status_code == 400 and "checked another action" in other.text
        mixed = ana.post("/deploys/rollback", {"env": "test", "check_run": str(check)})
        assert mixed.status_code == 400 and "not a check of deploy.rollback" in mixed.text
        viewer = val.post("/deploys/rollback", {"env": "test", "to": v1})
        assert viewer.status_code == 403 and "needs the operator role" in viewer.text
        assert val.post("/workers/restart", {"env": "test"}).status_code == 403
        nohost = ana.post("/workers/restart", {"env": "test", "limit": "host9"})
        assert nohost.status_code == 404 and "host9" in nohost.text
        stale = history.record_command(
            app.sessions,
            "deploy.rollback",
            environment="test",
            arguments={"env": "test", "to": v1, "limit": None, "check": True},
            check=True,
            started_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20),
            operator="ana",
        )
        before += 1
        old = ana.post("/deploys/rollback", {"env": "test", "to": v1, "check_run": str(stale)})
        assert old.status_code == 400 and "min old" in old.text
        bad = ana.post("/deploys/deploy", {"env": "test", "ref": "no-such-ref"})
        assert bad.status_code == 400 and "is not a commit" in bad.text
        assert runs(app) == before
        assert [fleet.current(h) for h in fleet.hosts] == [v1, v1]

        # Someone else's deploy holds the lock: the deploy is recorded, refused in one line.
        held = DeployLock(app.redis("locks"), rollout.lock_key(app, "test"), "test", "someone")
        held.acquire()
        try:
            locked = finished(app, started(ana.post("/deploys/deploy", real)))
        finally:
            held.release()
        assert locked["status"] == "failed" and "being deployed by someone" in locked["message"]
        assert "\n" not in locked["message"]
        spent = ana.post("/deploys/deploy", real)
        assert spent.status_code == 400 and "already acted on" in spent.text

        # A fresh check, then the deploy itself: every host on v2.
        check = started(ana.post("/deploys/deploy", {"env": "test", "ref": "v2"}))
        assert finished(app, check)["status"] == "ok"
        went = finished(
            app, started(ana.post("/deploys/deploy", {**real, "check_run": str(check)}))
        )
        assert went["status"] == "ok" and went["operator"] == "ana" and not went["check"], went
        v2 = fleet.current(fleet.hosts[0])
        assert v2 != v1 and [fleet.current(h) for h in fleet.hosts] == [v2, v2]

        # Check, then roll back to v1: every host back on v1, its workers too.
        check = started(ana.post("/deploys/rollback", {"env": "test", "to": v1}))
        assert finished(app, check)["status"] == "ok"
        assert [fleet.current(h) for h in fleet.hosts] == [v2, v2]
        go = {"env": "test", "to": v1, "check_run": str(check)}
        back = finished(app, started(ana.post("/deploys/rollback", go)))
        assert back["status"] == "ok" and back["operator"] == "ana" and not back["check"]
        assert {h["host"]: h["message"] for h in back["hosts"]} == {
            "host0": f"release {v1}",
            "host1": f"release {v1}",
        }
        assert [fleet.current(h) for h in fleet.hosts] == [v1, v1]
        assert {s.release for s in workers.status(control, timeout=2.0)} == {v1}
        assert f"RECAP rollback {v1} on test" in ana.get(f"/runs/{back['id']}").text

        # An environment that requires approval: the checked rollback becomes a request.
        gated = yaml.safe_load((fleet.inventory_dir / "test.yml").read_text())
        gated.update(environment="gated", approval="required")
        (fleet.inventory_dir / "gated.yml").write_text(yaml.safe_dump(gated, sort_keys=False))
        assert "approval required" in ana.get("/deploys").text
        check = history.record_command(
            app.sessions,
            "deploy.rollback",
            environment="gated",
            arguments={"env": "gated", "to": None, "limit": None, "check": True},
            check=True,
            operator="ana",
        )
        before = runs(app)
        ask = {"env": "gated", "check_run": str(check)}
        unsaid = ana.post("/deploys/rollback", ask)
        assert unsaid.status_code == 403 and "needs an approval" in unsaid.text
        requested = ana.post("/deploys/rollback", {**ask, "reason": "v1 misbehaves"})
        assert requested.status_code == 202 and "requested" in requested.text, requested.text
        [pending] = approvals.list_approvals(app.sessions, "pending")
        assert (pending["command"], pending["environment"]) == ("deploy.rollback", "gated")
        assert pending["requested_by"] == "ana" and pending["reason"] == "v1 misbehaves"
        assert runs(app) == before and [fleet.current(h) for h in fleet.hosts] == [v1, v1]

        # The Workers page restarts them gracefully: new processes, on the live release.
        assert 'id="restart-test"' in ana.get("/workers").text
        pids = {s.name: s.pid for s in workers.status(control, timeout=2.0)}
        restart = finished(app, started(ana.post("/workers/restart", {"env": "test"})))
        assert restart["name"] == "workers-restart" and restart["status"] == "ok"
        assert restart["operator"] == "ana"
        after = {s.name: (s.pid, s.release) for s in workers.status(control, timeout=2.0)}
        assert set(after) == set(pids) == {"w1@host0", "w1@host1"}
        assert all(after[n][0] != pids[n] and after[n][1] == v1 for n in after)
    finally:
        for b in browsers.values():
            b.close()
        served.stop()  # waits for any action still running
        control.close()
