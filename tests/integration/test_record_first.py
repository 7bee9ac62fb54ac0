"""Nothing acts without its record: every state-changing command opens its history row first.

Run as an operator runs them (`python -m invoke ...`), against a real redis-server and real
PostgreSQL. With a database that does not exist, or one whose schema stops before the history
tables, each command exits 2 with one `error:` line naming the database, and the Redis state,
the failed-task rows and the deploy lock are exactly as they were. With the database up, the row
says `running` while the command acts (the command is held on a stopped redis-server), then
`ok`; an action that fails closes it `failed` with why; a row that cannot be closed is one
`warning:` line and the command's own outcome stands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import make_url, text

from celery_app.bootstrap import Container
from celery_app.infra import migrate
from celery_app.ops.queues import priority_lists
from celery_app.stores.ratelimit import TopUpThrottle
from celery_app.stores.sessions import SessionStore
from runbooks.deploy import rollout
from runbooks.engine import history
from runbooks.errors import HistoryError
from tests.support.cli import clean_environ, run_invoke, start_invoke
from tests.support.health import fail_a_task
from tests.support.redis_app import app_env, build_app
from tests.support.services import RedisServer, create_pg_database, pg_admin_url, wait_for

Run = tuple[list[str], dict[str, str]]

# Every state-changing command that runs on this machine, with input that passes validation.
# The run history's tables, the ones that refer to ops_runs first.
DROP_HISTORY = "DROP TABLE ops_run_slices, ops_run_steps, ops_run_hosts, ops_runs"
REDIS_COMMANDS = [
    ["cache.clear"],
    ["queue.purge", "maintenance", "--yes"],
    ["sessions.revoke", "--user", "77"],
    ["ratelimit.reset", "topup:9"],
]
FAILED_COMMANDS = [
    ["failed.retry", "1"],
    ["failed.forget", "2"],
    ["failed.flush"],
    ["failed.prune", "--hours", "0"],
]
OTHER_COMMANDS = [
    ["workers.start"],
    ["workers.stop"],
    ["workers.restart"],
    ["deploy"],
    ["deploy.rollback"],
    ["deploy.unlock"],
    ["failed.retry", "1", "--env", "remote", "--inventory", "{inventory}"],  # over SSH
]


def run_all(runs: list[Run], at_once: int = 4) -> list[subprocess.CompletedProcess[str]]:
    """Run each `invoke ARGS` with only `env` for REDIS_*/DATABASE_*, a few at a time."""

    def one(run: Run) -> subprocess.CompletedProcess[str]:
        return run_invoke(run[0], clean_environ(**run[1]), timeout=120)

    with ThreadPoolExecutor(at_once) as pool:
        return list(pool.map(one, runs))


def one_error(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit 2, exactly one `error:` line on stderr containing `expected`, no traceback."""
    assert "Traceback" not in done.stderr + done.stdout, (done.args, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (done.args, done.stderr)
    assert done.returncode == 2, (done.args, done.returncode, done.stderr)
    for words in expected:
        assert words in lines[0], (done.args, lines[0])
    return lines[0]


def seed_redis(app: Container) -> None:
    """A cache key, user 77's sessions, a spent rate limit, waiting messages, alice's lock."""
    app.redis("cache").set(app.keyspace.cache("menu", "today"), "rice")
    sessions = SessionStore.from_container(app)
    for _ in range(2):
        sessions.create("77", {"role": "parent"})
    TopUpThrottle.from_container(app).check(9)
    app.redis("broker").lpush(priority_lists("maintenance")[0], "m1", "m2", "m3")
    holder = {"owner": "alice", "host": "laptop", "since": "now", "release": "v9", "token": "t"}
    app.redis("locks").set(rollout.lock_key(app, "local"), json.dumps(holder))


def redis_state(server: RedisServer) -> dict[Any, Any]:
    client = server.client()
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


def failed_rows(app: Container) -> list[tuple[Any, ...]]:
    with app.engine.connect() as connection:
        return [
            tuple(r) for r in connection.execute(text("SELECT * FROM failed_tasks ORDER BY id"))
        ]


def remote_inventory(directory: Path) -> Path:
    """`remote`: one app host nothing listens for (reaching it would say `unreachable`)."""
    directory.mkdir(parents=True, exist_ok=True)
    host = {"address": "127.0.0.1", "port": 1, "user": "deploy", "groups": ["app"]}
    document = {"environment": "remote", "hosts": {"app-1": host}}
    (directory / "remote.yml").write_text(yaml.safe_dump(document))
    return directory


@contextmanager
def pg_database(revision: str | None) -> Iterator[str]:
    """A fresh PostgreSQL database migrated up to `revision` (None: not at all)."""
    url, drop = create_pg_database()
    try:
        if revision:
            app = build_app({"DATABASE_URL": url, "MAQSAFY_ENV_FILE": "/dev/null"})
            migrate.upgrade(app.engine, revision)
            app.engine.dispose()
        yield url
    finally:
        drop()


def test_no_record_no_action(tmp_path: Path, redis_server: RedisServer) -> None:
    absent = make_url(pg_admin_url()).set(database=f"maqsafy_absent_{uuid.uuid4().hex[:8]}")
    down = app_env(tmp_path / "down", redis_server.url, DATABASE_URL=absent.render_as_string(False))
    inventory = str(remote_inventory(tmp_path / "inventory"))
    seed_redis(build_app(down))
    before = redis_state(redis_server)
    # 0001 has failed_tasks but not the run history (0002): the failed rows can be checked.
    with pg_database("0001") as partial_url:
        partial = app_env(tmp_path / "partial", redis_server.url, DATABASE_URL=partial_url)
        app = build_app(partial)
        for n in (1, 2, 3):
            fail_a_task(app, f"t{n}")
        rows = failed_rows(app)
        commands = REDIS_COMMANDS + FAILED_COMMANDS + OTHER_COMMANDS
        down_runs = [([a.format(inventory=inventory) for a in args], down) for args in commands]
        # The same path as the down database's, so a few (each process is ~1 s of CPU).
        partial_runs = [(args, partial) for args in (*REDIS_COMMANDS[::2], *FAILED_COMMANDS[::2])]
        [checked, *results] = run_all(
            [(["cache.clear", "--check"], down), *down_runs, *partial_runs]
        )

        # Check mode changes nothing, so it is not recorded and needs no database.
        assert checked.returncode == 0 and "would be deleted" in checked.stdout, checked.stderr
        shown = absent.render_as_string(hide_password=True)
        for done in results[: len(down_runs)]:
            line = one_error(done, f"database {shown} did not answer: ", "does not exist")
            assert "unreachable" not in line
        for done in results[len(down_runs) :]:
            one_error(  # the operators table (0005) or ops_runs (0002): whichever is read first
                done,
                "error: run history unavailable: the database has no ",
                " table: run `invoke db.migrate`",
            )
        assert failed_rows(app) == rows, "no failed task was retried, forgotten or deleted"
        app.engine.dispose()
    assert redis_state(redis_server) == before, "no key was deleted, added or changed"
    var = tmp_path / "down" / "var"
    assert not list((var / "run").glob("*.pid")), "no worker was started"
    assert not (var / "deploy").exists(), "nothing was built, shipped or provisioned"


@contextmanager
def stopped(server: RedisServer) -> Iterator[None]:
    """Hold every command at its first Redis call (the kernel still accepts the connection)."""
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def runs_by_status(app: Container, status: str) -> list[dict[str, Any]]:
    return [r for r in history.list_runs(app.sessions, 100) if r["status"] == status]


def test_the_record_is_open_while_the_command_acts(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with pg_database("head") as url:
        env = app_env(tmp_path, redis_server.url, DATABASE_URL=url)
        app = build_app(env)
        seed_redis(app)
        # alice holds the deploy lock: the deploy's row was opened before it asked for the lock.
        one_error(run_invoke(["deploy"], clean_environ(**env)), "local is being deployed by alice")
        (refused,) = runs_by_status(app, "failed")
        assert refused["name"] == "deploy" and "being deployed by alice" in refused["message"]

        # The action fails after the row was opened (its cache Redis does not answer).
        cache_down = {**env, "REDIS_CACHE_URL": "redis://127.0.0.1:1/0"}
        failing = run_invoke(["cache.clear"], clean_environ(**cache_down), timeout=60)

        # Each command waits on its first Redis reply with its row open (the socket timeout
        # raised from 10 s in the URL: five commands starting at once on a loaded CI machine
        # took more than 8 s to all open their rows).
        held = [*REDIS_COMMANDS, ["deploy.unlock"]]
        patient = {**env, "REDIS_URL": f"{redis_server.url}?socket_timeout=90"}
        with stopped(redis_server):
            procs = [start_invoke(args, clean_environ(**patient)) for args in held]

            def all_running() -> bool:
                return len(runs_by_status(app, "running")) == len(held)

            wait_for(all_running, 60, "every held command's row to say running")
            running = {r["name"]: r for r in runs_by_status(app, "running")}
        done = [
            (args, *p.communicate(timeout=60), p.returncode)
            for args, p in zip(held, procs, strict=True)
        ]

        for args, out, err, code in done:
            assert (code, err) == (0, ""), (args, out, err)
        assert sorted(running) == sorted(args[0] for args in held)
        assert running["sessions.revoke"]["arguments"] == {"user": "77"}
        assert running["ratelimit.reset"]["arguments"] == {"key": "topup:9"}
        assert {r["environment"] for r in running.values()} == {"local"}
        assert all(r["operator"] and r["ended_at"] is None for r in running.values())
        closed = {r["id"]: r for r in history.list_runs(app.sessions, 100)}
        for row in running.values():
            assert closed[row["id"]]["status"] == "ok", closed[row["id"]]
        assert "revoked 2 session(s) of user 77" in {r["message"] for r in closed.values()}
        assert redis_server.client().keys("*") == [], "every seeded key was acted on"

        # The action that failed: its row says failed, and why.
        one_error(failing, "127.0.0.1:1")
        (failed,) = [r for r in runs_by_status(app, "failed") if r["name"] == "cache.clear"]
        assert "127.0.0.1:1" in failed["message"]

        # The row cannot be closed (the history tables went away mid-command): one warning
        # line, and the command's own outcome (the keys are deleted, exit 0) is not hidden.
        app.redis("cache").set(app.keyspace.cache("menu", "today"), "rice")
        with stopped(redis_server):
            proc = start_invoke(["cache.clear"], clean_environ(**patient))
            wait_for(lambda: len(runs_by_status(app, "running")) == 1, 60, "cache.clear's row")
            with app.engine.begin() as connection:
                connection.execute(text(DROP_HISTORY))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and out.startswith("deleted 1 cache keys"), (out, err)
        (warning,) = err.strip().splitlines()
        assert warning.startswith("warning: history run ") and "still says running" in warning
        assert "the database has no ops_runs table" in warning
        app.engine.dispose()


def test_a_row_that_cannot_be_closed_hides_no_exception(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pg_database("head") as url:
        app = build_app({"DATABASE_URL": url, "MAQSAFY_VAR_DIR": str(tmp_path)})
        with (
            pytest.raises(RuntimeError, match="broker went away"),
            history.recording(app.sessions, "queue.purge", environment="local") as record,
        ):
            assert runs_by_status(app, "running")[0]["id"] == record.run_id
            with app.engine.begin() as connection:
                connection.execute(text(DROP_HISTORY))
            raise RuntimeError("broker went away")
        assert f"history run {record.run_id} (queue.purge) was not closed" in caplog.text

        acted = []
        with (
            pytest.raises(HistoryError, match="the database has no ops_runs table"),
            history.recording(app.sessions, "queue.purge", environment="local"),
        ):
            acted.append("purged")
        assert acted == [], "the block never runs without its row"
        app.engine.dispose()
