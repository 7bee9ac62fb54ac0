"""Celery worker facts and supervision: status, ping, and graceful start/stop/restart.

Facts come from the workers themselves over the broker (Celery's remote control). Supervision
on this machine uses `celery multi` with pidfiles under the var directory (no root needed); on
servers the same operations map to systemd units (see :func:`systemd_commands`), chosen per
host in the inventory.

A graceful restart is a warm shutdown (SIGTERM: finish running tasks, hand prefetched messages
back to the queue), bounded by a timeout after which the tasks still running are named, then a
start, then verification that every expected node answers ping and consumes its queues.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as BrokerError

from celery_app.errors import MaqsafyError, ServiceUnavailable
from celery_app.infra.keyspace import QUEUES

DEFAULT_QUEUES = QUEUES


class WorkerError(MaqsafyError):
    """A worker could not be started, stopped or verified."""


@dataclass(frozen=True)
class NodeStatus:
    """One worker node as it reports itself."""

    name: str
    queues: list[str]
    active: int
    reserved: int
    release: str
    uptime: int | None
    pid: int | None
    concurrency: int | None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def ping(app: Celery, timeout: float = 1.0, nodes: Sequence[str] | None = None) -> list[str]:
    """Return the nodes that answered ping within `timeout` seconds.

    With `nodes`, only those are asked and the call returns as soon as all have answered;
    without, it waits the whole timeout for whoever is out there.
    """
    try:
        replies = app.control.ping(destination=list(nodes) if nodes else None, timeout=timeout)
        replies = replies or []
    except (OSError, BrokerError) as exc:
        raise ServiceUnavailable(f"broker did not answer: {exc} (is Redis up?)") from exc
    return sorted(name for reply in replies for name in reply)


def status(app: Celery, timeout: float = 1.0) -> list[NodeStatus]:
    """Ask every worker for its queues, active and reserved tasks, release and uptime.

    One ping finds the nodes; each question then goes only to them and returns as soon as
    all have answered, instead of waiting out the timeout five times.
    """
    names = ping(app, timeout)
    if not names:
        return []
    inspect = app.control.inspect(destination=names, timeout=timeout, limit=len(names))
    try:
        queues = inspect.active_queues() or {}
        active = inspect.active() or {}
        reserved = inspect.reserved() or {}
        stats = inspect.stats() or {}
        releases = inspect._request("release") or {}
    except (OSError, BrokerError) as exc:
        raise ServiceUnavailable(f"broker did not answer: {exc} (is Redis up?)") from exc
    nodes = sorted(set(queues) | set(stats) | set(active))
    out = []
    for name in nodes:
        stat = stats.get(name, {})
        pool = stat.get("pool", {}) if isinstance(stat, dict) else {}
        out.append(
            NodeStatus(
                name=name,
                queues=sorted(q["name"] for q in queues.get(name, [])),
                active=len(active.get(name, [])),
                reserved=len(reserved.get(name, [])),
                release=str((releases.get(name) or {}).get("release", "unknown")),
                uptime=stat.get("uptime"),
                pid=stat.get("pid"),
                concurrency=pool.get("max-concurrency"),
            )
        )
    return out


def running_tasks(app: Celery, timeout: float = 1.0) -> dict[str, list[str]]:
    """Map node -> 'name[id]' of each task it is executing now."""
    names = ping(app, timeout)
    if not names:
        return {}
    try:
        active = app.control.inspect(destination=names, timeout=timeout, limit=len(names))
        active = active.active() or {}
    except (OSError, BrokerError) as exc:
        raise ServiceUnavailable(f"broker did not answer: {exc} (is Redis up?)") from exc
    return {
        node: [f"{t.get('name')}[{t.get('id')}]" for t in tasks]
        for node, tasks in active.items()
        if tasks
    }


@dataclass
class MultiSupervisor:
    """`celery multi` on this machine: pidfiles and logs under `run_dir`."""

    run_dir: Path
    queues: Sequence[str] = DEFAULT_QUEUES
    concurrency: int = 2
    env: dict[str, str] = field(default_factory=dict)
    include: Sequence[str] = ()  # extra task modules (-I), e.g. what the `ops` queue runs

    def pidfile(self, node: str) -> Path:
        return self.run_dir / f"{node}.pid"

    def pid(self, node: str) -> int | None:
        """The node's pid if its pidfile names a live process."""
        try:
            pid = int(self.pidfile(node).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def start(self, nodes: Sequence[str], release: str | None = None) -> list[str]:
        """Start the nodes not already running (detached); return the ones it started."""
        missing = [n for n in nodes if self.pid(n) is None]
        if not missing:
            return []
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        if release:
            env["MAQSAFY_RELEASE"] = release
        includes = [arg for module in self.include for arg in ("-I", module)]
        args = [
            sys.executable, "-m", "celery", "multi", "start", *missing,
            "-A", "celery_app", "-Q", ",".join(self.queues), "-c", str(self.concurrency),
            f"--pidfile={self.run_dir}/%n.pid", f"--logfile={self.run_dir}/%n%I.log",
            "-l", "info", "--without-gossip", "--without-mingle", *includes,
        ]  # fmt: skip
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise WorkerError(f"celery multi start failed: {tail[0]}")
        return missing

    def running(self, nodes: Sequence[str]) -> list[str]:
        """The nodes whose pidfile names a live process."""
        return [n for n in nodes if self.pid(n) is not None]

    def stop(
        self,
        nodes: Sequence[str],
        timeout: float,
        on_wait: Callable[[list[str]], None] | None = None,
    ) -> list[str]:
        """Warm-stop the nodes; return those still running after `timeout` seconds."""
        pids = {n: p for n in nodes if (p := self.pid(n)) is not None}
        for pid in pids.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        alive = list(pids)
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [n for n in alive if _alive(pids[n])]
            if on_wait is not None and alive:
                on_wait(alive)
        return alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@dataclass(frozen=True)
class RestartReport:
    """What a graceful restart did."""

    nodes: list[str]
    stopped_in: float
    redelivered: int
    verified: list[str]
    still_running: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def summary(self) -> str:
        """One line for the history record."""
        return f"restarted {', '.join(self.nodes)}; {self.redelivered} redelivered"


def restart(
    app: Celery,
    supervisor: MultiSupervisor,
    nodes: Sequence[str],
    timeout: float = 60.0,
    verify_timeout: float = 60.0,
    release: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> RestartReport:
    """Warm-stop, start and verify `nodes`; raise WorkerError naming what went wrong."""
    say = progress or (lambda _msg: None)
    hostname = _hostname()
    full = [n if "@" in n else f"{n}@{hostname}" for n in nodes]
    before = {s.name: s for s in status(app)}
    redelivered = sum(before[n].reserved for n in full if n in before)
    # A worker in warm shutdown stops answering remote control: ask what runs beforehand.
    in_flight = running_tasks(app)
    was_running = supervisor.running(nodes)
    if was_running:
        say(
            f"warm shutdown of {', '.join(was_running)} "
            f"(waiting up to {timeout:.0f}s for running tasks)"
        )
    else:
        say(f"{', '.join(nodes)} not running; starting")
    started = time.monotonic()
    left = supervisor.stop(was_running, timeout)
    stopped_in = time.monotonic() - started
    if left:
        busy = [n for n in full if n.split("@")[0] in left]
        names = "; ".join(
            f"{n}: {', '.join(in_flight.get(n, []) or ['(none reported)'])}" for n in busy
        )
        raise WorkerError(
            f"{', '.join(left)} still running after {timeout:.0f}s; tasks in flight: {names}. "
            "Wait and run the restart again, or raise --timeout"
        )
    if was_running:
        say(f"stopped in {stopped_in:.1f}s; starting")
    supervisor.start(nodes, release=release)
    verified = verify(app, full, supervisor.queues, verify_timeout)
    say(f"verified {len(verified)} node(s) answering ping and consuming their queues")
    return RestartReport(list(nodes), round(stopped_in, 2), redelivered, verified)


def verify(app: Celery, nodes: Sequence[str], queues: Sequence[str], timeout: float) -> list[str]:
    """Wait until every node answers ping and consumes every queue; raise WorkerError if not."""
    deadline = time.monotonic() + timeout
    missing: list[str] = list(nodes)
    while time.monotonic() < deadline:
        if len(ping(app, timeout=1.0, nodes=nodes)) < len(nodes):
            time.sleep(0.2)
            continue
        seen = {s.name: s for s in status(app, timeout=1.0)}
        missing = [n for n in nodes if n not in seen or not set(queues) <= set(seen[n].queues)]
        if not missing:
            return sorted(nodes)
        time.sleep(0.5)
    raise WorkerError(
        f"{', '.join(missing)} did not answer ping with queues {', '.join(queues)} "
        f"within {timeout:.0f}s; check the worker log"
    )


def _hostname() -> str:
    import socket

    return socket.gethostname()


def systemd_commands(action: str, unit: str = "maqsafy-worker") -> list[str]:
    """The shell commands a systemd host runs for `action` (stop is warm: SIGTERM)."""
    if action not in ("start", "stop", "restart", "status"):
        raise WorkerError(f"unknown worker action {action!r}; expected start, stop or restart")
    return [f"sudo -n systemctl {action} {unit}.service"]
