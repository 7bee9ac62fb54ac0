"""Wire the app to a test's redis-server, and run the `invoke` command line against it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from celery_app import bootstrap
from celery_app.bootstrap import Container
from celery_app.settings import load_settings
from tests.support.cli import run_invoke

ROOT = Path(__file__).resolve().parents[2]


def app_env(tmp_path: Path, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment that points every Redis role at `redis_url` and SQL under `tmp_path`."""
    return {
        "REDIS_URL": redis_url,
        "MAQSAFY_VAR_DIR": str(tmp_path / "var"),
        "MAQSAFY_ENV_FILE": str(tmp_path / "no.env"),
        **extra,
    }


def build_app(env: dict[str, str]) -> Container:
    """A container built from `env` alone (not this process's environment)."""
    return bootstrap.build(load_settings(env))


def migrated_app(env: dict[str, str]) -> Container:
    """A container whose SQL database has the schema, run history included."""
    from celery_app.infra import migrate

    app = build_app(env)
    migrate.upgrade(app.engine)
    return app


def history_names(app: Container) -> list[tuple[str, str, dict[str, object]]]:
    """(name, status, arguments) of every recorded run, oldest first."""
    from runbooks.engine import history

    runs = history.list_runs(app.sessions, limit=100)
    return [(r["name"], r["status"], r["arguments"]) for r in reversed(runs)]


def invoke(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `invoke ARGS` in the project with `env` added; capture text output."""
    return run_invoke(args, {**os.environ, **env}, timeout=60)
