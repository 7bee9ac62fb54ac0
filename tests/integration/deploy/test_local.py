"""`invoke deploy` on the `local` environment: this machine, no SSH, the embedded default."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import clean_environ, run_invoke

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[3]


def invoke(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_invoke(args, clean_environ(**env), timeout=300)


def test_deploy_to_local_then_again_then_stop(tmp_path: Path) -> None:
    env = {"MAQSAFY_VAR_DIR": str(tmp_path / "var"), "MAQSAFY_ENV_FILE": str(tmp_path / "none")}
    app_dir = tmp_path / "var" / "deploy"
    try:
        assert invoke(["db.migrate"], env).returncode == 0
        # Check mode on a fresh machine: shared/.env would be written, nothing is.
        checked = invoke(["deploy", "--check"], env)
        assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
        assert "would write shared/.env from this machine's settings" in checked.stdout
        assert not (app_dir / "shared").exists()
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        done = invoke(["deploy", "--ref", sha, "--json"], env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        report = json.loads(done.stdout)
        name = report["release"]
        assert report["hosts"] == {
            "localhost": {"status": "changed", "release": name, "message": ""}
        }
        assert os.readlink(app_dir / "current") == f"releases/{name}"
        shared_env = (app_dir / "shared" / ".env").read_text()
        assert f"MAQSAFY_VAR_DIR={tmp_path / 'var'}" in shared_env
        # The release runs on this machine's embedded Redis and SQLite: none of its own.
        assert not list(app_dir.glob("releases/*/var")) and (tmp_path / "var/redis.sock").exists()
        status = json.loads(invoke(["workers.status", "--json"], env).stdout)
        assert [(s["name"], s["release"]) for s in status] == [("w1@localhost", name)]

        again = json.loads(invoke(["deploy", "--ref", sha, "--json"], env).stdout)
        assert again["release"] == name and again["hosts"]["localhost"]["status"] == "ok"

        listed = json.loads(invoke(["deploy.releases", "--json"], env).stdout)
        assert listed["localhost"]["current"] == name
        assert listed["localhost"]["workers"] == {"w1": name}
        unlocked = invoke(["deploy.unlock"], env)
        assert unlocked.returncode == 0 and unlocked.stdout.strip() == "local was not locked"
    finally:
        invoke(["workers.stop"], env)
        invoke(["stop"], env)
    assert not (tmp_path / "var" / "redis.sock").exists()
    assert not (tmp_path / "var" / "run" / "w1.pid").exists()  # the deployed worker stopped


def test_a_local_settings_file_that_would_start_a_second_redis_is_refused(tmp_path: Path) -> None:
    """A shared/.env without an absolute MAQSAFY_VAR_DIR: each release would run its own Redis."""
    env = {"MAQSAFY_VAR_DIR": str(tmp_path / "var"), "MAQSAFY_ENV_FILE": str(tmp_path / "none")}
    shared = tmp_path / "var" / "deploy" / "shared"
    shared.mkdir(parents=True)
    (shared / ".env").write_text("MAQSAFY_VAR_DIR=./var\n")
    try:
        assert invoke(["db.migrate"], env).returncode == 0
        done = invoke(["deploy"], env)
    finally:
        invoke(["stop"], env)
    assert done.returncode == 1
    assert "sets no absolute MAQSAFY_VAR_DIR: each release would start its own Redis" in (
        done.stdout
    )
    assert not (tmp_path / "var" / "deploy" / "releases").exists()
