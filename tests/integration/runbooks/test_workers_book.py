"""workers.restart --env: the workers-restart book over real SSH, with `celery multi` workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from celery_app import submit, workers
from celery_app.celery import make_app
from celery_app.settings import load_settings
from tests.support.money import MoneyEnv, money_env
from tests.support.services import RedisServer
from tests.support.sshd import SSHHost, write_inventory

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def money(tmp_path: Path, redis_server: RedisServer, database_url: str) -> Iterator[MoneyEnv]:
    env = money_env(tmp_path, redis_server.url, database_url)
    yield env
    env.close()


def app_dir(host: SSHHost, money: MoneyEnv) -> Path:
    """A host's release folder: the project's venv and a .env naming the test's Redis and SQL."""
    directory = host.root / "app"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".venv").symlink_to(ROOT / ".venv")
    lines = [f"{k}={v}" for k, v in money.env.items() if k != "MAQSAFY_ENV_FILE"]
    (directory / ".env").write_text("\n".join(lines) + f"\nMAQSAFY_VAR_DIR={directory}/var\n")
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
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "invoke",
                "workers.restart",
                "--env",
                "test",
                "--inventory",
                str(inventory),
                "--json",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads(done.stdout)

    control = make_app(load_settings(money.env))
    host = workers._hostname()
    try:
        restart()  # nothing runs yet: stopwait is a no-op, start brings both nodes up
        first = {s.name: s.pid for s in workers.status(control)}
        assert set(first) == {f"h0@{host}", f"h1@{host}"}
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
    finally:
        for index, h in enumerate(hosts):
            directory = h.root / "app"
            subprocess.run(
                [
                    str(ROOT / ".venv/bin/celery"),
                    "multi",
                    "stopwait",
                    f"h{index}",
                    f"--pidfile={directory}/var/run/%n.pid",
                ],
                cwd=directory,
                capture_output=True,
                timeout=120,
            )
