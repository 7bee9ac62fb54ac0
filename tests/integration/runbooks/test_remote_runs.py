"""`invoke run BOOK --remote`: a real worker on the ops queue runs the book; the run is history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from celery_app.worker_process import WorkerProcess, start_worker
from tests.support.redis_app import app_env, invoke, migrated_app
from tests.support.services import start_redis

PASSWORD = "remote-test-pw-3b8f"


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[tuple[dict[str, str], WorkerProcess]]:
    server = start_redis(tmp_path / "redis", password=PASSWORD)
    env = {**app_env(tmp_path, server.url), "DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}"}
    migrated_app(env).engine.dispose()
    worker = start_worker(
        "ops@test",
        tmp_path / "ops.log",
        queues="ops",
        concurrency=1,
        env=env,
        extra=("-I", "runbooks.remote"),
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

    listed = invoke(env, "history", "--json")
    assert json.loads(listed.stdout)[0]["id"] == run["id"]


def test_bad_input_is_refused_before_sending(ops: tuple[dict[str, str], WorkerProcess]) -> None:
    env, _worker = ops
    unknown = invoke(env, "run", "no-such-book", "--remote")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: ")
    assert "no-such-book" in unknown.stderr
    mixed = invoke(env, "run", "facts", "--remote", "--retry-failed", "3")
    assert mixed.returncode == 2 and "--retry-failed" in mixed.stderr
