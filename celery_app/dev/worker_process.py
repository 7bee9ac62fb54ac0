"""Start and stop a Celery worker as a child process (the demo, tests and benchmarks use it).

Servers supervise workers with systemd or `celery multi`; this is for a worker the current
command owns for its own lifetime.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from celery_app.errors import ServiceUnavailable
from celery_app.settings import PROJECT_ROOT


@dataclass
class WorkerProcess:
    """A running `celery -A celery_app worker` and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        marker = f"{self.name} ready."
        while time.monotonic() < deadline:
            if marker in self.log_text():
                return
            if self.process.poll() is not None:
                tail = self.log_text().strip().splitlines()[-3:]
                raise ServiceUnavailable(
                    f"worker {self.name} exited with {self.process.returncode}: {' | '.join(tail)}"
                )
            time.sleep(0.1)
        raise ServiceUnavailable(
            f"worker {self.name} not ready after {timeout:.0f}s; see {self.log}"
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Warm shutdown (SIGTERM: finish running tasks), then SIGKILL after `timeout`."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (main process and pool children)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_worker(
    name: str,
    log: Path,
    queues: str = "payments,maintenance",
    concurrency: int = 2,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> WorkerProcess:
    """Launch a prefork worker in its own process group; call `wait_ready()` next."""
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "worker",
        "-n",
        name,
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-P",
        "prefork",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "info",
        "-f",
        str(log),
        *extra,
    ]
    process = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=PROJECT_ROOT,
    )
    return WorkerProcess(name=name, process=process, log=log)
