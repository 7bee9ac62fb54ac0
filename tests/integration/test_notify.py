"""Notifications with a real worker consuming `ops` and a local HTTP receiver.

A receiver down for two attempts still gets the message (retries with backoff); the webhook's
URL (which carries its token) is never in the broker, the worker's log or a failed-task row;
secrets in the payload are masked. A queue's long wait is notified once per episode: two beat
ticks, one notification; the wait ends, a new one starts, a second notification.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from celery_app.celery import make_app
from celery_app.ops import failed_tasks, long_wait, notify, queues
from runbooks.notify import notify as notify_environment
from runbooks.service import run_steps
from tests.support.money import MoneyEnv, money_env
from tests.support.services import RedisServer, wait_for
from tests.support.webhook import Receiver, payload, receiving

VAR = "TEST_OPS_WEBHOOK"
SECRET = "s3cr3t-redis-pass-for-notify"


@pytest.fixture
def money(tmp_path: Path, redis_server: RedisServer) -> Iterator[MoneyEnv]:
    """SQLite is enough here: what matters is the worker, the broker and the receiver."""
    env = money_env(tmp_path, redis_server.url, f"sqlite:///{tmp_path / 'maqsafy.db'}")
    yield env
    env.close()


def ops_worker(money: MoneyEnv, receiver: Receiver, **extra: str) -> None:
    """A worker consuming `ops` (and `maintenance`, where beat's check runs), one at a time,
    with the webhook's URL in its own environment only."""
    money.env.update({VAR: receiver.url, **extra})
    from celery_app.dev.worker_process import start_worker

    worker = start_worker(
        "ops1@test",
        money.var_dir / "ops1.log",
        queues="ops,maintenance",
        concurrency=1,
        env=money.env,
    )
    money.workers.append(worker)
    worker.wait_ready()


def inventory(tmp_path: Path, redis_url: str, events: list[str]) -> Path:
    directory = tmp_path / "inventory"
    directory.mkdir()
    document = {
        "environment": "staging",
        "vars": {"redis_url": redis_url, "redis_password": "${NOTIFY_TEST_REDIS_PASSWORD}"},
        "notify": [{"url": "${" + VAR + "}", "events": events}],
        "hosts": {"localhost": {"connection": "local"}},
    }
    (directory / "staging.yml").write_text(yaml.safe_dump(document))
    return directory


def test_delivered_with_retries_when_the_receiver_fails_twice(
    tmp_path: Path, money: MoneyEnv, redis_server: RedisServer
) -> None:
    with receiving(fail_first=2) as receiver:
        ops_worker(money, receiver)
        directory = inventory(tmp_path, redis_server.url, ["deploy.finished", "run.failed"])
        environ = {
            "NOTIFY_TEST_REDIS_PASSWORD": SECRET,
            "MAQSAFY_ENV_FILE": "/dev/null",
            "MAQSAFY_VAR_DIR": str(tmp_path / "var"),
        }
        given = {
            "summary": "deploy 20261201T000000Z-abc1234 on staging: ok",
            "operator": "ana",
            "hosts": ["host0: ok", "host1: ok"],
            "message": f"REDIS_PASSWORD={SECRET} was printed by a host",
            "commits": ["abc1234 fix the receipt", "def5678 add a field"],
        }
        # An event the target did not ask for is not sent at all.
        assert notify_environment("staging", "deploy.started", given, environ=environ,
                                  inventory_dir=directory) == 0  # fmt: skip
        sent = notify_environment(
            "staging", "deploy.finished", given, environ=environ, inventory_dir=directory
        )
        assert sent == 1
        wait_for(lambda: len(receiver.received) == 1, 60, "the notification to arrive")
        assert receiver.attempts == 3  # two 500s, then delivered

        # A run that fails is run.failed, from the engine (here a step on this machine).
        result, _ = run_steps(
            money.container,
            "nightly check",
            [{"name": "fails", "shell": "echo REDIS_PASSWORD=$NOTIFY_TEST_REDIS_PASSWORD; exit 3"}],
            environment="staging",
            environ=environ,
            inventory_dir=directory,
        )
        assert not result.ok
        wait_for(lambda: receiver.events("run.failed"), 60, "the run.failed notification")
        [failed] = receiver.events("run.failed")
        assert payload(failed)["run_id"] == result.run_id
        assert payload(failed)["hosts"][0].startswith("localhost: failed")

    body = receiver.events("deploy.finished")[0]
    assert body["text"] == "[maqsafy] deploy 20261201T000000Z-abc1234 on staging: ok"
    assert body["metadata"]["event_type"] == "deploy_finished"
    fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}
    assert fields["environment"] == "staging" and fields["operator"] == "ana"
    assert fields["commits"] == "abc1234 fix the receipt\ndef5678 add a field"
    assert SECRET not in json.dumps(receiver.received)  # masked (the inventory's secret)
    # The URL (and its token) is nowhere but in the worker's environment.
    log = money.workers[0].log_text()
    assert "Retry in" in log and receiver.token not in log
    assert failed_tasks.count_failed(money.container.uow) == 0


