"""Clear 1,000,000 cache keys among 1,000,000 others three ways, watching Redis for stalls.

    python -m benchmarks.cache_clear [--keys N] [--others N] [--batch N]

On a private redis-server this script starts (and stops): seeds N cache keys among N others
(sessions, rate limits, locks, and real Celery messages, some unacked), then clears the cache
keys with this project (SCAN + UNLINK in batches, one script call each), with
``redis-cli --scan --pattern ... | xargs redis-cli unlink``, and with FLUSHDB on a database
holding only cache keys (plain FLUSHDB, and this project's proven FLUSHDB ASYNC). A separate
process PINGs in a loop during each clear and records the worst round trip; SLOWLOG gives the
longest command Redis ran. After each clear ``DEBUG DIGEST`` must equal the digest taken before
the cache keys were seeded: not one non-cache key touched. The last line is
``ratio redis-cli/ours: X.X``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

import redis

from benchmarks.support import private_redis
from celery_app.infra.keyspace import Keyspace
from celery_app.stores import cache

KS = Keyspace("maqsafy")
PATTERN = "maqsafy:cache:*"
HELD: list[Any] = []


@contextmanager
def debug_redis() -> Iterator[int]:
    """A private redis-server that allows DEBUG (POPULATE, DIGEST) and logs slow commands."""
    extra = ("--enable-debug-command", "local", "--slowlog-log-slower-than", "1000")
    with private_redis(*extra) as port:
        yield port


def pinger(port: int, control: Pipe) -> None:
    """PING until told to stop; send back the worst round trip (ms) and the count."""
    client = redis.Redis(port=port)
    worst, count = 0.0, 0
    control.send("ready")
    while not control.poll():
        started = time.perf_counter()
        client.ping()
        worst = max(worst, time.perf_counter() - started)
        count += 1
    control.send((worst * 1000, count))


@dataclass
class Result:
    name: str
    keys: int
    seconds: float
    worst_ping_ms: float
    pings: int
    slowest_command_ms: float
    untouched: bool

    @property
    def rate(self) -> float:
        return self.keys / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.name:<34} {self.keys:>9} keys {self.seconds:7.2f} s {self.rate:>10,.0f} keys/s"
            f"  worst PING {self.worst_ping_ms:6.2f} ms ({self.pings} pings)"
            f"  slowest cmd {self.slowest_command_ms:5.2f} ms"
            f"  non-cache untouched: {'yes' if self.untouched else 'NO'}"
        )


def seed_others(client: redis.Redis, port: int, others: int) -> None:
    """Sessions, rate limits, locks, and real Celery messages with two unacked."""
    from kombu import Connection

    from tests.support.broker import producer, send

    app = producer(f"redis://127.0.0.1:{port}/0")
    for n in range(200):
        send(app, "purchase.post", [n], "payments")
        send(app, "runbook.run", [n], "ops", priority=3)
    conn = Connection(f"redis://127.0.0.1:{port}/0")
    simple = conn.SimpleQueue("payments")
    for _ in range(2):
        simple.get(timeout=5)  # taken, never acknowledged: two entries in `unacked`
    HELD.append(conn)  # closing would give the messages back; the server goes first
    left = others - int(client.dbsize())
    third = left // 3
    client.execute_command("DEBUG", "POPULATE", third, "maqsafy:session:s", 64)
    client.execute_command("DEBUG", "POPULATE", third, "maqsafy:rl:login", 8)
    client.execute_command("DEBUG", "POPULATE", left - 2 * third, "maqsafy:lock:account", 24)


def seed_cache(client: redis.Redis, keys: int) -> None:
    client.execute_command("DEBUG", "POPULATE", keys, "maqsafy:cache:menus:0:item", 100)


def measure(name: str, port: int, keys: int, digest: bytes, run: Callable[[], None]) -> Result:
    client = redis.Redis(port=port)
    client.slowlog_reset()
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=pinger, args=(port, child))
    proc.start()
    parent.recv()
    time.sleep(0.2)
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    time.sleep(0.2)
    parent.send("stop")
    worst, pings = parent.recv()
    proc.join()
    slow = client.slowlog_get(128)
    slowest = max((float(e["duration"]) for e in slow), default=0.0) / 1000
    time.sleep(0.5)  # let lazy freeing finish before the digest
    untouched = client.execute_command("DEBUG", "DIGEST") == digest
    return Result(name, keys, seconds, worst, pings, slowest, untouched)


def redis_cli(port: int) -> None:
    subprocess.run(
        f"redis-cli -p {port} --scan --pattern '{PATTERN}' | xargs redis-cli -p {port} unlink",
        shell=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="cache keys")
    parser.add_argument("--others", type=int, help="non-cache keys (default: as many as --keys)")
    parser.add_argument("--batch", type=int, default=cache.BATCH, help="SCAN COUNT per batch")
    args = parser.parse_args(argv)
    others = args.others if args.others is not None else args.keys
    if shutil.which("redis-cli") is None:
        raise SystemExit("redis-cli is not on PATH")

    results: list[Result] = []
    with debug_redis() as port:
        client = redis.Redis(port=port)
        print(f"seeding {others:,} non-cache keys and {args.keys:,} cache keys", flush=True)
        seed_others(client, port, others)
        digest = client.execute_command("DEBUG", "DIGEST")

        def ours() -> None:
            report = cache.clear(client, KS, batch=args.batch)
            assert report.deleted == args.keys, report

        methods: list[tuple[str, Callable[[], None]]] = [
            ("ours (SCAN+UNLINK batches)", ours),
            ("redis-cli --scan | xargs unlink", lambda: redis_cli(port)),
        ]
        for name, run in methods:
            seed_cache(client, args.keys)
            results.append(measure(name, port, args.keys, digest, run))
            print(results[-1].line(), flush=True)

        own = redis.Redis(port=port, db=1)
        for name, run in [
            ("FLUSHDB (sync) on a cache-only db", lambda: _flush(own)),
            ("ours on a dedicated db (FLUSHDB ASYNC)", lambda: _dedicated(own, args.keys)),
        ]:
            own.execute_command("DEBUG", "POPULATE", args.keys, "maqsafy:cache:menus:0:item", 100)
            results.append(measure(name, port, args.keys, digest, run))
            print(results[-1].line(), flush=True)
        for conn in HELD:
            conn.release()  # before the server stops: kombu gives unacked messages back

    ok = all(r.untouched for r in results)
    print(f"non-cache keys touched: {'none' if ok else 'SOME (failure)'}")
    print(f"ratio redis-cli/ours: {results[1].seconds / results[0].seconds:.1f}")
    return 0 if ok else 1


def _flush(client: redis.Redis) -> None:
    client.flushdb()


def _dedicated(client: redis.Redis, keys: int) -> None:
    report = cache.clear(client, KS, dedicated=True)
    assert report.method == "flushdb-async" and report.deleted == keys, report


if __name__ == "__main__":
    sys.exit(main())
