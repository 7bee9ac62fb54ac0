"""Runs recorded in SQL (SQLite and PostgreSQL), --retry-failed, and secrets masked everywhere."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from runbooks import service
from runbooks.engine import history
from runbooks.errors import NotFound
from tests.integration.runbooks.conftest import make_app
from tests.support.cli import run_invoke
from tests.support.services import RedisServer
from tests.support.sshd import SSHHost, write_inventory

pytestmark = pytest.mark.ssh
ROOT = Path(__file__).resolve().parents[3]

READY_BOOK = """\
name: ready
description: fails where the host's root has no `ready` file
steps:
  - name: ready
    shell: test -e {{ root }}/ready
  - name: mark
    shell: echo run >> {{ root }}/runs
"""


def test_history_rows_match_and_retry_failed_reruns_only_failed_hosts(
    app: Any, tmp_path: Path, inventory_dir: Path, sshd_hosts: list[SSHHost]
) -> None:
    book = tmp_path / "ready.yml"
    book.write_text(READY_BOOK)
    for host in sshd_hosts[::2]:
        (host.root / "ready").touch()
    request = service.RunRequest(str(book), environment="test", inventory_dir=inventory_dir)
    first, _ = service.run_book(app, request, {})
    assert first.run_id is not None
    assert sorted(first.failed) == [sshd_hosts[1].name, sshd_hosts[3].name]

    recorded = history.get_run(app.sessions, first.run_id)
    assert (recorded["name"], recorded["environment"], recorded["status"]) == (
        "ready",
        "test",
        "failed",
    )
    assert recorded["kind"] == "runbook" and recorded["operator"] and recorded["version"]
    assert recorded["arguments"]["env"] == "test"
    assert {h["host"]: h["status"] for h in recorded["hosts"]} == {
        name: h.status for name, h in first.hosts.items()
    }
    ran = [(s["host"], s["position"], s["status"]) for s in recorded["steps"]]
    expected = [
        (name, step.position, step.status)
        for name, host in first.hosts.items()
        for step in host.steps
    ]
    assert sorted(ran) == sorted(expected)

    for host in sshd_hosts:
        (host.root / "ready").touch()
    retry = service.RunRequest(
        str(book), environment="test", inventory_dir=inventory_dir, retry_failed=first.run_id
    )
    second, _ = service.run_book(app, retry, {})
    assert second.ok and list(second.hosts) == [sshd_hosts[1].name, sshd_hosts[3].name]
    assert [(h.root / "runs").exists() for h in sshd_hosts] == [True, True, True, True]
    assert [r["id"] for r in history.list_runs(app.sessions)][:2] == [second.run_id, first.run_id]
    with pytest.raises(NotFound, match="no failed host"):
        service.run_book(
            app,
            service.RunRequest(
                str(book), "test", inventory_dir=inventory_dir, retry_failed=second.run_id
            ),
            {},
        )


def test_record_command_for_ops_commands(app: Any) -> None:
    from runbooks.engine.redact import Redactor

    run_id = history.record_command(
        app.sessions,
        "cache.clear",
        environment="local",
        arguments={"pattern": "maqsafy:cache:*", "url": "redis://:topsecret@h:6379/1"},
        hosts={"localhost": ("ok", "deleted 12 keys")},
        output="deleted 12 keys with password topsecret",
        redactor=Redactor(["topsecret"]),
    )
    with (
        pytest.raises(RuntimeError),
        history.recording(app.sessions, "queue.purge", environment="local") as rec,
    ):
        rec.host("localhost", "ok")
        raise RuntimeError("broker went away")
    shown = history.get_run(app.sessions, run_id)
    assert shown["kind"] == "command" and shown["status"] == "ok"
    assert shown["hosts"][0]["message"] == "deleted 12 keys"
    assert "topsecret" not in json.dumps(shown)
    failed = history.list_runs(app.sessions, 1)[0]
    assert (failed["name"], failed["status"]) == ("queue.purge", "failed")


# What a host prints that this machine never knew: its own settings and a URL with a password.
HOST_SETTINGS = (
    "REDIS_PASSWORD=s3cr3t-only-the-host-knows\n"
    "DATABASE_URL=postgresql://app:hostpw-123@db/x\n"
    "export API_TOKEN=tok-xyz\n"
)
HOST_ONLY = ("s3cr3t-only-the-host-knows", "hostpw-123", "tok-xyz")
HOST_BOOK = """\
name: host-settings
description: a host shows settings only it knows, on stdout, on stderr and in a failure
steps:
  - name: show the settings
    shell: cat {{ root }}/settings.env; cat {{ root }}/settings.env >&2
  - name: fail quoting them
    shell: tac {{ root }}/settings.env >&2; exit 3
    ignore_errors: true
  - name: show the database
    shell: sed -n 2p {{ root }}/settings.env
