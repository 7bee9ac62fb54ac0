"""`invoke deploy` against real sshd hosts, real Redis, PostgreSQL and the workers it starts.

Every host's workers are started by the deploy itself (celery multi from the release's .venv)
and answer as w1@<host>; the laptop side (this process) submits payments the whole time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from celery_app.celery import make_app
from celery_app.infra import migrate
from celery_app.money import settlement
from celery_app.ops import workers
from celery_app.settings import load_settings
from runbooks.deploy import release, rollout
from runbooks.engine import history
from tests.support.deploy import Fleet, make_fleet, on_host
from tests.support.money import MoneyEnv, start_shopping
from tests.support.services import RedisServer
from tests.support.sshd import SSHHost, start_sshd

pytestmark = pytest.mark.ssh


def request(fleet: Fleet, repo: Path, ref: str, **options: Any) -> rollout.DeployRequest:
    return rollout.DeployRequest(
        environment="test",
        ref=ref,
        repo=repo,
        inventory_dir=fleet.inventory_dir,
        deps_cache=fleet.deps_cache,
        **options,
    )


def releases_reported(money: MoneyEnv) -> dict[str, str]:
    celery = make_app(load_settings(money.env))
    return {s.name: s.release for s in workers.status(celery, timeout=2.0)}


def test_v1_then_v2_while_money_flows_then_rollback(
    money: MoneyEnv, fleet: Fleet, repo: Path
) -> None:
    app = money.container
    first = rollout.deploy(app, request(fleet, repo, "v1", serial=None), {})
    assert first.ok, first.message
    v1 = first.release
    assert {h: row["release"] for h, row in first.hosts.items()} == dict.fromkeys(
        ["host0", "host1", "host2"], v1
    )
    assert releases_reported(money) == {f"w1@host{i}": v1 for i in range(3)}
    # The release runs on the host's own copy of the dependency layer, not this machine's.
    for host in fleet.hosts:
        deps = fleet.app_dir(host) / "deps"
        (pth,) = (fleet.app_dir(host) / "releases" / v1).glob(".venv/lib/*/*/maqsafy_release.pth")
        assert pth.read_text().split()[1] == f"{deps}/{first.phases['build']['deps']}"
        code = "import celery, sys; print(celery.__file__); print(sys.path)"
        where = on_host(host, f"cd {fleet.app_dir(host)}/current && .venv/bin/python -c '{code}'")
        assert where.splitlines()[0].startswith(f"{deps}/")
        assert release.deps_site() not in where  # the laptop's site-packages is not used

    # Check mode changes nothing on any host, and says what it would do.
    before = fleet.tree()
    checked = rollout.deploy(app, request(fleet, repo, "v2", check=True), {})
    assert checked.ok and fleet.tree() == before
    assert all(
        row["release"] == v1 and row["status"] == "changed" for row in checked.hosts.values()
    )
    said = history.get_run(app.sessions, checked.phases["rollout"]["run_id"])["steps"]
    assert {s["message"] for s in said if s["action"] == "deploy.restart"} == {
        f"check mode: would restart w1@host{i} on {checked.release}" for i in range(3)
    }
    assert releases_reported(money) == {f"w1@host{i}": v1 for i in range(3)}

    shopping = start_shopping(money, 10)
    try:
        second = rollout.deploy(app, request(fleet, repo, "v2", serial=1, max_fail=0), {})
    finally:
        shopping.stop.set()
        shopping.join()
    assert second.ok, second.message
    v2 = second.release
    assert v2 != v1 and v2.endswith(second.release[-7:])
    assert all(fleet.current(h) == v2 for h in fleet.hosts)
    assert migrate.current(app.engine) == "9001"  # migrated once, before any host switched
    assert releases_reported(money) == {f"w1@host{i}": v2 for i in range(3)}
    rollout_run = history.get_run(app.sessions, second.phases["rollout"]["run_id"])
    assert sorted({h["batch"] for h in rollout_run["hosts"]}) == [1, 2, 3]
    shipped = history.get_run(app.sessions, second.phases["ship"]["run_id"])["steps"]
    assert {s["status"] for s in shipped if s["action"] == "deploy.deps"} == {"ok"}  # reused

    money.wait_settled(relay=False)  # graceful restarts hand messages back: nothing lost
    assert shopping.submitted > 0
    assert sum(money.statuses().values()) == 10 + shopping.submitted
    assert max(money.postings_per_request().values()) == 1  # none posted twice
    assert settlement.reconcile(app).balanced

    again = rollout.deploy(app, request(fleet, repo, "v2"), {})
    assert again.ok and again.release == v2
    assert {row["status"] for row in again.hosts.values()} == {"ok"}  # ok, not changed
    assert "cache" not in again.phases

    listed = rollout.releases(app, "test", {}, inventory_dir=fleet.inventory_dir)
    assert all(row["current"] == v2 and row["releases"] == [v1, v2] for row in listed.values())

    back = rollout.rollback(app, "test", {}, serial=None, inventory_dir=fleet.inventory_dir)
    assert back.ok, back.message
    (warning,) = back.warnings  # v1's code does not know the schema v2 migrated to
    v1_head = migrate.head(app.engine)  # v1 is this project's tree: its newest migration
    assert f"migrations end at {v1_head} but the database is at 9001" in warning
    assert all(fleet.current(h) == v1 for h in fleet.hosts)
    assert {h: row["release"] for h, row in back.hosts.items()} == dict.fromkeys(
        ["host0", "host1", "host2"], v1
    )
    assert releases_reported(money) == {f"w1@host{i}": v1 for i in range(3)}
    names = [r["name"] for r in history.list_runs(app.sessions, 50)]
    assert {"deploy", "deploy.rollback", "deploy.rollout", "deploy.ship"} <= set(names)


def test_a_host_cut_off_mid_deploy_halts_the_rollout(
    tmp_path: Path,
    money: MoneyEnv,
    redis_server: RedisServer,
    sshd_hosts: list[SSHHost],
    repo: Path,
) -> None:
    doomed = start_sshd(tmp_path / "doomed", 3, sshd_hosts[0].key)
    hosts = [sshd_hosts[0], doomed, sshd_hosts[1]]
    fleet = make_fleet(tmp_path / "inventory", hosts, redis_server.url, money.env["DATABASE_URL"])

    def cut(message: str) -> None:
        if message == "== rollout":  # shipped everywhere; now the host drops off
            doomed.stop()

    try:
        report = rollout.deploy(
            money.container, request(fleet, repo, "v1", serial=1, max_fail=0), {}, say=cut
        )
    finally:
        fleet.kill_workers()
        doomed.stop()
    assert not report.ok
    assert "batch 2" in report.message and "max_fail_percentage 0%" in report.message
    rows = report.hosts
    assert rows["host0"]["status"] == "changed" and rows["host0"]["release"] == report.release
    assert rows["host3"]["status"] == "unreachable" and rows["host3"]["release"] == "none"
    assert rows["host1"]["status"] == "not_run" and rows["host1"]["release"] == "none"
    assert fleet.current(sshd_hosts[1]) == ""  # never switched
    recorded = history.get_run(money.container.sessions, report.run_id or 0)
    assert recorded["status"] == "failed"
    assert {h["host"]: h["message"] for h in recorded["hosts"]}["host0"].endswith(report.release)
