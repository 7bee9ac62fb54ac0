"""The cache, queue and failed-task commands as an operator runs them: `invoke ...` in a subprocess.

Bad input gives one line on stderr, exit code 2, no traceback, and changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from celery_app import bootstrap
from celery_app.infra import migrate
from celery_app.infra.keyspace import Keyspace
from celery_app.ops.failed_tasks import record_failure
from celery_app.settings import load_settings
from tests.support.broker import dump_all, producer, seed_other_roles, send
from tests.support.cli import run_invoke, start_invoke
from tests.support.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(redis_server: RedisServer, tmp_path: Path) -> dict[str, str]:
    values = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'maqsafy.db'}",
        "REDIS_URL": redis_server.url,
        "MAQSAFY_VAR_DIR": str(tmp_path / "var"),
        "MAQSAFY_ENV_FILE": str(tmp_path / "no.env"),
    }
    container = bootstrap.build(load_settings(environ=values, dotenv=tmp_path / "no.env"))
    migrate.upgrade(container.engine)
    for n in (1, 2):
        record_failure(
            container,
            task_id=f"t{n}",
            task_name="purchase.post",
            queue="payments",
            args=[n],
            kwargs={},
            exception=RuntimeError("boom"),
            traceback="",
        )
    container.engine.dispose()
    return {**os.environ, **values}


def invoke(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_invoke(args, env, timeout=60)


BAD = [
    (["cache.clear", "--pattern", "maqsafy:*"], "could reach keys outside the cache"),
    (["cache.clear", "--namespace", "a*"], "cache namespace"),
    (["queue.purge", "nope", "--yes"], "unknown queue 'nope'"),
    (["queue.purge", "payments", "--yes"], "money queue"),
    (["queue.purge", "ops"], "add --yes"),
    (["failed.show", "abc"], "bad failed-task id 'abc'"),
    (["failed.retry", "1,99"], "no failed task with id 99"),
    (["failed.retry", "all", "--queue", "nope"], "unknown queue 'nope'"),
    (["failed.forget", "99"], "no failed task with id 99"),
    (["failed.list", "--since", "2x"], "--since"),
    (["failed.list", "--queue", "nope"], "unknown queue"),
    (["failed.prune", "--hours", "-3"], "--hours"),
]


def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    env: dict[str, str], redis_server: RedisServer
) -> None:
    client = redis_server.client()
    send(producer(redis_server.url), "purchase.post", [7], "payments")
    seed_other_roles(client, Keyspace("maqsafy"))
    client.set("maqsafy:cache:users:0:u1", "1")
    before = dump_all(client)
    procs = [
        (
            args,
            expected,
            start_invoke(args, env),
        )
        for args, expected in BAD
    ]
    for args, expected, proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (args, out, err)
        assert "Traceback" not in err + out, args
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert expected in lines[0], (args, lines[0])
    assert dump_all(client) == before
    listed = json.loads(invoke(env, "failed.list", "--json").stdout)
    assert len(listed["rows"]) == 2
    assert json.loads(invoke(env, "history", "--json").stdout) == []  # refusals record nothing


def test_commands_work_end_to_end(env: dict[str, str], redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("maqsafy:cache:users:0:u1", "1")
    client.set("maqsafy:session:s1", "keep")

    check = invoke(env, "cache.clear", "--check", "--json")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["matched"] == 1 and client.exists("maqsafy:cache:users:0:u1")
    done = invoke(env, "cache.clear")
    assert done.returncode == 0 and "deleted 1 cache keys" in done.stdout
    assert client.get("maqsafy:session:s1") == b"keep"

    retry = invoke(env, "failed.retry", "1", "--json")  # through the app's real Celery producer
    assert retry.returncode == 0, retry.stderr
    assert json.loads(retry.stdout) == {"retried": [1], "count": 1}
    size = json.loads(invoke(env, "queue.size", "--json").stdout)
    assert {q["name"]: q["waiting"] for q in size}["payments"] == 1

    purged = invoke(env, "queue.purge", "payments", "--yes", "--force")
    assert purged.returncode == 0 and "purged 1" in purged.stdout
    assert invoke(env, "failed.prune").returncode == 0
    listed = json.loads(invoke(env, "failed.list", "--json").stdout)
    assert [r["id"] for r in listed["rows"]] == [2]
    history = invoke(env, "history", "--json").stdout
    assert "queue.purge" in history and "cache.clear" in history
