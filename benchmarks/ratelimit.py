"""Measure rate-limit decisions per second: the GCRA limiter against a bare INCR+EXPIRE pipeline.

    python -m benchmarks.ratelimit [--seconds 1.0] [--rounds 3]

Both sides make one round trip per decision from one client to a private redis-server this
script starts on loopback TCP (no persistence), over the same rotating set of subjects. Rounds
alternate between the sides so background load hits both alike. The last line is
``ratio limiter/incr: X.XX`` (the issue's target is 0.5 or more).
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import redis

from benchmarks.support import private_redis
from celery_app.infra.keyspace import Keyspace
from celery_app.stores.ratelimit import Quota, RateLimiter

SUBJECTS = [f"parent-{i}" for i in range(10_000)]


def rate(decide: Callable[[str], object], seconds: float) -> tuple[int, float]:
    """Run `decide` over the subjects for about `seconds`; return (decisions, elapsed)."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        first = done % len(SUBJECTS)
        for subject in SUBJECTS[first : first + 200]:
            decide(subject)
        done += 200
    return done, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round per side")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating")
    options = parser.parse_args()

    with private_redis() as port:
        client = redis.Redis(port=port)
        limiter = RateLimiter(client, Keyspace(), "bench", Quota(1_000_000, 3600))
        keyspace = Keyspace()

        def incr_expire(subject: str) -> object:
            pipe = client.pipeline(transaction=False)
            pipe.incr(keyspace.ratelimit(f"incr:{subject}"))
            pipe.expire(keyspace.ratelimit(f"incr:{subject}"), 3600)
            return pipe.execute()

        sides: dict[str, Callable[[str], object]] = {
            "limiter": limiter.hit,
            "incr": incr_expire,
        }
        for decide in sides.values():
            rate(decide, 0.2)  # warm up: load the script, fill the connection pool
        totals = {name: [0, 0.0] for name in sides}
        for _ in range(options.rounds):
            for name, decide in sides.items():
                count, elapsed = rate(decide, options.seconds)
                totals[name][0] += count
                totals[name][1] += elapsed
        version = client.info("server")["redis_version"]

    per_second = {name: count / elapsed for name, (count, elapsed) in totals.items()}
    print(
        f"redis-server {version} on loopback TCP, Python {platform.python_version()}, one client, "
        f"{options.rounds} x {options.seconds:g}s per side, alternating"
    )
    print(f"limiter (GCRA, one EVALSHA):    {per_second['limiter']:>9,.0f} decisions/s")
    print(f"bare INCR+EXPIRE pipeline:      {per_second['incr']:>9,.0f} decisions/s")
    print(f"ratio limiter/incr: {per_second['limiter'] / per_second['incr']:.2f}")


if __name__ == "__main__":
    main()
