"""`shell` (a script for /bin/sh) and `command` (an argv list, each argument quoted).

Neither can know what a script changes, so both check what they can: `creates` (skip when the
path exists), `removes` (skip when it does not), and report `changed` when they ran, or `ok`
when marked `read_only: true` (a pure read such as `redis-cli ping`, which then also runs in check
mode). `expect` fails the step unless the output contains the given text.

    - shell: "systemctl restart celery"
    - command: [redis-cli, -h, "{{ redis_host }}", ping]
      read_only: true
      expect: PONG
      env: {REDISCLI_AUTH: "{{ redis_password }}"}
"""

from __future__ import annotations

import shlex
from typing import Any

from runbooks.actions.base import Action, Outcome, StepContext, first_line, require_mapping
from runbooks.engine.source import Fields
from runbooks.errors import BookError

_COMMON = ("chdir", "env", "creates", "removes", "expect", "read_only")


class Shell(Action):
    """Run a shell script on the host."""

    name = "shell"
    shorthand = "cmd"
    idempotent = False

    def validate(self, params: Fields) -> dict[str, Any]:
        params.only("cmd", *_COMMON)
        return {
            "cmd": params.required("cmd"),
            **_common(params),
        }

    def script(self, params: dict[str, Any]) -> str:
        return str(params["cmd"])

    def run(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        script = self.script(params)
        shown = first_line(script, 120)
        guard = _guard(ctx, params)
        if guard is not None:
            return guard
        if ctx.check and not params.get("read_only"):
            as_user = f" as {ctx.become} (sudo)" if ctx.become else ""
            data: dict[str, Any] = {"would_run": script, "as": ctx.become}
            return Outcome("skipped", f"check mode: would run `{shown}`{as_user}", data)
        result = ctx.target.run(
            script, env=params.get("env") or None, cwd=params.get("chdir"), timeout=ctx.timeout
        )
        data = {"rc": result.rc, "duration": round(result.duration, 4)}
        outcome = Outcome(
            "ok" if params.get("read_only") else "changed",
            "",
            data,
            rc=result.rc,
            stdout=result.stdout,
            stderr=result.stderr,
        )
        if result.rc != 0:
            outcome.status = "failed"
            reason = first_line(result.stderr) or first_line(result.stdout) or "no output"
            outcome.message = f"exit {result.rc}: {reason}"
            return outcome
        expect = params.get("expect")
        if expect is not None and str(expect) not in result.stdout:
            outcome.status = "failed"
            got = first_line(result.stdout, 80) or "(nothing)"
            outcome.message = f"expected {str(expect)!r} in the output, got {got!r}"
            return outcome
        outcome.message = first_line(result.stdout, 120)
        return outcome


class Command(Shell):
    """Run one program with arguments; each argument is quoted, never parsed by a shell."""

    name = "command"
    shorthand = "argv"

    def validate(self, params: Fields) -> dict[str, Any]:
        params.only("argv", *_COMMON)
        argv = params.raw("argv")
        if isinstance(argv, str):
            argv = shlex.split(argv)
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str | int | float) and not isinstance(a, bool) for a in argv)
        ):
            raise BookError(
                params.path,
                params.line_of("argv"),
                params.field("argv"),
                "expected a non-empty list of arguments",
            )
        return {"argv": [str(a) for a in argv], **_common(params)}

    def script(self, params: dict[str, Any]) -> str:
        return shlex.join(str(a) for a in params["argv"])


def _common(params: Fields) -> dict[str, Any]:
    return {
        "chdir": params.text("chdir"),
        "env": require_mapping(params, "env"),
        "creates": params.text("creates"),
        "removes": params.text("removes"),
        "expect": params.text("expect"),
        "read_only": params.flag("read_only"),
    }


def _guard(ctx: StepContext, params: dict[str, Any]) -> Outcome | None:
    """`creates`/`removes`: return an ok outcome when there is nothing to do."""
    creates, removes = params.get("creates"), params.get("removes")
    if not creates and not removes:
        return None
    tests = []
    if creates:
        tests.append(f"[ -e {shlex.quote(str(creates))} ] && echo creates")
    if removes:
        tests.append(f"[ -e {shlex.quote(str(removes))} ] || echo removes")
    probe = ctx.target.run("; ".join(tests) + "; true", timeout=ctx.timeout)
    if "creates" in probe.stdout.split():
        return Outcome("ok", f"{creates} exists; nothing to do")
    if "removes" in probe.stdout.split():
        return Outcome("ok", f"{removes} does not exist; nothing to do")
    return None


ACTIONS = (Shell(), Command())
