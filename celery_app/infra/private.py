"""Files at rest that only this user may read: the embedded default's var folder and its data.

The embedded default keeps the SQLite database (money, the run history) and Redis's append-only
files (sessions, queued payments) under ``MAQSAFY_VAR_DIR``. A 0700 socket protects nothing if
the files beside it are 0644, so the folder is 0700, the database 0600 (SQLite gives its WAL
and shared-memory files the database's mode), and redis-server runs under umask 077.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

UMASK = 0o077


def _owned(path: Path) -> bool:
    try:
        return path.stat().st_uid == os.geteuid()
    except OSError:
        return False


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) if missing; make it 0700 when it is ours."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if _owned(path):
        path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 if missing (so it is never readable by others, even for
    a moment); make an existing one of ours 0600."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    if _owned(path):
        path.chmod(0o600)
    return path


def sqlite_path(url: str) -> Path | None:
    """The file a `sqlite:///PATH` URL names (None for memory databases and other URLs)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or ":memory:" in url:
        return None
    return Path(url[len(prefix) :].split("?", 1)[0])
