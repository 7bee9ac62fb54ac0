"""What the benchmarks share: a throwaway redis-server of their own."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from celery_app.infra.embedded import find_redis_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_redis(*extra: str) -> Iterator[int]:
    """Run redis-server on a spare loopback port without persistence; yield the port."""
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        server = subprocess.Popen(
            [find_redis_server(), *args, "--dir", directory, *extra], stdout=subprocess.DEVNULL
        )
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            client.close()
            yield port
        finally:
            server.terminate()
            server.wait(10)
