"""`become` through real sudo on real sshd hosts: a dedicated unprivileged user logs in over SSH
and becomes root with its password, or `nobody` without one (NOPASSWD); the password is looked
for in the process list, the output, the JSON, the history rows, the run log and root's shell
history. The user, its home and its sudoers file are removed afterwards.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from runbooks import service
from runbooks.cli import render
from runbooks.engine.book import inline_book
from runbooks.engine.executor import Executor, RunOptions
from runbooks.engine.inventory import load_environment
from runbooks.engine.results import RunResult
from tests.support.services import require
from tests.support.sshd import SSHHost, keygen, start_sshd, write_inventory

pytestmark = pytest.mark.ssh


@dataclass
class SudoUser:
    name: str
    password: str
    home: Path
    host: SSHHost


@pytest.fixture
def sudo_user(tmp_path: Path) -> Iterator[SudoUser]:
    """A new local user with a password, allowed `sudo` to root with it and to `nobody`
    without, and an sshd on 127.0.0.9 that lets only that user in."""
    require(shutil.which("sudo") is not None, "sudo is not installed (apt install sudo)")
    require(os.geteuid() == 0, "creating a test user needs root")
    name = "mqbecome" + secrets.token_hex(3)
    password = "Bp-" + secrets.token_hex(10)
    home = Path("/home") / name
    sudoers = Path("/etc/sudoers.d") / f"maqsafy-test-{name}"
    host = None
    subprocess.run(["useradd", "-m", "-d", str(home), "-s", "/bin/sh", name], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        rules = f"{name} ALL=(root) ALL\n{name} ALL=(nobody) NOPASSWD: ALL\n"
        staged = tmp_path / "sudoers"
        staged.write_text(rules)
        subprocess.run(["visudo", "-cqf", str(staged)], check=True)
        sudoers.write_text(rules)
        sudoers.chmod(0o440)
        client_key = keygen(tmp_path / "client" / "id_ed25519")
        authorized = home / "authorized_keys"
        authorized.write_text(client_key.with_suffix(".pub").read_text())
        shutil.chown(authorized, name, name)
        host = start_sshd(tmp_path / "sshd", 7, client_key, authorized=authorized, user=name)
        yield SudoUser(name, password, home, host)
    finally:
        if host is not None:
            host.stop()
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True)
        shutil.rmtree(f"/run/sudo/ts/{name}", ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def inventory(tmp_path: Path, user: SudoUser, password: bool = True) -> Path:
    directory = tmp_path / "inv"
    host_vars = {"become_password": "${MQ_BECOME}"} if password else {}
    write_inventory(directory, "test", [user.host], vars=host_vars)
    return directory


def run(
    directory: Path, document: dict[str, Any], environ: dict[str, str], **opts: Any
) -> RunResult:
    inv = load_environment("test", environ, directory)
    return Executor(inline_book("t", document), inv, RunOptions(**opts)).run()


def test_become_root_with_a_password_that_is_found_nowhere(
    tmp_path: Path, sudo_user: SudoUser, app: Any
) -> None:
    secret = sudo_user.password
    environ = {"MQ_BECOME": secret}
    directory = inventory(tmp_path, sudo_user)
    book = tmp_path / "become.yml"
    steps = [
        {"name": "who", "shell": {"cmd": "id -un", "read_only": True}, "become": True},
        {
            "name": "every process, with its environment, while sudo runs",
            "shell": "ps -e -ww -o args; cat /proc/[0-9]*/environ | tr '\\0' '\\n'",
            "become": True,
        },
        {
            "name": "a root-only path",
            "file": {"path": "/root/.mq-{{ inventory_hostname }}-probe", "state": "absent"},
            "become": True,
        },
        {"name": "as the login user", "shell": {"cmd": "id -un", "read_only": True}},
    ]
    book.write_text(yaml.safe_dump({"name": "become", "steps": steps}))
    request = service.RunRequest(str(book), environment="test", inventory_dir=directory)
    prepared = service.prepare(app, request, environ)
    console = io.StringIO()
    progress = render.ConsoleProgress(prepared.redactor, console)
    log = tmp_path / "runbooks.log"
    result = service.execute(app, prepared, request.arguments(), progress, log)
    host = result.hosts[sudo_user.host.name]
    assert result.ok, host.to_dict()
    steps = host.steps
    assert steps[0].stdout.strip() == "root"
    assert "sudo" in steps[1].stdout  # the sudo process was there to be seen
    assert secret not in steps[1].stdout  # raw, before any masking: no argv, no environment
    assert steps[3].stdout.strip() == sudo_user.name
    with app.engine.connect() as conn:
        rows = [
            repr(row)
            for table in ("ops_runs", "ops_run_hosts", "ops_run_steps")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        ]
    history = Path("/root/.bash_history")
    places = {
        "console": console.getvalue(),
        "json": json.dumps(prepared.redactor.value(result.to_dict())),
        "history rows": "\n".join(rows),
        "log": log.read_text(),
        "shell history": history.read_text(errors="replace") if history.exists() else "",
    }
    for where, found in places.items():
        assert secret not in found, f"the become password leaked into the {where}"


def test_check_mode_says_what_would_run_as_whom(tmp_path: Path, sudo_user: SudoUser) -> None:
    directory = inventory(tmp_path, sudo_user)
    book = {
        "steps": [
            {"name": "touch", "shell": "touch /root/mq-check", "become": True},
            {
                "name": "conf",
                "file": {"path": "/root/mq-check.conf", "content": "a=1\n"},
                "become": True,
            },
        ]
    }
    result = run(directory, book, {"MQ_BECOME": sudo_user.password}, check=True)
    steps = result.hosts[sudo_user.host.name].steps
    assert steps[0].status == "skipped"
    assert steps[0].message == "check mode: would run `touch /root/mq-check` as root (sudo)"
    assert steps[1].status == "changed"
    assert "would create /root/mq-check.conf (as root, sudo)" in steps[1].message
    assert not Path("/root/mq-check").exists() and not Path("/root/mq-check.conf").exists()


def test_become_without_a_password_where_sudoers_says_nopasswd(
    tmp_path: Path, sudo_user: SudoUser
) -> None:
    directory = inventory(tmp_path, sudo_user, password=False)
    book = {
        "become": True,
        "become_user": "nobody",
        "steps": [{"shell": {"cmd": "id -un; pwd", "read_only": True, "chdir": "/"}}],
    }
    result = run(directory, book, {})
    step = result.hosts[sudo_user.host.name].steps[0]
    assert step.status == "ok", step.message
    assert step.stdout.split() == ["nobody", "/"]


def test_a_wrong_or_missing_password_fails_the_step_with_one_line(
    tmp_path: Path, sudo_user: SudoUser
) -> None:
    book = {"steps": [{"shell": "touch /root/mq-never", "become": True}]}
    wrong = "Wrong-" + secrets.token_hex(6)
    result = run(inventory(tmp_path, sudo_user), book, {"MQ_BECOME": wrong})
    step = result.hosts[sudo_user.host.name].steps[0]
    assert step.status == "failed"
    assert step.message.startswith("become: sudo refused to run as root on")
    assert wrong not in step.message + step.stdout + step.stderr
    missing = run(inventory(tmp_path / "b", sudo_user, password=False), book, {})
    message = missing.hosts[sudo_user.host.name].steps[0].message
    assert "asks a password to run as root: set become_password: ${VAR}" in message
    assert not Path("/root/mq-never").exists()


def test_root_becomes_another_user_and_a_literal_password_is_refused(
    tmp_path: Path, sshd_hosts: list[SSHHost], sudo_user: SudoUser
) -> None:
    require(shutil.which("sudo") is not None, "sudo is not installed (apt install sudo)")
    directory = tmp_path / "root-inv"
    write_inventory(directory, "test", sshd_hosts[:1])
    book = {
        "steps": [
            {
                "shell": {"cmd": "id -un", "read_only": True},
                "become": True,
                "become_user": sudo_user.name,
            },
        ]
    }
    result = run(directory, book, {})
    assert result.hosts[sshd_hosts[0].name].steps[0].stdout.strip() == sudo_user.name
    from runbooks.errors import BookError

    with pytest.raises(BookError, match=r"vars.become_password: a literal secret is refused"):
        inline_book("t", {"vars": {"become_password": "hunter2"}, "steps": [{"shell": "true"}]})
