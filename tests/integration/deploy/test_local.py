"""`invoke deploy` on the `local` environment: this machine, no SSH, the embedded default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def invoke(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_deploy_to_local_then_again_then_stop(tmp_path: Path) -> None:
    env = {"MAQSAFY_VAR_DIR": str(tmp_path / "var"), "MAQSAFY_ENV_FILE": str(tmp_path / "none")}
    try:
        assert invoke(["db.migrate"], env).returncode == 0
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
        app_dir = tmp_path / "var" / "deploy"
        assert os.readlink(app_dir / "current") == f"releases/{name}"
        shared_env = (app_dir / "shared" / ".env").read_text()
        assert f"MAQSAFY_VAR_DIR={tmp_path / 'var'}" in shared_env
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