def test_a_delivery_that_cannot_pass_ends_in_failed_tasks_and_is_not_notified_itself(
    money: MoneyEnv,
) -> None:
    with receiving() as receiver:
        ops_worker(money, receiver, MAQSAFY_NOTIFY_WEBHOOKS=VAR)
        celery = make_app(money.container.settings)
        # A variable the worker does not have: no retry, a failed-task row naming it.
        notify.send(celery, "NOT_SET_ANYWHERE", {"text": "unset variable"})
        # Then a task that fails for real: the app's own task.failed notification.
        celery.send_task("purchase.post", args=["not-an-id"], queue="maintenance")
        wait_for(lambda: receiver.events("task.failed"), 60, "the task.failed notification")
        [failed] = receiver.events("task.failed")
        assert payload(failed)["task"] == "purchase.post"
        # The worker runs one task at a time, in order: the delivery failed first, and its
        # failure was not notified (a receiver that is down would otherwise loop forever).
        rows = failed_tasks.list_failed(money.container.uow).rows
        assert sorted(r.task_name for r in rows) == [notify.TASK, "purchase.post"]
        [row] = [r for r in rows if r.task_name == notify.TASK]
        shown = failed_tasks.show(money.container.uow, row.id)
        assert "NOT_SET_ANYWHERE" in shown.exception and "is not set" in shown.exception
        assert receiver.token not in json.dumps([shown.args, shown.exception, shown.traceback])
        assert receiver.token not in money.workers[0].log_text()


def test_a_long_wait_is_notified_once_per_episode(money: MoneyEnv) -> None:
    """Beat's check runs on the real worker; the payments queue has no consumer here."""
    with receiving() as receiver:
        ops_worker(
            money,
            receiver,
            MAQSAFY_NOTIFY_WEBHOOKS=VAR,
            MAQSAFY_LONG_WAIT="payments=1",
        )
        celery = make_app(money.container.settings)
        broker = money.container.redis("broker")

        def oldest() -> float:
            return queues.queue_stats(broker, ["payments"])[0].oldest_waiting or 0.0

        def tick_and_mark(mark: str) -> None:
            """One beat tick run by the worker, then a marker on `ops`: the worker runs one task
            at a time, in order, so once the marker arrived so has what the tick queued."""
            tick = celery.send_task("queue.long_wait", queue="maintenance")
            wait_for(
                lambda: f"queue.long_wait[{tick.id}] succeeded" in money.workers[0].log_text(),
                60,
                f"{mark} to run",
            )
            notify.send(celery, VAR, {"text": mark, "metadata": {"event_type": "marker"}})
            wait_for(lambda: any(r["text"] == mark for r in receiver.events("marker")), 60, mark)

        celery.send_task("health.noop", queue="payments")  # nobody consumes payments here
        wait_for(lambda: oldest() > 1.5, 30, "the payment message to wait past 1 s")
        tick_and_mark("tick 1")
        tick_and_mark("tick 2")
        [first] = receiver.events("queue.long_wait")
        assert payload(first)["queue"] == "payments"
        assert payload(first)["threshold_seconds"] == 1
        assert first["text"].startswith("[maqsafy] queue payments: the oldest message has waited")
        key = long_wait.flag_key(money.container, "payments")
        assert money.container.redis("locks").ttl(key) > 0  # the lock sweep leaves it alone

        # The wait ends (the queue drains): the episode is over, its flag removed.
        queues.purge(broker, "payments", force=True)
        tick_and_mark("tick 3")
        assert not money.container.redis("locks").exists(key)
        assert len(receiver.events("queue.long_wait")) == 1

        # A new long wait is a new episode: notified again, once.
        celery.send_task("health.noop", queue="payments")
        wait_for(lambda: oldest() > 1.5, 30, "the new message to wait past 1 s")
        tick_and_mark("tick 4")
        tick_and_mark("tick 5")
        assert len(receiver.events("queue.long_wait")) == 2
    assert failed_tasks.count_failed(money.container.uow) == 0


def test_the_check_alone_needs_no_worker(money: MoneyEnv) -> None:
    """check() on a clock: over the threshold twice -> one call; under it -> the flag goes."""
    calls: list[str] = []
    celery = make_app(money.container.settings)
    celery.send_task("health.noop", queue="payments")
    later = time.time() + 3600

    def send(event: str, payload: object) -> int:
        calls.append(event)
        return 1

    assert long_wait.check(money.container, send, clock=lambda: later) == ["payments"]
    assert long_wait.check(money.container, send, clock=lambda: later) == []
    assert calls == ["queue.long_wait"]
    assert long_wait.check(money.container, send, clock=time.time) == []  # waits < 60 s now
    assert not money.container.redis("locks").exists(
        long_wait.flag_key(money.container, "payments")
    )


def test_an_approval_request_is_notified(
    tmp_path: Path, money: MoneyEnv, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runbooks.access import approvals

    monkeypatch.setenv("NOTIFY_TEST_REDIS_PASSWORD", SECRET)
    monkeypatch.setenv("MAQSAFY_ENV_FILE", "/dev/null")
    with receiving() as receiver:
        ops_worker(money, receiver)
        directory = inventory(tmp_path, redis_server.url, ["approval.requested"])
        made = approvals.request(
            money.container.sessions,
            command="deploy",
            arguments={"env": "staging", "inventory": str(directory), "reason": "hotfix 42"},
            record_digest="0" * 64,
            record="deploy",
            environment="staging",
            why="staging requires approval for deploy",
            reason="hotfix 42",
            requested_by="ana",
        )
        wait_for(lambda: receiver.events("approval.requested"), 60, "the approval's notification")
    [told] = receiver.events("approval.requested")
    assert payload(told)["approval"] == made["id"] and payload(told)["requested_by"] == "ana"
    assert told["text"].startswith("[maqsafy] ana asks to run deploy on staging")
    assert f"invoke approve {made['id']}" in payload(told)["next"]
