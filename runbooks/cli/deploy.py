"""`deploy.*`: releases of the workers: deploy, roll back, list, unlock."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection, Context

from runbooks.cli.apps import container, inventory_dir
from runbooks.cli.errors import exit_with, operator_errors
from runbooks.cli.flags import JSON_HELP, REASON_HELP, pick, task, whole
from runbooks.cli.output import emit

if TYPE_CHECKING:
    from celery_app.bootstrap import Container
    from runbooks.deploy.request import DeployReport
    from runbooks.engine.executor import Listener

HELP = {
    "env": "the environment (inventory/<env>.yml; default local: this machine)",
    "ref": "the git ref to deploy (default HEAD)",
    "to": "the release to roll back to (default: the one before each host's current)",
    "check": "check mode: say what would change, change nothing",
    "limit": "only these hosts or groups of the workers group",
    "serial": "hosts per batch: a count or a share like 25% (default 1; 0: all at once)",
    "max_fail": "stop after a batch whose failed share exceeds this percentage (default 0)",
    "inventory": "the inventory folder (default ./inventory)",
    **JSON_HELP,
    **REASON_HELP,
}


def where(inventory: str) -> tuple[Container, dict[str, str], Path | None]:
    """The app, the environment over .env, and --inventory as a folder."""
    from runbooks.service import environ_with_dotenv

    return container(), environ_with_dotenv(os.environ), inventory_dir(inventory)


def progress(
    app: Container, env: str, environ: dict[str, str], directory: Path | None, json: bool
) -> tuple[Listener | None, Callable[[str], None]]:
    """Live progress for people: each step on stdout, each phase on stderr (--json: none)."""
    from runbooks.cli import render
    from runbooks.deploy import rollout

    if json:
        return None, rollout.quiet
    redactor = rollout.redactor_for(app, env, environ, directory)
    return render.ConsoleProgress(redactor), lambda m: print(m, file=sys.stderr, flush=True)


def roll(env: str, inventory: str, json: bool, run: Callable[..., DeployReport]) -> None:
    """deploy and rollback: `run(app, environ, inventory_dir, listener, say)` with live progress
    (none with --json), then its report; exit 1 when it failed."""
    app, environ, directory = where(inventory)
    with operator_errors():
        listener, say = progress(app, env, environ, directory, json)
        report = run(app, environ, directory, listener, say)
    emit(report.as_dict(), json, lambda _: print("\n".join(report.lines())))
    exit_with(0 if report.ok else 1)


@task(default=True, help=pick(HELP, *HELP.keys() - {"to"}))
def deploy(
    c: Context,
    env: str = "local",
    ref: str = "HEAD",
    check: bool = False,
    limit: str = "",
    serial: str = "1",
    max_fail: str = "0",
    json: bool = False,
    inventory: str = "",
    reason: str = "",
) -> None:
    """Deploy a git ref to the workers: build once, ship, migrate, restart per batch, verify."""
    from runbooks.deploy import rollout

    def run(app: Any, environ: Any, directory: Any, *live: Any) -> DeployReport:
        request = rollout.DeployRequest(
            environment=env,
            ref=ref,
            check=check,
            limit=limit or None,
            serial=rollout.parse_serial(serial),
            max_fail=rollout.parse_max_fail(max_fail),
            repo=Path.cwd(),
            inventory_dir=directory,
        )
        return rollout.deploy(app, request, environ, *live)

    roll(env, inventory, json, run)


@task(help=pick(HELP, *HELP.keys() - {"ref"}))
def rollback(
    c: Context,
    env: str = "local",
    to: str | None = None,
    check: bool = False,
    limit: str = "",
    serial: str = "1",
    max_fail: str = "0",
    json: bool = False,
    inventory: str = "",
    reason: str = "",
) -> None:
    """Switch the workers back to the previous release (or --to) and restart them."""
    from runbooks.deploy import rollout

    def run(app: Any, environ: Any, directory: Any, *live: Any) -> DeployReport:
        options = (limit or None, serial, max_fail, check, directory)
        return rollout.rollback(app, env, environ, to, *options, *live)

    roll(env, inventory, json, run)


def render_releases(rows: dict[str, dict[str, Any]]) -> None:
    for host, row in rows.items():
        print(f"{host}: {row['status']}" + (f" {row['message']}" if row["message"] else ""))
        for name in reversed(row["releases"]):
            mark = "*" if name == row["current"] else " "
            print(f"  {mark} {name}")
        for node, release in row["workers"].items():
            print(f"    worker {node}: {release}")


@task(help=pick(HELP, "env", "limit", "json", "inventory"))
def releases(
    c: Context, env: str = "local", limit: str = "", json: bool = False, inventory: str = ""
) -> None:
    """List each host's releases and which one is current."""
    from runbooks.deploy import rollout

    app, environ, directory = where(inventory)
    with operator_errors():
        hosts = rollout.releases(app, env, environ, limit or None, directory)
    emit(hosts, json, render_releases)
    exit_with(1 if any(row["status"] != "ok" for row in hosts.values()) else 0)


@task(help=pick(HELP, "env", "inventory"))
def unlock(c: Context, env: str = "local", inventory: str = "") -> None:
    """Force the environment's deploy lock open (when its deploy died); recorded."""
    from runbooks.deploy import rollout

    app, environ, directory = where(inventory)
    with operator_errors():
        print(rollout.unlock(app, env, environ, directory))


@task(
    name="log",
    help={
        **pick(HELP, "json"),
        "env": "only this environment (default all)",
        "last": "how many entries, newest first (default 20)",
    },
)
def log_(c: Context, env: str = "", last: str = "20", json: bool = False) -> None:
    """List every deploy and rollback: who, ref, release, hosts, outcome, the commits it brought."""
    from celery_app.inputs import environment_name
    from runbooks.deploy import log

    count = whole(last, "--last", 1, 10_000)
    with operator_errors():
        if env:
            environment_name(env)
        entries = log.deploy_log(container().sessions, env or None, Path.cwd(), count)
    emit(entries, json, lambda rows: print("\n".join(log.lines(rows))))


ns = Collection("deploy", deploy, rollback, releases, unlock, log_)
