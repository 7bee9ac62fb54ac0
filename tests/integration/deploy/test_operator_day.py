"""The operator's day on a deployed environment, typed at the command line as an operator does.

Two loopback sshd hosts, PostgreSQL and a private Redis; every command is the real `invoke`
run from a checkout (the test repo: v1, then v2 with a migration), the way README's Deploying
section walks through it. Purchases are submitted the whole day; at the end each posted exactly
once, nothing is pending, and the history names every step with its operator and outcome; then
the first operator account is made and the console, started from the same checkout, shows the
day's deploys and runs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from celery_app.bootstrap import Container
from celery_app.celery import make_app
from celery_app.infra import migrate
from celery_app.money import settlement
from celery_app.ops import failed_tasks, workers
from celery_app.settings import load_settings
from tests.support.cli import INVOKE, clean_environ, run_invoke
from tests.support.console import Browser, run_finished, run_started
from tests.support.deploy import Fleet, make_fleet
from tests.support.money import MoneyEnv, start_shopping
from tests.support.services import RedisServer, free_port, wait_for
from tests.support.sshd import SSHHost

pytestmark = pytest.mark.ssh
OPS_KEY = "journey-ops-signing-key-" + "0" * 24


class Operator:
    """An operator's terminal: `invoke ...` in the checkout, against the `day` environment."""

    def __init__(self, repo: Path, env: dict[str, str], fleet: Fleet) -> None:
        self.repo, self.env = repo, env
        self.on = ["--env", "day", "--inventory", str(fleet.inventory_dir)]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_invoke(args, self.env, timeout, cwd=self.repo)

    def ok(self, *args: str, timeout: float = 300) -> str:
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout

    def json(self, *args: str, timeout: float = 300) -> Any:
        return json.loads(self.ok(*args, "--json", timeout=timeout))


@pytest.mark.timeout(900)  # the whole day end to end: ~100 s on a quiet machine, 300 s at load 8
def test_the_operators_day(
    tmp_path: Path,
    sshd_hosts: list[SSHHost],
    redis_server: RedisServer,
    money: MoneyEnv,
    repo: Path,
) -> None:
    fleet = make_fleet(
        tmp_path / "inventory",
        sshd_hosts[:2],
        redis_server.url,
        money.env["DATABASE_URL"],
        environment="day",
        worker_queues="payments,maintenance,ops",
        ops_key=OPS_KEY,
        reach="ssh",  # as from a laptop outside: Redis through a tunnel to an app host
    )
    laptop = clean_environ(
        DATABASE_URL=money.env["DATABASE_URL"],  # the run history is the environment's
        REDIS_URL=redis_server.url,
        MAQSAFY_VAR_DIR=str(tmp_path / "laptop"),
        MAQSAFY_ENV_FILE=str(tmp_path / "no.env"),
        MAQSAFY_OPS_SIGNING_KEY=OPS_KEY,
    )
    op = Operator(repo, laptop, fleet)
    control = make_app(load_settings(money.env))
    app = money.container
    raw = redis.Redis.from_url(redis_server.url)
    shopping = start_shopping(money, 10)
    try:
        # Morning: v1 goes out host by host while parents and students pay.
        first = op.json("deploy", *op.on, "--ref", "v1", "--serial", "1")
        v1 = first["release"]
        assert {h: row["release"] for h, row in first["hosts"].items()} == {
            "host0": v1,
            "host1": v1,
        }
        assert op.json("run", "ping", *op.on)["status"] == "ok"

        # The workers restart gracefully on the release the deploy left live.
        before = {s.name: s.pid for s in workers.status(control, timeout=2.0)}
        restarted = op.json("workers.restart", *op.on)
        assert restarted["status"] == "ok", restarted
        after = {s.name: (s.pid, s.release) for s in workers.status(control, timeout=2.0)}
        assert set(after) == set(before) == {"w1@host0", "w1@host1"}
        assert all(after[n][0] != before[n] and after[n][1] == v1 for n in after)

        # A runbook through the ops queue, answered by a deployed worker.
        remote = op.json("run", "facts", "--remote", "--wait", "60")
        assert remote["status"] == "ok" and remote["arguments"]["remote"] is True
        # The same book sliced in two: either deployed worker takes a slice; one run, host once.
        sliced = op.json("run", "facts", "--remote", "--slices", "2", "--wait", "60")
        assert sliced["status"] == "ok" and sliced["id"] != remote["id"]
        assert [h["host"] for h in sliced["hosts"]] == [h["host"] for h in remote["hosts"]]

        # A task fails on purpose; the operator looks at it on an app host and retries it.
        send = failed_tasks.sender(control)
        send("purchase.post", ["not-an-id"], {}, "payments")
        wait_for(lambda: failed_tasks.count_failed(app.uow) == 1, 60, "the failure recorded")
        [row] = op.json("failed.list", *op.on)["rows"]
        shown = op.json("failed.show", str(row["id"]), *op.on)
        assert shown["task_name"] == "purchase.post" and "positive integer" in shown["exception"]
        assert "retried 1" in op.ok("failed.retry", str(row["id"]), *op.on)
        wait_for(
            lambda: [f.id for f in failed_tasks.list_failed(app.uow).rows] not in ([], [row["id"]]),
            60,
            "the retried task to fail again",
        )
        [again] = failed_tasks.list_failed(app.uow).rows
        assert "forgot 1" in op.ok("failed.forget", str(again.id), *op.on)

        # The cache is cleared without touching queues or sessions.
        raw.set("maqsafy:cache:menus:today", "x")
        raw.set("maqsafy:session:s1", "alive")
        op.ok("cache.clear", *op.on)
        assert raw.exists("maqsafy:cache:menus:today") == 0
        assert raw.get("maqsafy:session:s1") == b"alive"

        status = op.run("status", *op.on, "--json")
        assert status.returncode in (0, 1), status.stderr  # 1: a warning, never an error
        seen = json.loads(status.stdout)
        assert {"w1@host0", "w1@host1"} <= {w["name"] for w in seen["workers"]}

        # Afternoon: v2 with a migration, then back to v1.
        second = op.json("deploy", *op.on, "--ref", "v2", "--serial", "1")
        v2 = second["release"]
        assert v2 != v1 and migrate.current(app.engine) == "9001"
        back = op.json("deploy.rollback", *op.on, "--to", v1)
        assert {h: row["release"] for h, row in back["hosts"].items()} == {
            "host0": v1,
            "host1": v1,
        }
        assert {s.release for s in workers.status(control, timeout=2.0)} == {v1}

        # What went out today, newest first, with the commits each change brought or took.
        rolled, went, came = op.json("deploy.log", "--env", "day")[:3]
        assert [(e["action"], e["release"], e["outcome"]) for e in (rolled, went, came)] == [
            ("rollback", v1, "ok"),
            ("deploy", v2, "ok"),
            ("deploy", v1, "ok"),
        ]
        assert went["commits"] and rolled["commits"] == went["commits"]
        assert rolled["direction"] == "removed" and went["direction"] == "added"
    finally:
        shopping.stop.set()
        shopping.join()

    try:
        # Evening: every payment posted exactly once, nothing pending, the books balance.
        money.wait_settled(timeout=120, relay=True)
        assert shopping.submitted > 0
        assert sum(money.statuses().values()) == 10 + shopping.submitted
        assert max(money.postings_per_request().values()) == 1
        assert settlement.reconcile(app).balanced

        # The history tells the day: each step, who ran it, how it ended.
        runs = op.json("history", "--last", "200")
        by_name: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            by_name.setdefault(run["name"], []).append(run)
        for name in (
            "deploy", "ping", "workers-restart", "facts", "failed.list (remote)",
            "failed.retry (remote)", "failed.forget (remote)", "cache.clear", "deploy.rollback",
        ):  # fmt: skip
            assert name in by_name, f"{name} missing from history: {sorted(by_name)}"
            assert all(r["operator"] and r["status"] == "ok" for r in by_name[name]), by_name[name]
        assert len(by_name["deploy"]) == 2

        # Evening, from the browser: the first account, then the console over the same day.
        console_sees_the_day(op, v1, v2, control, app)
    finally:
        fleet.kill_workers()


