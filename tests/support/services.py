"""Start real services for tests: redis-server instances and PostgreSQL databases.

A missing service skips the tests that need it, saying why, except where
MAQSAFY_REQUIRE_ALL=1 (CI), where it fails them instead: nothing is skipped in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from celery_app.errors import ServiceUnavailable
from celery_app.infra.embedded import find_redis_server


def require(condition: bool, why: str) -> None:
    """Skip (or, in CI, fail) when a service the test needs is missing."""
    if condition:
        return
    if os.environ.get("MAQSAFY_REQUIRE_ALL") == "1":
        pytest.fail(f"required in CI: {why}")
    pytest.skip(why)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll `predicate` until true or fail after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class RedisServer:
    """A test-owned redis-server on a spare loopback port."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    password: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        stop_process(self.process)


def redis_server_binary() -> str:
    """The binary the embedded default would run: redis-server on PATH, else the bundled one."""
    try:
        return find_redis_server()
    except ServiceUnavailable as exc:
        require(False, str(exc))
        raise


def require_system_redis(why: str) -> None:
    """Skip (in CI: fail) when tests would get the bundled valkey-server, which lacks `why`."""
    require(
        shutil.which("redis-server") is not None,
        f"needs a redis-server on PATH (apt install redis-server): the bundled valkey-server {why}",
    )


def start_redis(
    directory: Path, *extra: str, password: str | None = None, wait: bool = True
) -> RedisServer:
    """Start redis-server with no persistence (unless `extra` asks) on a spare port.

    With `wait=False` it returns at once (for a server that will not answer PING yet).
    """
    binary = redis_server_binary()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        "--logfile",
        str(directory / "redis.log"),
        *extra,
    ]
    if password:
        args += ["--requirepass", password]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(port=port, directory=directory, process=process, password=password)

    def answers() -> bool:
        if process.poll() is not None:  # it exited (a bad option): say so now, not in 10 s
            log = directory / "redis.log"
            tail = log.read_text(errors="replace").splitlines()[-3:] if log.exists() else []
            raise AssertionError(f"{binary} exited {process.returncode}: {' | '.join(tail)}")
        try:
            return bool(server.client(socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    if wait:
        wait_for(answers, 10, f"redis-server on port {port}")
    return server


def pg_admin_url() -> str:
    return os.environ.get(
        "MAQSAFY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )


def create_pg_database() -> tuple[str, Callable[[], None]]:
    """Create a fresh PostgreSQL database; return its URL and a function that drops it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"maqsafy_t_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        require(False, f"PostgreSQL at {pg_admin_url()} is not reachable ({exc.orig})")
    url = admin.url.set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop
