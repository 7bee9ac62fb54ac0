"""Run many `invoke ...` command lines in one Python start: `python -m tests.support.invoke_batch`.

Reads a JSON list of {"args": [...], "env": {...}, "timeout": seconds} on stdin and writes a JSON
list of {"code", "stdout", "stderr"} on stdout. Each command runs in a child forked after the
heavy libraries were imported once, as `invoke ARGS` with exactly `env`, from the project's
folder: Invoke's own program (`invoke.main.program`), loading tasks.py afresh, its exit code
and its output as an operator sees them. A command still running after its timeout is killed
(SIGALRM: exit code -14).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


PRELOAD = (
    "invoke.main", "alembic.command", "redis", "sqlalchemy.orm", "yaml",
    "celery_app.bootstrap", "runbooks.deploy.rollout", "runbooks.engine.history",
    "runbooks.service",
)  # fmt: skip


def preload() -> None:
    """What most commands import anyway: paid for once, before the first fork."""
    for name in PRELOAD:
        importlib.import_module(name)


def run_one(args: list[str], env: dict[str, str], timeout: int) -> dict[str, Any]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: becomes `invoke ARGS`
            try:
                signal.alarm(timeout)
                os.chdir(ROOT)
                os.environ.clear()
                os.environ.update(env)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.argv = ["invoke", *args]
                from invoke.main import program

                program.run()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # what the real `invoke` would print: a traceback, exit 1
                import traceback

                traceback.print_exc()
                code = 1
            else:
                code = 0
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return {
            "code": os.waitstatus_to_exitcode(status),
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def main() -> None:
    cases = json.load(sys.stdin)
    sys.path.insert(0, str(ROOT))
    preload()
    results = [run_one(c["args"], c["env"], int(c.get("timeout", 60))) for c in cases]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