def console_sees_the_day(op: Operator, v1: str, v2: str, control: Celery, app: Container) -> None:
    """The console, started from the checkout, shows what the command line did today, and
    does the day's work again from the browser: a graceful restart, a book checked then run."""
    password = "journey-console-password"
    added = subprocess.run(
        [*INVOKE, "operators.add", "root", "--role", "admin"],
        cwd=op.repo, env=op.env, input=password, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    port = free_port()
    console = subprocess.Popen(
        [*INVOKE, "console", "--port", str(port), "--inventory", op.on[-1]],
        cwd=op.repo, env=op.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    browser = Browser(f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: _answers(browser, console), 60, "the console to answer /healthz")
        assert browser.sign_in("root", password).status_code == 303
        deploys = browser.get("/deploys", params={"env": "day"})
        assert deploys.status_code == 200 and v1 in deploys.text and v2 in deploys.text
        runs = browser.get("/runs")
        assert runs.status_code == 200 and "workers-restart" in runs.text, runs.text[:500]
        assert browser.get("/failed").status_code == 200

        # The workers restart gracefully from the Workers page: new processes, same release.
        before = {s.name: s.pid for s in workers.status(control, timeout=2.0)}
        restart = run_finished(app, run_started(browser.post("/workers/restart", {"env": "day"})))
        assert restart["status"] == "ok" and restart["operator"] == "root", restart
        after = {s.name: (s.pid, s.release) for s in workers.status(control, timeout=2.0)}
        assert set(after) == set(before) and all(after[n][0] != before[n] for n in after)
        assert {release for _, release in after.values()} == {v1}

        # A book from the Runs page: in check mode first on a deployed ops worker, then for real.
        book = {"book": "facts", "env": "local", "limit": ""}
        sent = browser.post("/runs/new", book)
        assert sent.status_code == 303 and sent.headers["location"].startswith("/runs/sent/")
        checked = run_finished(app, _run_of(browser, sent.headers["location"]))
        assert checked["status"] == "ok" and checked["arguments"]["check"] is True, checked
        real = browser.post(f"/runs/{checked['id']}/real", book)
        assert real.status_code == 303, real.text[:500]
        ran = run_finished(app, _run_of(browser, real.headers["location"]))
        assert ran["status"] == "ok" and ran["arguments"]["check"] is False, ran
        assert ran["operator"] == "root" and ran["arguments"]["remote"] is True
    finally:
        browser.close()
        console.terminate()
        _, err = console.communicate(timeout=30)
    assert "Traceback" not in err, err


def _run_of(browser: Browser, sent: str) -> int:
    """The run a sent book became: its waiting page redirects to the run once it is recorded."""
    found: list[int] = []

    def recorded() -> bool:
        page = browser.get(sent)
        if page.status_code == 303:
            found.append(run_started(page))
        return bool(found)

    wait_for(recorded, 60, f"{sent} to name its run", every=0.5)
    return found[0]


def _answers(browser: Browser, console: subprocess.Popen[str]) -> bool:
    if console.poll() is not None:
        _, err = console.communicate()
        pytest.fail(f"invoke console exited {console.returncode}: {err[-2000:]}")
    try:
        return browser.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False
