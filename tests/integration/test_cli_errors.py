"""A new operator's first mistakes, run as they run them: `python -m invoke ...` in a subprocess.

Each mistake gives one line on stderr starting `error:`, exit code 2 and no traceback, against
a real SQLite file, a PostgreSQL URL nothing listens on, and a real redis-server. Commands that
change state are recorded in the run history once their input passed; refusals record nothing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from celery_app.ops import redis_acl
from tests.support.cli import clean_environ, run_invoke_batch, start_invoke
from tests.support.health import fail_a_task
from tests.support.redis_app import app_env, history_names, migrated_app
from tests.support.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]
DOWN = "postgresql://nobody@127.0.0.1:1/x"
SQL_COMMANDS = [
    ["failed.list"],
    ["failed.show", "1"],
    ["failed.retry", "1"],
    ["failed.forget", "1"],
    ["failed.flush"],
    ["failed.prune"],
    ["maintenance.reconcile"],
    ["maintenance.relay"],
    ["maintenance.prune"],
]
# Not migrated: the same translation, so a few of them (each is a process, ~1 s of CPU).
FRESH_COMMANDS = [SQL_COMMANDS[i] for i in (0, 2, 4, 6, 7)]
Run = tuple[list[str], dict[str, str]]


def run_all(runs: list[Run]) -> list[subprocess.CompletedProcess[str]]:
    """Run each `invoke ARGS` with only `env` for REDIS_*/DATABASE_*, all at once."""
    procs = [(args, start_invoke(args, clean_environ(**env))) for args, env in runs]
    done = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def one_error(done: subprocess.CompletedProcess[str], *expected: str, code: int = 2) -> str:
    """Assert one `error:` line on stderr, exit `code`, no traceback; return the line."""
    assert "Traceback" not in done.stderr + done.stdout, (done.args, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (done.args, done.stderr)
    assert done.returncode == code, (done.args, done.returncode, done.stderr)
    for text in expected:
        assert text in lines[0], (done.args, lines[0])
    return lines[0]


def test_a_database_down_or_not_migrated_is_one_line(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    down = app_env(tmp_path / "down", redis_server.url, DATABASE_URL=DOWN)
    fresh = app_env(tmp_path / "fresh", redis_server.url)  # SQLite, never migrated
    results = run_all([(a, down) for a in SQL_COMMANDS] + [(a, fresh) for a in FRESH_COMMANDS])
    for done in results[: len(SQL_COMMANDS)]:
        one_error(
            done,
            "error: database postgresql",
            "did not answer: ",
            "(check DATABASE_URL and that the server runs)",
        )
    tables = {"maintenance.reconcile": "accounts", "maintenance.relay": "outbox"}
    for done in results[len(SQL_COMMANDS) :]:
        table = tables.get(done.args[0], "failed_tasks")
        one_error(done, f"error: the database has no {table} table: run `invoke db.migrate`")
    assert not redis_server.client().keys("*"), "nothing reached the broker"


def test_db_migrate_only_upgrades(tmp_path: Path) -> None:
    env = app_env(tmp_path, "redis://127.0.0.1:1/0")  # never contacted
    [unknown, shown] = run_all(
        [(["db.migrate", "--revision", "nosuch"], env), (["--help", "db.migrate"], env)]
    )
    one_error(unknown, "--revision 'nosuch'")
    assert "only upgrades" in shown.stdout and "downgrades are not done" in shown.stdout
    [migrated] = run_all([(["db.migrate"], env)])
    assert migrated.returncode == 0, migrated.stderr
    [lower, base, current] = run_all(
        [
            (["db.migrate", "--revision", "0001"], env),
            (["db.migrate", "--revision", "base"], env),
            (["db.current", "--json"], env),
        ]
    )
    one_error(lower, "downgrades are not done by this command")
    one_error(base, "downgrades are not done by this command")
    assert json.loads(current.stdout)["current"] == json.loads(current.stdout)["head"]


def test_a_var_dir_that_cannot_be_made_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    env = {"MAQSAFY_VAR_DIR": str(tmp_path / "a-file" / "var"), "MAQSAFY_ENV_FILE": "/dev/null"}
    [done] = run_all([(["demo"], env)])
    one_error(done, "error: MAQSAFY_VAR_DIR: cannot create ")


NUMBER_FLAGS = [
    (["demo", "--purchases", "abc"], "--purchases: expected a whole number from 1 to "),
    (["demo", "--merchants", "0"], "--merchants: expected a whole number from 1 to "),
    (["history", "--last", "abc"], "--last: expected a whole number from 1 to 1000"),
    (["history", "--last", "0"], "--last: expected a whole number from 1 to 1000"),
    (["history", "--last", "-1"], "--last: expected a whole number from 1 to 1000"),
    (["history.show", "abc"], "bad run id 'abc'"),
    (["run", "ping", "--retry-failed", "abc"], "bad run id 'abc' for --retry-failed"),
    (["run", "ping", "--remote", "--wait", "abc"], "--wait: expected a whole number from 0"),
    (["run", "ping", "--remote", "--slices", "0"], "--slices: expected a whole number from 1"),
    (["run", "ping", "--remote", "--slices", "65"], "--slices: expected a whole number from 1"),
    (["run", "ping", "--remote", "--slices", "x"], "--slices: expected a whole number from 1"),
    (["run", "ping", "--slices", "2"], "error: --slices splits a run across ops workers"),
    (["workers.stop", "--timeout", "abc"], "--timeout: expected a whole number from 1 to"),
    (["workers.stop", "--timeout", "-1"], "--timeout: expected a whole number from 1 to"),
    (["workers.restart", "--timeout", "abc"], "--timeout: expected a whole number from 1 to"),
    (["workers.start", "--concurrency", "0"], "--concurrency: expected a whole number from 1"),
    (["workers.start", "--concurrency", "-3"], "--concurrency: expected a whole number from 1"),
]
POSITIONAL_HELP = [
    (["--help", "queue.purge"], "the queue to purge"),
    (["--help", "failed.show"], "the id failed.list shows"),
    (["--help", "failed.retry"], "ids as failed.list shows them"),
    (["--help", "docker.logs"], "the container, by the name docker.ps shows"),
    (["--help", "db.migrate"], "the revision to upgrade to"),
    (["--help", "workers.stop"], "--timeout=STRING"),
    (["--help", "workers.restart"], "--timeout=STRING"),
    # help asked where a positional goes is help, not a value (a newcomer's `run --help`)
    (["run", "--help"], "Run a runbook on an environment's hosts"),
    (["history.show", "-h"], "Show one recorded run"),
    (["failed.retry", "--help"], "ids as failed.list shows them"),
]


def test_text_in_number_flags_and_help(tmp_path: Path) -> None:
    env = app_env(tmp_path, "redis://127.0.0.1:1/0")  # refused before any service is used
    runs = [(args, env) for args, _ in NUMBER_FLAGS + POSITIONAL_HELP]
    results = run_all(runs)
    for (_, expected), done in zip(NUMBER_FLAGS, results, strict=False):
        one_error(done, expected)
    for (_, expected), done in zip(POSITIONAL_HELP, results[len(NUMBER_FLAGS) :], strict=True):
        assert done.returncode == 0 and expected in done.stdout, (done.args, done.stdout)
    assert not (tmp_path / "var" / "maqsafy.db").exists(), "a refused flag touched SQL"


LONG = "a" * 300  # longer than a file name may be
DIGITS = "9" * 5000  # past int()'s 4,300-digit limit
# A new user's repros: each is one `error:` line naming what is wrong, exit 2, before any work.
REPROS = [
    # deploy, deploy.rollback: every flag checked before preflight, so nothing is built
    (["deploy", "--serial", "99999999999999999999"], "--serial: expected a host count from 1"),
    (["deploy", "--max-fail", "101"], "--max-fail: expected a percentage from 0 to 100"),
    (["deploy", "--ref", "no-such-ref"], "--ref: 'no-such-ref' is not a commit"),
    (["deploy", "--limit", "nosuch"], "--limit 'nosuch' matches no host or group"),
    (["deploy", "--limit", ""], "error: deploy: --limit is empty; give a value or leave"),
    (["deploy.rollback", "--to", ""], "error: deploy.rollback: --to is empty"),
    (["deploy.rollback", "--to", "previous"], "--to: expected a release name <time>-<sha>"),
    (["deploy.rollback", "--serial", "١"], "--serial: expected a host count from 1"),
    (["deploy.log", "--last", "0"], "--last: expected a whole number from 1 to 10000, got '0'"),
    (["deploy.log", "--env", "../etc"], "environment '../etc': expected a name like staging"),
    (["approvals", "--status", "nope"], "--status: expected one of pending, approved, denied"),
    # Celery reads a bare number as a node count (and then hangs)
    (["workers.start", "--nodes", "2"], "read as a node count), got '2'"),
    (["workers.start", "--nodes", "0"], "--nodes takes node names like w1,w2"),
    (["workers.start", "--nodes", "-1"], "got '-1'"),
    # ASCII digits only; a long number is out of range, not a traceback
    (["history.show", "²"], "error: bad run id '²': run ids are whole numbers"),
    (["failed.show", "١٢"], "error: bad failed-task id '١٢'"),
    (["run", "ping", "--retry-failed", "٣"], "bad run id '٣' for --retry-failed"),
    (["failed.prune", "--hours", DIGITS], "--hours: expected a whole number from 0 to 876000"),
    (["history", "--last", DIGITS], "--last: expected a whole number from 1 to 1000, got '99"),
    (["metrics.serve", "--port", "١٠٠"], "--port: expected a whole number from 1 to 65535"),
    # names that become file names, host names, revisions
    (["status", "--env", LONG], "expected a name like staging (1 to 64 letters"),
    (["run", LONG], "error: no runbook 'aaa"),
    (["audit.security", "--path", LONG], "error: --path 'aaa"),
    (["db.migrate", "--revision", ""], "error: db.migrate: --revision is empty"),
    (["db.migrate", "--revision", "0001@"], "--revision: expected a revision such as head"),
    (["metrics.serve", "--host", "../../etc/passwd"], "--host: expected a host name or IP"),
    (["metrics.serve", "--host", "0"], "error: --host '0' binds every address"),
    (["metrics.serve", "--host", "*"], "error: --host '*' binds every address"),
    (["console", "--port", "0"], "error: --port: expected a whole number from 1 to 65535"),
    (["console", "--port", "http"], "error: --port: expected a whole number from 1 to 65535"),
    (["console", "--host", "../../etc/passwd"], "--host: expected a host name or IP"),
    (["console", "--host", "no-such-host.invalid"], "--host 'no-such-host.invalid': cannot"),
    # empty is refused, never taken as the default
    (["cache.clear", "--env", ""], "error: cache.clear: --env is empty"),
    (["failed.show", " "], "error: failed.show: ID is empty; give a value (invoke"),
    # Invoke's own parse errors
    (["queue.purge"], "error: queue.purge: give QUEUE (invoke --help queue.purge)"),
    (["failed.list", "--nosuch"], "error: failed.list: unknown flag '--nosuch'"),
    (["failed.list", "--limit"], "error: failed.list: --limit needs a value"),
    (["nosuch"], "error: no task 'nosuch' (invoke --list shows them)"),
    # a 5,000-character value comes back cut to 80 characters
    (["queue.purge", "q" * 5000], "error: unknown queue '" + "q" * 79 + "…'"),
]


def test_bad_input_is_one_line_before_any_work(tmp_path: Path) -> None:
    env = clean_environ(**app_env(tmp_path, "redis://127.0.0.1:1/0"))  # never contacted
    helps = [["failed.list", "-h"], ["failed.flush", "-h"], ["metrics.serve", "-h"]]
    results = run_invoke_batch([(args, env) for args, _ in REPROS + [(h, "") for h in helps]])
    for (_, says), done in zip(REPROS, results, strict=False):
        assert len(one_error(done, says)) < 300, done.args[:2]
    for done in results[len(REPROS) :]:  # -h is help everywhere (--host, --hours had it)
        assert done.returncode == 0 and done.stdout.startswith("Usage:"), done.args
    var = tmp_path / "var"
    assert not (var / "maqsafy.db").exists(), "a refused command opened the database"
    assert not (var / "deploy").exists(), "a refused deploy provisioned a release folder"


def test_bad_configuration_exits_2_before_celery_loads(tmp_path: Path) -> None:
    env = {
        "REDIS_PORT": "abc",
        "REDIS_HOST": "redis",
        "MAQSAFY_VAR_DIR": str(tmp_path),
        "MAQSAFY_ENV_FILE": "/dev/null",
    }
    for done in run_all([([cmd], env) for cmd in ("status", "workers.status", "metrics.serve")]):
        one_error(done, "error: REDIS_PORT: expected a whole number from 1 to 65535, got 'abc'")


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path, redis_server: RedisServer) -> None:
    env = app_env(tmp_path, redis_server.url)
    migrated_app(env).engine.dispose()
    proc = start_invoke(["status"], clean_environ(**env))
    assert proc.stdout is not None
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (1, "")


def test_state_changes_are_recorded_and_refusals_are_not(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    env = app_env(
        tmp_path,
        redis_server.url,
        **{u.password_env: f"{u.role}-pw-7f3a" for u in redis_acl.ROLE_USERS},
    )
    app = migrated_app(env)
    for n in (1, 2, 3):
        fail_a_task(app, f"t{n}")
    refused = run_all(
        [
            (["failed.retry", "1,99"], env),
            (["failed.retry", "1", "--queue", "payments"], env),
            (["failed.forget", "abc"], env),
            (["failed.flush", "--hours", "x"], env),
            (["failed.prune", "--hours", "-1"], env),
            (["redis.acl", "--apply", "--role", "bad name"], env),
            (["redis.acl", "--apply", "--check"], env),  # a check changes nothing: not recorded
            (["failed.show", "999"], env),
        ]
    )
    expected = ["id 99; nothing changed", "--queue goes with --all", "bad failed-task id 'abc'"]
    expected += ["--hours", "--hours", "--role: unknown role 'bad name'"]
    for done, words in zip(refused, expected, strict=False):
        one_error(done, words)
    assert refused[6].returncode == 0, refused[6].stderr
    read = one_error(refused[7], "no failed task with id 999")
    assert "nothing changed" not in read  # a read never changes anything
    assert history_names(app) == []

    for args in (
        ["failed.retry", "1"],
        ["failed.forget", "2"],
        ["failed.prune"],
        ["failed.flush"],
        ["redis.acl", "--apply"],
    ):
        [done] = run_all([(args, env)])
        assert done.returncode == 0, (args, done.stderr)
    assert history_names(app) == [
        ("failed.retry", "ok", {"ids": [1], "queue": None}),
        ("failed.forget", "ok", {"ids": [2]}),
        ("failed.prune", "ok", {"hours": 24}),
        ("failed.flush", "ok", {"hours": None}),
        (
            "redis.acl",
            "ok",
            {
                "users": [u.name for u in redis_acl.ROLE_USERS],
                "password_envs": [u.password_env for u in redis_acl.ROLE_USERS],
            },
        ),
    ]
    [shown] = run_all([(["history", "--last", "5", "--json"], env)])
    messages = [r["message"] for r in reversed(json.loads(shown.stdout))]
    assert messages == [
        "retried 1 failed tasks",
        "forgot 1 failed tasks",
        "pruned 0 failed tasks older than 24h",
        "flushed 1 failed tasks",
        "; ".join(f"ACL user {u.name} set to its role's rules" for u in redis_acl.ROLE_USERS),
    ]
    assert "pw-7f3a" not in shown.stdout
    app.engine.dispose()
