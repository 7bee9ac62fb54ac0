"""The deployed host: one owner for where a release lives and how its programs are started.

What ``invoke deploy`` leaves on a host, under its ``app_dir`` (default ``/srv/maqsafy``; on
``local``, ``var/deploy``)::

    releases/<time>-<sha>/   one unpacked release each: the tree at the commit, RELEASE,
                             REVISION, DEPS, .env -> ../../shared/.env, and .venv/ holding only
                             the interpreter link and one .pth (no console scripts)
    deps/<hash>/             the dependency layers the kept releases run on
    shared/.env              the host's settings (provisioned, never shipped by a deploy)
    shared/run/              worker pidfiles, logs, and the release each node was started on
                             (``worker_run_dir`` moves them: on ``local``, var/run)
    current -> releases/...  the live release, switched atomically
    incoming/                tarballs while they upload

A release has no ``bin/celery`` or ``bin/invoke``: its programs run as modules of its own
interpreter, ``current/.venv/bin/python -m celery|invoke``, from ``current/`` (where the
release's ``.env`` and ``tasks.py`` are). Worker nodes are named ``<node>@<inventory host>``,
whoever starts them (a deploy, the workers-restart book), so the gate and ``workers.status``
find the same names. A worker that consumes ``ops`` loads the runbook task
(:data:`OPS_RUNNER`); one that does not, never sees a runbook request.

Every module that touches a deployed host (deploy, the workers-restart book's actions, the
remote CLI, the loopback fixture) asks this one for paths, names and defaults.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery_app.infra.keyspace import QUEUES

if TYPE_CHECKING:
    from celery_app.ops.workers import MultiSupervisor

DEFAULT_APP_DIR = "/srv/maqsafy"
WORKER_QUEUES = ",".join(QUEUES)  # every queue the app declares, ops included
OPS_QUEUE = "ops"
OPS_RUNNER = "runbooks.ops_queue.runner"  # the module that registers the `runbook.run` task


# What a host that names none of these in the inventory gets.
HOST_DEFAULTS: Mapping[str, Any] = {
    "app_dir": DEFAULT_APP_DIR,
    "worker_nodes": "w1",
    "worker_queues": WORKER_QUEUES,
    "worker_concurrency": 2,
    "worker_timeout": 60,
    "worker_supervisor": "multi",
    "worker_unit": "maqsafy-worker",
    "keep_releases": 5,
    "worker_run_dir": "",  # <app_dir>/shared/run
}


def defaults(environment: str, var_dir: Path | str) -> dict[str, Any]:
    """The vars a deployed host starts from; the inventory's vars win over these.

    On ``local`` the release lives under this machine's var folder and its workers keep their
    pidfiles in var/run, where ``invoke workers.stop`` finds them.
    """
    if environment != "local":
        return dict(HOST_DEFAULTS)
    local = {"app_dir": str(Path(var_dir) / "deploy"), "worker_run_dir": str(Path(var_dir) / "run")}
    return {**HOST_DEFAULTS, **local}


def host_vars(variables: Mapping[str, Any]) -> dict[str, Any]:
    """A step's vars over the host defaults (for actions run outside a deploy)."""
    return {**HOST_DEFAULTS, **variables}


SYSTEM_DIRS = frozenset(
    ["/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media", "/mnt",
     "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/local",
     "/var", "/var/lib", "/var/log", "/var/tmp"]
)  # fmt: skip


def app_dir(variables: Mapping[str, Any]) -> str:
    """The host's application folder, normalised; OSError for one a deploy must not own.

    A deploy deletes old releases and layers under it, so it must be a folder of its own:
    absolute, no `..` (``/srv/other/../other`` is refused, not resolved), not `/` or a system
    folder such as /usr or /var.
    """
    raw = str(variables.get("app_dir") or DEFAULT_APP_DIR)
    if not raw.startswith("/"):
        raise OSError(f"app_dir must be an absolute path, got {raw[:80]!r}")
    if ".." in raw.split("/") or "\0" in raw or "\n" in raw:
        raise OSError(f"app_dir may not contain '..' or control characters, got {raw[:80]!r}")
    value = "/" + posixpath.normpath(raw).lstrip("/")
    if value.count("/") < 2 or value in SYSTEM_DIRS:
        raise OSError(
            f"app_dir {value!r} is a system folder: give the app a folder of its own "
            f"(e.g. {DEFAULT_APP_DIR})"
        )
    return value


# What a deploy creates, and so the only names it prunes (release.RELEASE_NAME, deps_digest).
RELEASE_GLOB = "[0-9]" * 8 + "T" + "[0-9]" * 6 + "Z-*"
DEPS_PATTERN = "^[0-9a-f]{16}$"
RELEASE_PATTERN = "^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{7,40}$"


def run_dir(variables: Mapping[str, Any]) -> str:
    """Where worker pidfiles live ('' means the default, <app_dir>/shared/run)."""
    return str(variables.get("worker_run_dir") or "")


def current(app: str) -> str:
    return f"{app}/current"


def python(app: str) -> str:
    """The live release's interpreter (its .venv: the release tree and its dependency layer)."""
    return f"{current(app)}/.venv/bin/python"


def invoke_argv(app: str, command: str, argv: Sequence[str] = ()) -> list[str]:
    """`invoke COMMAND ARGV...` as the live release runs it (run it from `current(app)`)."""
    return [python(app), "-m", "invoke", command, *argv]


def nodes(variables: Mapping[str, Any]) -> list[str]:
    """The worker node names of a host (`worker_nodes`: `w1` or `w1,w2`)."""
    chosen = str(variables.get("worker_nodes") or "w1")
    return [n for n in chosen.replace(",", " ").split() if n]


def node_names(host: str, variables: Mapping[str, Any]) -> list[str]:
    """The Celery node names this host's workers answer as (`w1@<inventory name>`)."""
    return [f"{n}@{host}" for n in nodes(variables)]


def queues(variables: Mapping[str, Any]) -> list[str]:
    return [q for q in str(variables.get("worker_queues") or WORKER_QUEUES).split(",") if q]


def includes(queue_names: Sequence[str]) -> list[str]:
    """Modules a worker on `queue_names` must load beyond the app: the runbook task for ops."""
    return [OPS_RUNNER] if OPS_QUEUE in queue_names else []


def local_supervisor(
    var_dir: Path | str,
    queues: Sequence[str],
    concurrency: int,
    env: Mapping[str, str] | None = None,
) -> MultiSupervisor:
    """This machine's `celery multi` nodes (`invoke workers.start|stop|restart` without an
    environment's hosts): pidfiles and logs under <var>/run, the `ops` queue's runner included
    when it is consumed; `env` over this process's environment for the nodes it starts."""
    from celery_app.ops.workers import MultiSupervisor

    return MultiSupervisor(
        Path(var_dir) / "run",
        queues=tuple(queues),
        concurrency=concurrency,
        env=dict(env or {}),
        include=tuple(includes(queues)),
    )
