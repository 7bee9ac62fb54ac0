"""The README's main job on the embedded default, and the CLI's one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import clean_environ, run_invoke, start_invoke

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[2]


def invoke(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return run_invoke(args, clean_environ(**env), timeout=timeout)


def test_demo_runs_a_day_on_the_embedded_default_and_stops_what_it_started(
    tmp_path: Path,
) -> None:
    env = {"MAQSAFY_VAR_DIR": str(tmp_path / "var"), "MAQSAFY_ENV_FILE": str(tmp_path / "none")}
    done = invoke(["demo", "--purchases", "300", "--wallets", "30", "--json"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["ledger_balanced"] is True and summary["discrepancies"] == 0
    assert summary["pending"] == 0
    assert summary["posted"] + summary["rejected"] == 300 + 30
    assert summary["submitted"] == 330 + summary["duplicates_absorbed"]
    assert summary["settled_merchants"] >= 1 and summary["settled_total_halalas"] > 0
    assert (tmp_path / "var" / "maqsafy.db").exists()
    assert not (tmp_path / "var" / "redis.sock").exists(), "the embedded Redis was left running"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"REDIS_PORT": "abc", "REDIS_HOST": "redis"},
            "error: REDIS_PORT: expected a whole number from 1 to 65535, got 'abc'",
        ),
        (
            {"CACHE_DRIVER": "memcached"},
            "error: CACHE_DRIVER: unknown driver 'memcached'; expected one of: redis, array",
        ),
        ({"DATABASE_URL": "postgresql://u@127.0.0.1:1/x"}, "error: database "),
    ],
)
def test_bad_configuration_stops_with_one_line(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    done = invoke(["db.migrate"], {"MAQSAFY_VAR_DIR": str(tmp_path), **env}, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
    assert "Traceback" not in done.stderr


def test_worker_with_bad_configuration_exits_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker"],
        cwd=ROOT,
        env=clean_environ(REDIS_URL="http://nope"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: REDIS_URL: expected a URL starting with redis://")
    assert "Traceback" not in done.stderr


def test_demo_stopped_by_sigterm_stops_its_worker_and_redis(tmp_path: Path) -> None:
    import signal
    import time

    var = tmp_path / "var"
    env = {"MAQSAFY_VAR_DIR": str(var), "MAQSAFY_ENV_FILE": str(tmp_path / "none")}
    demo = start_invoke(["demo", "--purchases", "20000", "--wallets", "50"], clean_environ(**env))
    log = var / "demo-worker.log"
    deadline = time.monotonic() + 120
    while not (log.exists() and "ready." in log.read_text(errors="replace")):
        assert demo.poll() is None, demo.communicate()
        assert time.monotonic() < deadline, "the demo's worker never became ready"
        time.sleep(0.2)
    demo.send_signal(signal.SIGTERM)
    _, err = demo.communicate(timeout=120)
    assert demo.returncode == 2, err
    assert err.strip().splitlines()[-1].startswith("error: demo interrupted by SIGTERM"), err
    assert "Traceback" not in err
    assert not (var / "redis.sock").exists(), "the embedded Redis was left running"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(log) not in ps, "the demo's worker was left running"
