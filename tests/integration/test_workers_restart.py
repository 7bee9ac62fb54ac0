"""Workers: status, ping and a graceful restart in the middle of a batch (real `celery multi`)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from celery_app.celery import make_app
from celery_app.money import settlement, submit
from celery_app.ops import workers
from celery_app.settings import load_settings
from tests.support.cli import run_invoke
from tests.support.money import MoneyEnv
from tests.support.services import wait_for


@pytest.fixture
def supervisor(money: MoneyEnv, tmp_path: Path) -> Iterator[workers.MultiSupervisor]:
    sup = workers.MultiSupervisor(
        tmp_path / "run", queues=("payments", "maintenance"), concurrency=2, env=money.env
    )
    yield sup
    left = sup.stop(["w1"], timeout=30)
    for node in left:
        pid = sup.pid(node)
        if pid:
            import os
            import signal

            os.killpg(os.getpgid(pid), signal.SIGKILL)


def test_restart_mid_batch_loses_nothing_and_posts_nothing_twice(
    money: MoneyEnv, supervisor: workers.MultiSupervisor
) -> None:
    app = make_app(load_settings(money.env))
    # One posting per message (MAQSAFY_POST_BATCH=1): batches of 32 post the whole batch of
    # purchases in a second or two, before any restart could land in the middle of it
    # (their crash safety is tests/integration/test_money_batch.py's).
    supervisor.env = {**supervisor.env, "MAQSAFY_POST_BATCH": "1"}
    money.open_wallets(10)
    for i in range(10):
        submit.submit_top_up(money.container, f"seed-{i}", f"wallet:{i}", 100_000, money.enqueue)
    supervisor.start(["w1"], release="v1")
    node = workers.verify(app, ["w1@" + workers._hostname()], supervisor.queues, 60)[0]

    money.wait_settled()  # the wallets are funded before the batch
    rng = random.Random(3)
    purchases = 600
    held: list[tuple[str, int, int]] = []  # stored in SQL first; their messages go out together
    for n in range(purchases):
        submit.submit_purchase(
            money.container,
            f"b-{n}",
            f"wallet:{rng.randrange(10)}",
            "merchant:0",
            rng.randrange(100, 900),
            lambda name, request_id, wallet: held.append((name, request_id, wallet)),
        )
    for name, request_id, wallet in held:  # the whole batch is queued at once, however slow
        money.enqueue(name, request_id, wallet=wallet)
    wait_for(lambda: money.statuses().get("posted", 0) >= 10 + 40, 60, "part of the batch")

    assert money.pending() > 0, "the batch finished before the restart; nothing was tested"
    report = workers.restart(app, supervisor, ["w1"], timeout=60, release="v2")
    assert report.verified == [node]

    (status,) = workers.status(app)
    assert status.name == node and status.release == "v2"
    assert set(status.queues) == {"payments", "maintenance"}
    assert workers.ping(app) == [node]

    money.wait_settled(relay=False)  # a graceful restart needs no help from the relay
    per_request = money.postings_per_request()
    assert max(per_request.values()) == 1
    assert sum(money.statuses().values()) == 10 + purchases
    assert settlement.reconcile(money.container).balanced


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_stop_past_the_timeout_names_the_running_tasks(
    money: MoneyEnv, supervisor: workers.MultiSupervisor
) -> None:
    """A worker busy past --timeout is not killed: the restart stops and says what runs."""
    from celery_app.money import posting

    app = make_app(load_settings(money.env))
    money.open_wallets(1)
    supervisor.start(["w1"])
    workers.verify(app, ["w1@" + workers._hostname()], supervisor.queues, 60)
    sent = submit.submit_top_up(money.container, "t", "wallet:0", 100, lambda *_: None)
    _, _, wallet = posting.peek(money.container, sent.request_id)
    held = posting.locks(money.container).acquire(f"account:{wallet}")  # the task will wait
    money.enqueue("wallet.top_up", sent.request_id)
    wait_for(lambda: bool(workers.running_tasks(app)), 30, "the top-up to start")
    with pytest.raises(
        workers.WorkerError,
        match=r"still running after 1s; tasks in flight: w1@\S+: wallet.top_up\[",
    ):
        workers.restart(app, supervisor, ["w1"], timeout=1)
    posting.locks(money.container).release(held)
    money.wait_settled()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_worker_commands_from_the_command_line(money: MoneyEnv, tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    env = {
        **os.environ,
        **money.env,
        "MAQSAFY_VAR_DIR": str(tmp_path / "cli-var"),
        "MAQSAFY_OPS_SIGNING_KEY": "workers-cli-test-ops-signing-key-000000",  # signs run --remote
    }

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        return run_invoke(args, env, timeout=180)

    assert invoke("workers.status").returncode == 1  # nobody home yet
    bad = invoke("workers.start", "--nodes", "a b")
    assert bad.returncode == 2 and bad.stderr.strip().startswith(
        "error: --nodes takes node names like w1,w2 ("
    )
    assert bad.stderr.strip().endswith("got 'a b'")
    try:
        assert invoke("workers.start", "--nodes", "w1").returncode == 0
        again = invoke("workers.start", "--nodes", "w1")
        assert again.returncode == 0 and again.stdout.startswith("already running: w1")
        # The default worker consumes ops and loads the task that runs remote runbooks.
        remote = invoke("run", "facts", "--remote", "--wait", "60")
        assert remote.returncode == 0, remote.stdout[-1500:] + remote.stderr[-1500:]
        busy = invoke("stop")  # the embedded Redis is not stopped under running workers
        assert busy.returncode == 2
        assert busy.stderr.startswith("error: workers still use this Redis (w1)")
        (node,) = json.loads(invoke("workers.status", "--json").stdout)
        assert node["name"].startswith("w1@") and "payments" in node["queues"]
        done = invoke("workers.restart", "--timeout", "30", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["verified"] == [node["name"]]
        history = json.loads(invoke("history", "--json").stdout)
        assert any(
            run.get("book") == "workers.restart" or run.get("name") == "workers.restart"
            for run in history
        ), history
    finally:
        assert invoke("workers.stop", "--timeout", "30").returncode == 0
    idle = invoke("workers.stop")
    assert idle.returncode == 0 and idle.stdout.strip() == "not running: w1"
