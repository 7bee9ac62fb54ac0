"""Time every console page on 1,000,000 failed tasks and 100,000 runs (issue 15: p95 <= 100 ms).

    python -m benchmarks.console [--failed 1000000] [--runs 100000] [--requests 50]
                                 [--database postgres|sqlite]

Creates a fresh database (a throw-away PostgreSQL database on the server MAQSAFY_TEST_PG_URL
names, or a temporary SQLite file), migrates it, seeds it in set-based SQL
(benchmarks/console_seed.py), starts a private redis-server and the console as an operator
does (`invoke console --port P`, its own process), signs in as an operator and GETs each page
`--requests` times after one warm-up, printing p50, p95 and max per page; a page over 100 ms at
p95 is marked. The peer: the same lists through the command line as an operator gets them
without the console (`invoke failed.list --json`, `invoke history --json --last 50`, one
process per request, timed the same way). The last line is the ratio of the failed-task list's
p95 through the command line to the console's.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from benchmarks import console_seed
from benchmarks.support import free_port, private_redis

BUDGET_MS = 100.0
OPERATOR = ("ana", "ana-bench-password-long-enough", "operator")


def p(times: list[float], q: float) -> float:
    """The nearest-rank `q` percentile (0 < q <= 1) of `times`."""
    ordered = sorted(times)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timed(call: Callable[[], object], requests: int) -> list[float]:
    call()  # warm-up: connections, caches, templates
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def line(label: str, times: list[float], page: bool = True) -> str:
    p95 = p(times, 0.95)
    mark = "  OVER 100 ms" if page and p95 > BUDGET_MS else ""
    return (
        f"  {label:<38} p50 {p(times, 0.5):8.1f} ms   p95 {p95:8.1f} ms"
        f"   max {max(times):8.1f} ms{mark}"
    )


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'console.db'}"
        return
    from tests.support.services import create_pg_database

    url, drop = create_pg_database()
    try:
        yield url
    finally:
        drop()


def prepare(env: dict[str, str], failed: int, runs: int) -> None:
    """Migrate, seed, and add the operator account the console signs in with (after the
    admin account that must come first)."""
    from celery_app.infra import migrate
    from runbooks.access import operators
    from tests.support.queue_history import queue_history
    from tests.support.redis_app import build_app

    app = build_app(env)
    try:
        migrate.upgrade(app.engine)
        seconds = console_seed.seed(app.engine, failed, runs)
        print(f"seeded {failed:,} failed tasks and {runs:,} runs in {seconds:.1f} s", flush=True)
        operators.add(app.sessions, "root", "admin", OPERATOR[1] + "-root", "benchmark")
        name, password, role = OPERATOR
        operators.add(app.sessions, name, role, password, "benchmark")
        queue_history(app, 24)  # a full day of samples: the Queues chart's most
    finally:
        app.engine.dispose()


@contextmanager
def console(env: dict[str, str]) -> Iterator[str]:
    """`invoke console` on a free loopback port; yield its URL once /healthz answers."""
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "invoke", "console", "--port", str(port)],
        cwd=console_seed.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: the console did not start: {server.stderr.read()}")  # type: ignore[union-attr]
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def pages(failed: int, runs: int) -> list[tuple[str, str]]:
    """(label, path) of every page, the deep ones near the middle of their table."""
    return [
        ("overview /", "/"),
        ("failed /failed", "/failed"),
        ("failed ?queue=payments", "/failed?queue=payments"),
        (f"failed ?task={console_seed.RARE_TASK}", f"/failed?task={console_seed.RARE_TASK}"),
        ("failed ?task=notify.deliver (none)", "/failed?task=notify.deliver"),
        ("failed ?before=middle", f"/failed?before={failed // 2}"),
        ("failed record /failed/ID", f"/failed/{failed // 2}"),
        ("runs /runs", "/runs"),
        ("runs ?before=middle", f"/runs?before={runs // 2}"),
        ("run /runs/ID (3 hosts, 15 steps)", f"/runs/{runs // 2 - runs // 2 % 10 + 10}"),
        ("approvals /approvals", "/approvals"),
        ("deploys /deploys", "/deploys"),
        ("queues /queues (6 h chart)", "/queues"),
        ("queues ?hours=24 (a day of samples)", "/queues?hours=24"),
        ("workers /workers", "/workers"),
        ("redis /redis", "/redis"),
        ("start a book /runs/new", "/runs/new"),
    ]


def time_console(url: str, failed: int, runs: int, requests: int) -> dict[str, list[float]]:
    from tests.support.console import Browser

    browser = Browser(url)
    name, password, _ = OPERATOR
    assert browser.sign_in(name, password).status_code == 303, "sign-in refused"
    results = {}
    try:
        for label, path in pages(failed, runs):

            def get(path: str = path) -> None:
                done = browser.get(path)
                assert done.status_code == 200, (path, done.status_code, done.text[:300])

            results[label] = timed(get, requests)
            print(line(label, results[label]), flush=True)
    finally:
        browser.close()
    return results


def time_cli(env: dict[str, str], args: list[str], requests: int) -> list[float]:
    def run() -> None:
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=console_seed.ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and done.stdout.startswith(("{", "[")), done.stderr

    return timed(run, requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failed", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args(argv)
    if args.failed < 1000 or args.runs < 100 or args.requests < 1:
        parser.error("--failed 1000 or more, --runs 100 or more, --requests 1 or more")
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    with ExitStack() as stack:
        url = stack.enter_context(database(args.database))
        port = stack.enter_context(private_redis())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REDIS_", "DATABASE_", "MAQSAFY_"))
        }
        env.update(
            REDIS_URL=f"redis://127.0.0.1:{port}/0",
            DATABASE_URL=url,
            MAQSAFY_VAR_DIR=str(tmp / "var"),
            MAQSAFY_ENV_FILE=str(tmp / "no.env"),
            XDG_CONFIG_HOME=str(tmp / "config"),
        )
        prepare(env, args.failed, args.runs)
        base = stack.enter_context(console(env))
        print(f"console ({args.database}), {args.requests} requests per page:", flush=True)
        pages_ms = time_console(base, args.failed, args.runs, args.requests)
        print(f"command line, {args.requests} runs each (one process per request):", flush=True)
        cli_failed = time_cli(env, ["failed.list", "--json"], args.requests)
        print(line("invoke failed.list --json", cli_failed, page=False), flush=True)
        cli_history = time_cli(env, ["history", "--json", "--last", "50"], args.requests)
        print(line("invoke history --json --last 50", cli_history, page=False), flush=True)
        over = [label for label, times in pages_ms.items() if p(times, 0.95) > BUDGET_MS]
        print(f"pages over 100 ms at p95: {', '.join(over) or 'none'}", flush=True)
        print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
        ratio = p(cli_failed, 0.95) / p(pages_ms["failed /failed"], 0.95)
        print(f"ratio cli/console (failed list p95): {ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