"""


def test_secrets_only_a_host_knows_are_masked_everywhere(
    app: Any, tmp_path: Path, inventory_dir: Path, sshd_hosts: list[SSHHost]
) -> None:
    from runbooks.cli import render

    for host in sshd_hosts[:2]:
        (host.root / "settings.env").write_text(HOST_SETTINGS)
    book = tmp_path / "host-settings.yml"
    book.write_text(HOST_BOOK)
    request = service.RunRequest(
        str(book),
        "test",
        limit=",".join(h.name for h in sshd_hosts[:2]),
        inventory_dir=inventory_dir,
    )
    prepared = service.prepare(app, request, {})
    console, log = io.StringIO(), tmp_path / "run.log"
    progress = render.ConsoleProgress(prepared.redactor, console)  # what `invoke run` prints
    result = service.execute(app, prepared, request.arguments(), progress, log)
    render.print_recap(result, prepared.redactor, lambda line: print(line, file=console))
    document = json.dumps(prepared.redactor.value(result.to_dict()))  # `invoke run --json`
    assert result.ok and result.run_id is not None
    with app.engine.connect() as conn:
        rows = "\n".join(
            repr(row)
            for table in ("ops_runs", "ops_run_hosts", "ops_run_steps")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        )
    places = {
        "console": console.getvalue(),
        "json": document,
        "log": log.read_text(),
        "history rows": rows,
        "history.show": json.dumps(history.get_run(app.sessions, result.run_id), default=str),
    }
    for where in ("console", "json", "log", "history rows"):
        assert "REDIS_PASSWORD=********" in places[where], where
        assert "postgresql://app:********@db/x" in places[where], where
        assert "export API_TOKEN=********" in places[where], where
    for where, found in places.items():
        for secret in HOST_ONLY:
            assert secret not in found, f"{secret} leaked into the {where}"


SECRET_BOOK = """\
name: leaky
description: tries hard to print the secret
steps:
  - name: ping with the password
    command:
      argv: [redis-cli, -p, "{{ redis_port }}", -a, "{{ redis_password }}", --no-auth-warning, ping]
      expect: PONG
      read_only: true
  - name: echo it
    shell: echo "out {{ redis_password }}"; echo "err {{ redis_password }}" >&2
  - name: fail with it
    shell: echo "bad {{ redis_password }}" >&2; exit 3
    ignore_errors: true
  - name: the book's own ping
    shell:
      cmd: REDISCLI_AUTH="$PW" redis-cli -p "$PORT" ping
      env: {PW: "{{ redis_password }}", PORT: "{{ redis_port }}"}
      expect: PONG
  - name: the host's own settings
    shell: cat {{ root }}/settings.env; tac {{ root }}/settings.env >&2
"""


def invoke(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_invoke(args, env)


def test_the_secret_is_found_nowhere(
    tmp_path: Path, sshd_hosts: list[SSHHost], redis_server_with_password: RedisServer
) -> None:
    secret = redis_server_with_password.password
    assert secret
    for host in sshd_hosts[:2]:
        (host.root / "settings.env").write_text(HOST_SETTINGS)
    directory = tmp_path / "inv"
    write_inventory(
        directory,
        "test",
        sshd_hosts[:2],
        vars={"redis_port": redis_server_with_password.port, "redis_password": "${RB_SECRET}"},
    )
    book = tmp_path / "leaky.yml"
    book.write_text(SECRET_BOOK)
    var = tmp_path / "var"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "DATABASE"))},
        "RB_SECRET": secret,
        "MAQSAFY_VAR_DIR": str(var),
        "MAQSAFY_ENV_FILE": str(tmp_path / "absent.env"),
    }
    assert invoke(["db.migrate"], env).returncode == 0
    base = ["run", str(book), "--env", "test", "--inventory", str(directory)]
    people = invoke(base, env)
    scripts = invoke([*base, "--json"], env)
    assert people.returncode == 0, people.stdout + people.stderr
    assert scripts.returncode == 0, scripts.stderr
    document = json.loads(scripts.stdout)
    assert document["status"] == "ok"
    steps = document["hosts"][sshd_hosts[0].name]["steps"]
    assert "out ********" in steps[1]["stdout"] and "bad ********" in steps[2]["stderr"]
    assert "PONG" in steps[3]["stdout"]
    shown = invoke(["history.show", str(document["run_id"]), "--json"], env)
    listed = invoke(["history", "--json"], env)

    app = make_app(f"sqlite:///{var / 'maqsafy.db'}", var)
    with app.engine.connect() as conn:
        rows = [
            repr(row)
            for table in ("ops_runs", "ops_run_hosts", "ops_run_steps")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        ]
    app.engine.dispose()
    log = (var / "log" / "runbooks.log").read_text()
    places = {
        "console": people.stdout + people.stderr,
        "json": scripts.stdout + scripts.stderr,
        "history.show": shown.stdout,
        "history": listed.stdout,
        "history rows": "\n".join(rows),
        "log": log,
    }
    assert "out ********" in places["console"] and "********" in places["history rows"]
    assert "export API_TOKEN=********" in places["console"] and "API_TOKEN=****" in places["log"]
    assert "postgresql://app:********@db/x" in steps[4]["stdout"] + places["history rows"]
    for where, found in places.items():
        for leaked in (secret, *HOST_ONLY):
            assert leaked not in found, f"{leaked} leaked into the {where}"


def test_malformed_files_give_one_located_line_and_exit_2(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    directory = tmp_path / "inv"
    directory.mkdir()
    (directory / "test.yml").write_text(
        "environment: test\nvars:\n  redis_password: hunter2\nhosts:\n  a: {}\n"
    )
    bad_book = tmp_path / "bad.yml"
    # Jinja parses `os.system('id')` (it fails when run: 'os' is undefined, and the sandbox
    # guards calls); a condition that does not parse is refused when the book loads.
    bad_book.write_text("steps:\n  - shell: echo\n    when: os.system('id') ==\n")
    env = {
        **os.environ,
        "MAQSAFY_VAR_DIR": str(tmp_path / "var"),
        "MAQSAFY_ENV_FILE": str(tmp_path / "absent.env"),
    }
    cases = [
        (
            ["run", "facts", "--env", "test", "--inventory", str(directory)],
            f"{directory / 'test.yml'}:3: vars.redis_password: a literal secret is refused",
        ),
        (["run", str(bad_book)], f"{bad_book}:3: steps[0].when:"),
        (["run", "nope"], "no runbook 'nope'"),
        (["run", "facts", "--env", "nowhere"], "no inventory for environment 'nowhere'"),
    ]
    for args, expected in cases:
        done = invoke(args, env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert "hunter2" not in done.stdout + done.stderr
