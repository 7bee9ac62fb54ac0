"""`invoke run BOOK --remote`: a real worker on the ops queue runs the book; the run is history."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from celery_app.celery import make_app
from celery_app.dev.worker_process import WorkerProcess, start_worker
from celery_app.settings import load_settings
from runbooks.engine import history
from runbooks.engine.book_files import BOOKS_DIR as BOOKS
from runbooks.engine.run_events import RunEvents
from runbooks.ops_queue import requests as ops_requests
from runbooks.ops_queue.runner import TASK
from tests.support.redis_app import app_env, history_names, invoke, migrated_app
from tests.support.services import start_redis, wait_for

PASSWORD = "remote-test-pw-3b8f"
KEY = "k" * 16 + "ops-signing-key-for-tests-0000000"  # the ops side's key (laptop and worker)


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[tuple[dict[str, str], WorkerProcess]]:
    server = start_redis(tmp_path / "redis", password=PASSWORD)
    env = {
        **app_env(tmp_path, server.url),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
        "MAQSAFY_OPS_SIGNING_KEY": KEY,
    }
    migrated_app(env).engine.dispose()
    worker = start_worker(
        "ops@test",
        tmp_path / "ops.log",
        queues="ops",
        concurrency=1,
        env=env,
        extra=("-I", "runbooks.ops_queue.runner"),
    )
    try:
        worker.wait_ready()
        yield env, worker
    finally:
        worker.kill()
        server.stop()


def test_a_book_runs_on_the_ops_worker_and_is_recorded(
    ops: tuple[dict[str, str], WorkerProcess],
) -> None:
    env, worker = ops
    done = invoke(env, "run", "facts", "--remote", "--wait", "60", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    assert (run["kind"], run["name"], run["environment"], run["status"]) == (
        "runbook",
        "facts",
        "local",
        "ok",
    )
    assert run["arguments"]["remote"] is True and run["arguments"]["requested_by"]
    assert [h["host"] for h in run["hosts"]] == ["localhost"]
    assert "runbook.run" in worker.log_text() and PASSWORD not in done.stdout
    assert KEY not in done.stdout + worker.log_text()

    listed = invoke(env, "history", "--json")
    assert json.loads(listed.stdout)[0]["id"] == run["id"]
    # the worker wrote the run's progress as it went, for the console's live view
    events = RunEvents.for_app(migrated_app(env))
    wait_for(lambda: events.read(run["id"])[-1].kind == "end", 10, "the run's end event")
    kinds = [e.kind for e in events.read(run["id"])]
    assert kinds[0] == "batch" and kinds[-2:] == ["host", "end"]
    assert kinds.count("step") == len(run["steps"]) and PASSWORD not in str(events.read(run["id"]))


def test_bad_input_is_refused_before_sending(ops: tuple[dict[str, str], WorkerProcess]) -> None:
    env, _worker = ops
    unknown = invoke(env, "run", "no-such-book", "--remote")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: ")
    assert "no-such-book" in unknown.stderr
    mixed = invoke(env, "run", "facts", "--remote", "--retry-failed", "3")
    assert mixed.returncode == 2 and "--retry-failed" in mixed.stderr


def test_without_the_signing_key_nothing_is_sent(
    ops: tuple[dict[str, str], WorkerProcess],
) -> None:
    env, _worker = ops
    keyless = {**env, "MAQSAFY_OPS_SIGNING_KEY": ""}
    done = invoke(keyless, "run", "facts", "--remote")
    assert done.returncode == 2 and done.stderr.startswith("error: MAQSAFY_OPS_SIGNING_KEY")
    assert len(done.stderr.strip().splitlines()) == 1
    path = invoke(env, "run", str(BOOKS / "facts.yml"), "--remote")
    assert path.returncode == 2 and "by name" in path.stderr


def _signed(env: dict[str, str], **fields: object) -> dict[str, object]:
    request = {"book": "facts", "environment": "local", "limit": None, "tags": [],
               "skip_tags": [], "check": False, **fields}  # fmt: skip
    return ops_requests.sign(request, "alice", env)


def _push(env: dict[str, str], *args: object) -> None:
    """What an attacker with broker access can do: a raw runbook.run message on `ops`."""
    celery = make_app(load_settings(env))
    celery.send_task(TASK, args=list(args), queue="ops")


def test_unsigned_altered_replayed_and_foreign_requests_are_refused_and_recorded(
    ops: tuple[dict[str, str], WorkerProcess], tmp_path: Path
) -> None:
    env, _worker = ops
    app = migrated_app(env)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yml"
    evil.write_text("name: evil\nhosts: all\nsteps:\n  - shell: touch " + str(marker) + "\n")
    # The old message shape, naming a book by path: no signature at all.
    old = {"book": str(evil), "environment": "local", "check": False}
    _push(env, old, "r1", "mallory")
    # A signed request whose book was swapped after signing.
    altered = _signed(env)
    altered["body"] = {**altered["body"], "book": "ping"}  # type: ignore[dict-item]
    _push(env, altered)
    # Signed with a key the worker does not hold.
    _push(env, _signed({**env, "MAQSAFY_OPS_SIGNING_KEY": "x" * 40}))
    # Signed, but for an environment this worker does not serve.
    _push(env, _signed(env, environment="production"))
    # Signed long ago.
    stale = ops_requests.sign(
        {"book": "facts", "environment": "local"}, "alice", env, now=time.time() - 3600
    )
    _push(env, stale)
    # A good request runs once; the same message again is a replay.
    good = _signed(env)
    _push(env, good)
    _push(env, good)

    def recorded() -> list[tuple[str, str, dict[str, object]]]:
        return history_names(app)

    wait_for(lambda: len(recorded()) >= 7, 60, "seven requests recorded")
    runs = recorded()
    refused = [(status, args) for name, status, args in runs if name == "runbook.refused"]
    ran = [args for name, status, args in runs if name == "facts"]
    assert len(refused) == 6 and all(status == "failed" for status, _ in refused)
    assert len(ran) == 1 and ran[0]["requested_by"] == "alice"
    assert ran[0]["request"] == good["body"]["nonce"]  # type: ignore[index]
    messages = [
        m["message"] for m in history.list_runs(app.sessions, 20) if m["name"] == "runbook.refused"
    ]
    for reason in ("unsigned", "bad signature", "bad signature", "not one this worker serves",
                   "expired", "replayed"):  # fmt: skip
        assert any(reason in m for m in messages), (reason, messages)
        messages.remove(next(m for m in messages if reason in m))
    assert not marker.exists()
    assert KEY not in str(runs)


def test_run_remote_says_why_it_gave_up(tmp_path: Path) -> None:
    """No consumer of ops: --wait says so. Ops consumers without the runbook task: refused
    before sending (they would discard the request as unregistered)."""
    server = start_redis(tmp_path / "redis")
    env = {
        **app_env(tmp_path, server.url),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
        "MAQSAFY_OPS_SIGNING_KEY": KEY,
    }
    migrated_app(env).engine.dispose()
    raw = redis.Redis.from_url(server.url)
    try:
        nobody = invoke(env, "run", "facts", "--remote", "--wait", "1")
        assert nobody.returncode == 1
        assert nobody.stderr.startswith("error: no worker consumes the ops queue: request ")
        assert raw.llen("ops") == 1  # it waits there for a consumer
        raw.delete("ops")
        bare = start_worker("bare@test", tmp_path / "b.log", queues="ops", concurrency=1, env=env)
        try:
            bare.wait_ready()
            refused = invoke(env, "run", "facts", "--remote", "--wait", "5")
        finally:
            bare.kill()
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "bare@test consumes the ops queue without the runbook.run task" in refused.stderr
        assert "nothing was sent" in refused.stderr and raw.llen("ops") == 0
    finally:
        server.stop()
