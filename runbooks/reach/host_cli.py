"""Run one of this project's commands on a host of an environment, over SSH.

For commands whose state lives behind the environment's network (failed tasks are rows in its
SQL database): the laptop reaches one app host through the runbook engine and runs
`<app_dir>/current/.venv/bin/invoke NAME ARGS...` in the live release (as `invoke deploy`
lays it out), with the host's own `.env`. The run is
recorded in history like any other; its output comes back redacted.

    out = run_remote(app, "production", "failed.list", ["--since", "2h", "--json"], os.environ)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery_app.inputs import shown
from runbooks import service
from runbooks.deploy import layout
from runbooks.engine.inventory import Host, Inventory, load_environment
from runbooks.errors import NotFound

HOST_GROUPS = ("app", "workers", "all")  # where a command runs, first group that has a host


@dataclass(frozen=True)
class RemoteOutput:
    """What the command printed on the host, and how it ended."""

    host: str
    rc: int
    stdout: str
    stderr: str
    run_id: int | None
    unreachable: str | None = None


def forward_args(positional: Sequence[str] = (), **flags: Any) -> list[str]:
    """Turn a task's arguments back into its command line (`--json`, `--queue q`, ...)."""
    argv = [str(p) for p in positional]
    for name, value in flags.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def pick_host(inventory: Inventory, host: str | None) -> Host:
    """The named host, or the first host of the `app`, else `workers`, else `all` group."""
    if host:
        if host not in inventory.hosts:
            known = ", ".join(inventory.hosts) or "none"
            raise NotFound(f"no host {shown(host)} in {inventory.path} (hosts: {known})")
        return inventory.hosts[host]
    for group in HOST_GROUPS:
        if inventory.groups.get(group):
            return inventory.hosts[inventory.groups[group][0]]
    raise NotFound(f"{inventory.path} lists no host to run the command on")


def run_remote(
    app: Any,
    environment: str,
    command: str,
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    host: str | None = None,
    inventory_dir: Path | None = None,
    read_only: bool = True,
) -> RemoteOutput:
    """Run `invoke COMMAND ARGV...` in the host's app_dir; return its output and exit code."""
    if any("{{" in a for a in argv):
        raise NotFound("arguments may not contain '{{' (they are passed as they are)")
    inventory = load_environment(environment, service.environ_with_dotenv(environ), inventory_dir)
    target = pick_host(inventory, host)
    try:
        app_dir = layout.app_dir(layout.host_vars(inventory.host_vars(target)))
    except OSError as exc:
        raise NotFound(f"{inventory.path}: {target.name}: {exc}") from None
    step = {
        "name": f"invoke {command}",
        "command": {
            "argv": layout.invoke_argv(app_dir, command, argv),
            "chdir": layout.current(app_dir),
            "read_only": read_only,
        },
    }
    result, redactor = service.run_steps(
        app,
        f"{command} (remote)",
        [step],
        environment=environment,
        environ=environ,
        limit=target.name,
        inventory_dir=inventory_dir,
    )
    outcome = result.hosts[target.name]
    if outcome.status == "unreachable" or not outcome.steps:
        why = outcome.message or outcome.cause or "not reached"
        return RemoteOutput(target.name, 1, "", "", result.run_id, unreachable=why)
    step_result = outcome.steps[-1]
    return RemoteOutput(
        target.name,
        step_result.rc if step_result.rc is not None else 1,
        redactor.text(step_result.stdout),
        redactor.text(step_result.stderr),
        result.run_id,
    )
