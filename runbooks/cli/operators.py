"""`operators.*`, `login`, `logout`: operator accounts and this user's API token.

Passwords are read from a prompt (twice when setting one), or from the first line of stdin
when it is not a terminal (scripts); never from a flag, which would sit in the shell's
history and the process list.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any

from invoke import Collection, Context

from runbooks.cli.apps import container, health_app, recorded
from runbooks.cli.errors import operator_errors, refuse
from runbooks.cli.flags import JSON_HELP, task, whole
from runbooks.cli.output import emit


def read_password(confirm: bool) -> str:
    """The password from a prompt (asked twice with `confirm`), or stdin's first line."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            refuse("no password on stdin (give it as the first line, or run in a terminal)")
        return line
    try:
        password = getpass.getpass("password: ")
        if confirm and getpass.getpass("again: ") != password:
            refuse("the passwords differ; nothing changed")
    except (EOFError, KeyboardInterrupt):
        refuse("no password given; nothing changed")
    return password


@task(
    help={
        "name": "the account's name (lowercase letters, digits, _ . -)",
        "role": "viewer, operator, approver or admin (the first account: admin)",
    }
)
def add(c: Context, name: str, role: str = "operator") -> None:
    """Add an operator account; its password is asked (or read from stdin); recorded."""
    from runbooks.access import gate, operators

    app = container()
    with operator_errors():
        gate.may(app.sessions, "operators.add")  # refused before the password is asked
        operators.check_add(app.sessions, name, role)  # refused: nothing written, no prompt
    password = read_password(confirm=True)
    with operator_errors():
        operators.check_password(password)
    with operator_errors(), recorded(app, "operators.add", "", operator=name, role=role) as record:
        record.message = operators.add(app.sessions, name, role, password, record.operator)
    print(record.message)


def render_operators(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        state = "disabled" if r["disabled"] else f"{r['tokens']} live token(s)"
        print(f"{r['name']:<20} {r['role']:<9} {state:<18} added {r['created_at'][:19]}")
    if not rows:
        print("no operator accounts: this database has one local operator (the OS user)")


@task(name="list", help=JSON_HELP)
def list_operators(c: Context, json: bool = False) -> None:
    """List operator accounts with their roles."""
    from runbooks.access import operators

    app = container()
    with operator_errors():
        rows = operators.list_operators(app.sessions)
    emit(rows, json, render_operators)


@task(help={"name": "the account to disable (its tokens are revoked)"})
def disable(c: Context, name: str) -> None:
    """Disable an operator account and revoke its tokens; recorded."""
    from runbooks.access import operators

    app = container()
    with operator_errors(), recorded(app, "operators.disable", "", operator=name) as record:
        record.message = operators.disable(app.sessions, name)
    print(record.message)


@task(
    help={
        "name": "your operator name",
        "days": "how long the token lives, 1 to 365 days (default 30)",
    }
)
def login(c: Context, name: str, days: str = "30") -> None:
    """Log in: store an API token (mode 0600) in your config directory for later commands.

    Attempts count against the account's sign-in budget, the console's too (locked out after
    too many failures; the platform's login protection)."""
    from celery_app.stores.login import LoginGuard
    from runbooks.access import guarded, operators, token_file

    lifetime = whole(days, "--days", 1, operators.MAX_DAYS)
    app = health_app("")  # the guard's Redis: the embedded default's is started
    password = read_password(confirm=False)
    with operator_errors():
        guard = LoginGuard.from_container(app)
        token, expires = guarded.admit(
            guard,
            name,
            guarded.THIS_MACHINE,
            lambda: operators.login(app.sessions, name, password, lifetime),
        )
        path = token_file.save(os.environ, token)
    print(f"logged in as {name} until {expires.isoformat()[:19]}Z; token in {path}")


@task
def logout(c: Context) -> None:
    """Log out: revoke this user's token and delete its file."""
    from runbooks.access import operators, token_file

    token = token_file.load(os.environ)
    if token is None:
        refuse("not logged in (no token file, no MAQSAFY_TOKEN)")
    app = container()
    with operator_errors():
        revoked = operators.logout(app.sessions, token)
        removed = token_file.remove(os.environ)
    print(
        ("token revoked" if revoked else "the token was no longer live")
        + ("; its file deleted" if removed else "")
    )


ns = Collection("operators", add, list_operators, disable)
