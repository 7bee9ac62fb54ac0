"""Screenshots of every console page on sample data, for the docs.

    .venv/bin/python -m tests.support.console_screenshots docs/screenshots

Starts its own Redis (redis-server on PATH, else the bundled one) and a SQLite database in a
temporary directory, records sample data through the platform's own functions (operator
accounts, failed tasks, runs of real steps on this machine), serves the console on a loopback
port and saves one 1280x800 PNG per page from headless Chromium (tests/support/browser.py).
Nothing outside the temporary directory and DIR is touched.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from celery_app.bootstrap import Container
from celery_app.celery import make_app
from celery_app.ops.failed_tasks import record_failure
from runbooks.access import operators
from runbooks.access.context import signed_in_as
from runbooks.console import app as web
from runbooks.console import wiring
from runbooks.service import run_steps
from tests.support.browser import Page, chromium, installed
from tests.support.console import Served, hold
from tests.support.queue_history import queue_history
from tests.support.redis_app import app_env, migrated_app
from tests.support.services import start_redis

NAME, PASSWORD = "ana", "ana-sample-password-only"
TRACEBACK = """Traceback (most recent call last):
  File "celery_app/tasks/purchase.py", line 88, in post
    ledger.post(entry)
  File "celery_app/money/ledger.py", line 141, in post
    raise {error}
{error}"""


SAMPLE_STEPS = [
    {"name": "disk space", "shell": "df -h / | tail -1"},
    {"name": "release", "shell": "echo release 2026.12.1"},
    {"name": "queues drained", "shell": "echo payments=0 maintenance=0"},
]


def sample(app: Container, home: Path) -> dict[str, int]:
    """Accounts, failed tasks and runs; the ids the pages are opened at."""
    operators.add(app.sessions, "root", "admin", "root-sample-password-only", "sample")
    operators.add(app.sessions, NAME, "operator", PASSWORD, "sample")
    failures: list[tuple[str, str, Exception]] = [
        ("purchase.post", "payments", TimeoutError("ledger lock held for 30 s")),
        ("refund.post", "payments", ConnectionResetError("server closed the connection")),
        ("maintenance.prune", "maintenance", ConnectionError("Redis at 10.0.0.7:6379 refused")),
        ("purchase.post", "payments", TimeoutError("ledger lock held for 30 s")),
    ]
    ids = {}
    for n, (task, queue, error) in enumerate(failures):
        ids["first" if n == 0 else "failed"] = record_failure(
            app,
            task_id=f"5f0c1e2a-{n:04d}-4c1b-9a57-0d3c2b7e{n:04d}",
            task_name=task,
            queue=queue,
            args=[1000 + n],
            kwargs={"amount_minor": 1250 * (n + 1), "currency": "USD", "api_token": "t0ps3cret"},
            exception=error,
            traceback=TRACEBACK.format(error=f"{type(error).__name__}: {error}"),
        )
    steps = SAMPLE_STEPS
    environ = {"HOME": str(home)}
    with signed_in_as("root", "run", {}):
        run_steps(
            app,
            "canary-check",
            [{"name": "probe", "shell": "echo probing; exit 3"}],
            environment="local",
            environ=environ,
        )
        result, _ = run_steps(app, "pre-deploy", steps, environment="local", environ=environ)
    assert result.run_id is not None, "the run was not recorded"
    ids["run"] = result.run_id
    return ids


def shoot(directory: Path) -> list[Path]:
    saved: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="maqsafy-screens-") as tmp:
        root = Path(tmp)
        redis = start_redis(root / "redis")
        app = migrated_app(app_env(root, redis.url))
        celery = make_app(app.settings)
        served = Served(web.build(wiring.wire(app, celery, workers_timeout=0.2)))
        try:
            ids = sample(app, root)
            queue_history(app)
            with chromium() as driver:
                page = Page(driver, served.url)

                def save(name: str, path: str, ready: str) -> None:
                    page.open(path)
                    page.wait(ready)
                    target = directory / f"{name}.png"
                    if not driver.save_screenshot(str(target)):
                        raise RuntimeError(f"Chromium saved no screenshot of {path}")
                    saved.append(target)

                save("signin", "/signin", "form.signin")
                page.sign_in(NAME, PASSWORD)
                page.wait("form.signout", "the signed-in header")
                save("overview", "/", "#level")
                save("failed", "/failed", "#failed")
                # one action through its button, as an operator would: the page that follows
                # names its history record, and Runs lists it beside the books' runs
                first = ids["first"]
                page.click(f"#failed-{first} form[action='/failed/{first}/retry'] button")
                page.wait("#done")
                driver.save_screenshot(str(directory / "failed-retried.png"))
                saved.append(directory / "failed-retried.png")
                save("failed-record", f"/failed/{ids['failed']}", "#traceback")
                save("runs", "/runs", "#runs")
                save("run", f"/runs/{ids['run']}", "#steps")
                save("run-new", "/runs/new", "form.start")
                # a run held at its last step: its page shows the lines streamed so far
                held = hold(app, "pre-deploy", SAMPLE_STEPS, root)
                try:
                    save("run-live", f"/runs/{held.run_id}", "#live li.host, #live li.step")
                finally:
                    held.release()
                for name in ("approvals", "deploys", "queues", "workers", "redis"):
                    save(name, f"/{name}", "main")
        finally:
            served.stop()
            celery.close()
            app.engine.dispose()
            redis.stop()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.console_screenshots",
        description="Save a PNG of each console page on sample data.",
    )
    parser.add_argument("dir", type=Path, help="where the PNGs go (docs/screenshots)")
    args = parser.parse_args(argv)
    directory: Path = args.dir
    if directory.exists() and not directory.is_dir():
        print(f"error: {directory} is a file: give a directory for the PNGs", file=sys.stderr)
        return 2
    missing = installed()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    directory.mkdir(parents=True, exist_ok=True)
    for path in shoot(directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
