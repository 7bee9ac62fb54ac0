"""Run this project's command line the way an operator does: `python -m invoke ...` in a child.

Tests of the CLI assert on what a person sees (stdout, one `error:` line on stderr, the exit
code), so they run the real command in a subprocess from the project's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INVOKE = (sys.executable, "-m", "invoke")


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without REDIS_*/DATABASE_* (so the embedded default applies),
    plus `extra`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    return {**kept, **extra}


def run_invoke(
    args: Sequence[str], env: Mapping[str, str], timeout: float = 120, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run `invoke ARGS` with exactly `env` from `cwd` (a checkout); capture text output."""
    return subprocess.run(
        [*INVOKE, *args], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout
    )


def start_invoke(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start `invoke ARGS` with exactly `env`, its stdout and stderr piped as text."""
    return subprocess.Popen(
        [*INVOKE, *args],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_invoke_batch(
    runs: Sequence[tuple[Sequence[str], Mapping[str, str]]], timeout: int = 60
) -> list[subprocess.CompletedProcess[str]]:
    """Run each `invoke ARGS` with exactly its `env`, one after another, in one Python start.

    Each command is a child forked from a process that imported the heavy libraries once
    (tests/support/invoke_batch.py): the same program, argv, environment, output and exit code
    as `run_invoke`, for a fraction of a Python start each. A command still running after
    `timeout` seconds is killed (returncode -14).
    """
    cases = [{"args": list(args), "env": dict(env), "timeout": timeout} for args, env in runs]
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.invoke_batch"],
        cwd=ROOT,
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=timeout * len(cases) + 60,
        check=True,
    )
    return [
        subprocess.CompletedProcess(list(args), r["code"], r["stdout"], r["stderr"])
        for (args, _), r in zip(runs, json.loads(done.stdout), strict=True)
    ]
