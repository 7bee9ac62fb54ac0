"""Invoke entry point: the command line, composed from one module per namespace (runbooks/cli/).

`invoke --list` shows every command; `invoke --help NAME` its flags. Errors an operator can fix
exit non-zero with one line. Each command parses its flags, calls one service in runbooks/ or
celery_app/, and prints its value; nothing here holds logic of its own.
"""

from invoke import Collection

from runbooks.cli import (
    approvals,
    audit,
    books,
    cache,
    console,
    db,
    demo,
    deploy,
    docker,
    failed,
    history,
    maintenance,
    metrics,
    operators,
    queue,
    ratelimit,
    redis,
    sessions,
    status,
    workers,
)
from runbooks.cli.program import start

COMMANDS = (  # no namespace
    books.run, books.list_books, console.console, demo.demo, demo.stop, status.status,
    operators.login, operators.logout, approvals.approve, approvals.deny,
)  # fmt: skip
# each module's own `ns`
NAMESPACES = (
    approvals, audit, cache, db, deploy, docker, failed, history, maintenance, metrics,
    operators, queue, ratelimit, redis, sessions, workers,
)  # fmt: skip

ns = Collection(*COMMANDS, *NAMESPACES)
start(ns)  # broken pipes, history warnings, Invoke's parse errors as `error:` lines
