"""`docker.*`: the platform page's Docker checks, on this machine or on an environment's hosts."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from invoke import Collection, Context

from runbooks.cli.apps import container, inventory_dir
from runbooks.cli.errors import exit_with, operator_errors
from runbooks.cli.flags import JSON_HELP, task, whole
from runbooks.cli.output import emit

if TYPE_CHECKING:
    from runbooks.checks.docker import Hosts, HostValues

HELP = {
    "env": "run on this environment's hosts (inventory/<env>.yml; default: this machine)",
    "limit": "with --env: only these hosts or groups",
    "inventory": "the inventory folder (default ./inventory)",
    **JSON_HELP,
}


def hosts(env: str, limit: str, inventory: str) -> Hosts:
    """The hosts --env, --limit and --inventory name (no --env: this machine)."""
    from runbooks.checks.docker import Hosts

    return Hosts(env, limit or None, inventory_dir(inventory))


def answered(data: dict[str, Any]) -> dict[str, Any]:
    """Print each host's error; return the hosts that answered."""
    for host, value in data.items():
        if isinstance(value, dict) and "error" in value:
            print(f"{host}: {value['error']}")
    return {h: v for h, v in data.items() if not (isinstance(v, dict) and "error" in v)}


def report(found: HostValues, json: bool, render: Callable[[dict[str, Any]], None]) -> None:
    """Print what the hosts answered; exit 1 when one could not answer."""
    emit(found.values, json, lambda d: render(answered(d)))
    exit_with(0 if found.ok else 1)


@task(help=HELP)
def ps(c: Context, env: str = "", limit: str = "", inventory: str = "", json: bool = False) -> None:
    """List containers (docker ps -a) on this machine or each host; Redis ones marked."""
    from runbooks.checks import docker

    app = container()
    with operator_errors():
        found = docker.containers(app, os.environ, hosts(env, limit, inventory))

    def render(answers: dict[str, Any]) -> None:
        for host, rows in answers.items():
            print(f"{host}: {len(rows)} container(s)")
            for r in rows:
                mark = " <- redis" if "redis" in (r["name"] + r["image"]).lower() else ""
                print(f"  {r['name']:<24} {r['image']:<24} {r['status']:<22} {r['networks']}{mark}")

    report(found, json, render)


@task(
    help={
        **HELP,
        "service": "the container, by the name docker.ps shows",
        "tail": "how many lines (default 100)",
    }
)
def logs(
    c: Context,
    service: str,
    tail: str = "100",
    env: str = "",
    limit: str = "",
    inventory: str = "",
    json: bool = False,
) -> None:
    """Show the last lines of a container's log (docker logs), secrets masked."""
    from runbooks.checks import docker
    from runbooks.facts.docker import check_service

    lines = whole(tail, "--tail", 1, 100_000)
    with operator_errors():
        check_service(service)
    app = container()
    with operator_errors():
        found = docker.logs(app, service, lines, os.environ, hosts(env, limit, inventory))

    def render(answers: dict[str, Any]) -> None:
        for host, text in answers.items():
            print(f"--- {host}: {service}")
            print(text.rstrip())

    report(found, json, render)


@task(help=HELP)
def networks(
    c: Context, env: str = "", limit: str = "", inventory: str = "", json: bool = False
) -> None:
    """List Docker networks and the containers on each (are the app and Redis on one?)."""
    from runbooks.checks import docker

    app = container()
    with operator_errors():
        found = docker.networks(app, os.environ, hosts(env, limit, inventory))

    def render(answers: dict[str, Any]) -> None:
        for host, rows in answers.items():
            for n in rows:
                print(f"{host}: {n['name']:<20} {n['driver']:<8} {', '.join(n['containers'])}")

    report(found, json, render)


ns = Collection("docker", ps, logs, networks)
