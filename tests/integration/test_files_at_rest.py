"""The embedded default's files are this user's alone: another local user reads none of them.

Security finding 4: var/ was 0755, maqsafy.db and Redis's append-only files 0644, so a session
id could be read from the AOF and the run history from SQLite as `nobody`. Here the embedded
default is started for real (redis-server on its socket, SQLite, a session written through the
app), then `nobody` tries to read each file.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from celery_app.infra import migrate
from celery_app.infra.embedded import ensure_embedded_redis, stop_embedded_redis
from celery_app.stores.sessions import SessionStore
from tests.support.redis_app import build_app
from tests.support.services import require

pytestmark = pytest.mark.embedded


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_var_and_its_files_are_private(tmp_path: Path) -> None:
    require(
        os.geteuid() == 0 and shutil.which("setpriv") is not None,
        "reading as another user needs root and setpriv (util-linux)",
    )
    tmp_path.chmod(0o755)  # so `nobody` can reach var/ and be refused there, not before
    var = tmp_path / "var"
    var.mkdir(mode=0o755)  # an older install's folder, too open: tightened at start
    app = build_app({"MAQSAFY_VAR_DIR": str(var), "MAQSAFY_ENV_FILE": str(tmp_path / "no.env")})
    try:
        migrate.upgrade(app.engine)
        ensure_embedded_redis(var)
        store = SessionStore(app.redis("sessions"), app.keyspace)
        store.create("42", {"role": "parent"})
        app.redis("sessions").execute_command("BGREWRITEAOF")
        files = [p for p in var.rglob("*") if p.is_file()]
        assert any(p.name == "maqsafy.db" for p in files)
        assert any("appendonly" in str(p) or p.suffix == ".aof" for p in files), files
        assert stat.S_IMODE(var.stat().st_mode) == 0o700
        for path in files:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        for path in [var, *files]:
            read = as_nobody("cat" if path.is_file() else "ls", str(path))
            assert read.returncode != 0 and "Permission denied" in read.stderr, path
    finally:
        stop_embedded_redis(var)
        app.engine.dispose()
