"""workers.restart --env: the workers-restart book over real SSH, with `celery multi` workers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from celery_app.celery import make_app
from celery_app.money import posting, submit
from celery_app.ops import workers
from celery_app.settings import load_settings
from tests.support.cli import run_invoke
from tests.support.deploy import kill_pidfiles
from tests.support.money import MoneyEnv
from tests.support.services import wait_for
from tests.support.sshd import SSHHost, write_inventory

ROOT = Path(__file__).resolve().parents[3]


def app_dir(host: SSHHost, money: MoneyEnv) -> Path:
    """A host's app folder laid out as a deploy leaves it (runbooks/deploy/layout.py): current
    -> releases/r1, whose .venv is the project's own (no shipping here) and whose .env is the
    host's shared/.env naming the test's Redis and SQL."""
    directory = host.root / "app"
    release = directory / "releases" / "r1"
    release.mkdir(parents=True, exist_ok=True)
    (directory / "shared").mkdir(exist_ok=True)
    (release / "RELEASE").write_text("r1\n")
    if not (release / ".venv").is_symlink():
        (release / ".venv").symlink_to(ROOT / ".venv")
    # The code is copied, not linked: the app reads the .env next to its own code (resolved
    # through links), so the release's .env is found only beside a release's own tree.
    for name in ("celery_app", "runbooks", "migrations"):
        if not (release / name).exists():
            shutil.copytree(
                ROOT / name, release / name, ignore=shutil.ignore_patterns("__pycache__")
            )
    for name in ("tasks.py", "alembic.ini"):
        if not (release / name).exists():
            shutil.copy(ROOT / name, release / name)
    lines = [f"{k}={v}" for k, v in money.env.items() if k != "MAQSAFY_ENV_FILE"]
    (directory / "shared" / ".env").write_text(
        "\n".join(lines) + f"\nMAQSAFY_VAR_DIR={directory}/var\n"
    )
    if not (release / ".env").is_symlink():
        (release / ".env").symlink_to("../../shared/.env")
    if not (directory / "current").is_symlink():
        (directory / "current").symlink_to("releases/r1")
    return directory


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_restart_book_restarts_each_hosts_workers_over_ssh(
    money: MoneyEnv, sshd_hosts: list[SSHHost], tmp_path: Path
) -> None:
    hosts = sshd_hosts[:2]
    inventory = tmp_path / "inventory"
    extra = {}
    for index, host in enumerate(hosts):
        entry = host.inventory_entry()
        entry["vars"] = {
            **entry["vars"],  # type: ignore[dict-item]
            "app_dir": str(app_dir(host, money)),
            "worker_nodes": f"h{index}",
            "worker_queues": "payments,maintenance",
            "worker_supervisor": "multi",
        }
        extra[host.name] = entry
    write_inventory(
        inventory, "test", [], extra_hosts=extra, groups={"workers": [h.name for h in hosts]}
    )
    env = {
        **os.environ,
        "MAQSAFY_VAR_DIR": str(tmp_path / "laptop"),
        "DATABASE_URL": money.env["DATABASE_URL"],
        "MAQSAFY_ENV_FILE": str(tmp_path / "none"),
    }

    def restart() -> dict[str, object]:
        done = run_invoke(
            ["workers.restart", "--env", "test", "--inventory", str(inventory), "--json"],
            env,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads(done.stdout)

    control = make_app(load_settings(money.env))
    try:
        restart()  # nothing runs yet: the warm stop is a no-op, the start brings both nodes up
        first = {s.name: s.pid for s in workers.status(control)}
        assert set(first) == {"h0@host0", "h1@host1"}  # named after the inventory's hosts
        assert {s.release for s in workers.status(control)} == {"r1"}
        report = restart()
        second = {s.name: s.pid for s in workers.status(control)}
        assert set(second) == set(first)
        assert all(second[n] != first[n] for n in first), "a node was not restarted"
        hosts_report = report["hosts"]
        assert isinstance(hosts_report, (list, dict)) and len(hosts_report) == 2
        # The restarted workers consume: a top-up posts.
        money.open_wallets(1)
        submit.submit_top_up(money.container, "after", "wallet:0", 500, money.enqueue)
        money.wait_settled()
        assert money.statuses() == {"posted": 1}

        # A node busy past worker_timeout is not killed: the restart stops and its report
        # names the task the node's log says it received and has not ended.
        for entry in extra.values():
            entry["vars"]["worker_timeout"] = 1  # type: ignore[index]
        write_inventory(
            inventory, "test", [], extra_hosts=extra, groups={"workers": [h.name for h in hosts]}
        )
        sent = submit.submit_top_up(money.container, "busy", "wallet:0", 100, lambda *_: None)
        _, _, wallet = posting.peek(money.container, sent.request_id)
        held = posting.locks(money.container).acquire(f"account:{wallet}")  # the task waits
        money.enqueue("wallet.top_up", sent.request_id)
        wait_for(lambda: bool(workers.running_tasks(control)), 30, "the top-up to start")
        (node,) = workers.running_tasks(control)  # only the busy host: an idle worker's warm
        host = node.partition("@")[2]  # stop may itself take over 1 s on a loaded machine
        only = ["--inventory", str(inventory), "--json", "--limit", host]
        busy = run_invoke(["workers.restart", "--env", "test", *only], env)
        posting.locks(money.container).release(held)
        assert busy.returncode == 1, busy.stdout[-3000:] + busy.stderr[-3000:]
        said = busy.stdout + busy.stderr
        assert "after 1s: tasks in flight (received, not ended: wallet.top_up[" in said
        money.wait_settled()
        assert money.statuses() == {"posted": 2}
    finally:
        kill_pidfiles([h.root / "app" / "shared" / "run" for h in hosts])


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_failed_commands_run_on_the_environments_host_over_ssh(
    money: MoneyEnv, sshd_hosts: list[SSHHost], tmp_path: Path
) -> None:
    """failed.* --env runs on an app host against its database, not the laptop's."""
    from celery_app.ops.failed_tasks import record_failure

    host = sshd_hosts[0]
    entry = host.inventory_entry()
    entry["vars"] = {**entry["vars"], "app_dir": str(app_dir(host, money))}  # type: ignore[dict-item]
    inventory = tmp_path / "inventory"
    write_inventory(
        inventory, "test", [], extra_hosts={host.name: entry}, groups={"app": [host.name]}
    )
    failed_id = record_failure(
        money.container,
        task_id="t-1",
        task_name="purchase.post",
        queue="payments",
        args=[41],
        kwargs={},
        exception=RuntimeError("db hiccup"),
        traceback="Traceback ...",
    )
    env = {
        **os.environ,
        "MAQSAFY_VAR_DIR": str(tmp_path / "laptop"),
        "MAQSAFY_ENV_FILE": str(tmp_path / "none"),
    }  # the laptop: its own empty SQLite

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        return run_invoke([*args, "--env", "test", "--inventory", str(inventory)], env)

    laptop = run_invoke(["db.migrate"], env)
    assert laptop.returncode == 0, laptop.stderr  # the laptop's history of remote runs
    listed = invoke("failed.list", "--queue", "payments", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["rows"]
    assert [r["id"] for r in rows] == [failed_id]
    assert rows[0]["exception"] == "RuntimeError: db hiccup"

    missing = invoke("failed.show", "999999")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        line for line in missing.stderr.strip().splitlines() if line.startswith("error:")
    ]
    assert "999999" in missing.stderr and "Traceback" not in missing.stderr

    forgot = invoke("failed.forget", str(failed_id))
    assert forgot.returncode == 0 and "forgot 1 failed tasks" in forgot.stdout
    assert json.loads(invoke("failed.list", "--json").stdout)["rows"] == []
