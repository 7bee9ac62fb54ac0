"""One long-lived `sh` per host that carries every step, told apart by sentinel markers.

A new SSH exec channel per step costs ~100 ms on the server (a fork, a login, a shell); the steps
of a book instead go down one channel to one `/bin/sh` reading its standard input. Each step is
written as one line::

    ( cd DIR && export K=V && eval 'SCRIPT' ) </dev/null; printf '\\n%s %s\\n' TOKEN "$?";
    printf '\\n%s\\n' TOKEN >&2

The step runs in a subshell (its `exit`, `cd` and variables stay there) with stdin closed (so it
cannot swallow the next step), then the shell prints a random per-step token and the exit status
on stdout and the token on stderr. The reader collects both streams up to their markers; the
newline written before each marker is removed again, so the output is exact.

:class:`Pipe` is the byte transport (an SSH channel, or a local process's pipes).
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from runbooks.errors import HostUnreachable, StepError


@dataclass(frozen=True)
class CommandResult:
    """What one script did: exit status, both outputs, wall time."""

    rc: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Pipe(Protocol):
    """Bytes to and from one shell: send stdin, read whatever stdout/stderr has arrived."""

    def send(self, data: bytes) -> None: ...

    def read(self, timeout: float) -> tuple[bytes, bytes, bool]:
        """Return (stdout bytes, stderr bytes, closed) within `timeout` seconds."""
        ...

    def close(self) -> None: ...


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def step_line(
    token: str, script: str, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> bytes:
    """The one line that runs `script` in a subshell and prints the markers."""
    prelude = []
    if cwd:
        prelude.append(f"cd {shlex.quote(cwd)} || exit 1")
    for name, value in (env or {}).items():
        if not _ENV_NAME.fullmatch(name):
            raise StepError(f"env: {name!r} is not a valid environment variable name")
        prelude.append(f"export {name}={shlex.quote(str(value))}")
    body = "; ".join([*prelude, f"eval {shlex.quote(script)}"])
    return (
        f"( {body}\n) </dev/null; printf '\\n%s %s\\n' {token} \"$?\"; "
        f"printf '\\n%s\\n' {token} >&2\n"
    ).encode()


class ShellSession:
    """Run scripts one after another in the shell behind `pipe`."""

    def __init__(self, pipe: Pipe, host: str) -> None:
        self.pipe = pipe
        self.host = host
        self.broken = False

    def run(
        self,
        script: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 300.0,
    ) -> CommandResult:
        """Run `script`; raise StepError on timeout, HostUnreachable when the shell is gone."""
        if self.broken:
            raise HostUnreachable(self.host, "lost", "the shell session was closed earlier")
        token = "__maqsafy_" + secrets.token_hex(8)
        started = time.monotonic()
        try:
            self.pipe.send(step_line(token, script, env, cwd))
        except OSError as exc:
            self.broken = True
            raise HostUnreachable(self.host, "lost", f"could not send the step: {exc}") from exc
        out, err = bytearray(), bytearray()
        out_marker = f"\n{token} ".encode()
        err_marker = f"\n{token}\n".encode()
        deadline = started + timeout
        rc: int | None = None
        err_done = False
        while rc is None or not err_done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise StepError(f"timed out after {timeout:g}s (the host's session was reset)")
            chunk_out, chunk_err, closed = self.pipe.read(min(remaining, 1.0))
            out += chunk_out
            err += chunk_err
            if rc is None:
                at = out.find(out_marker)
                end = out.find(b"\n", at + len(out_marker)) if at >= 0 else -1
                if end >= 0:
                    rc = int(out[at + len(out_marker) : end] or b"255")
                    del out[at:]
            if not err_done:
                at = err.find(err_marker)
                if at >= 0:
                    err_done = True
                    del err[at:]
            if closed and (rc is None or not err_done):
                self.broken = True
                raise HostUnreachable(self.host, "lost", "the remote shell exited mid-step")
        return CommandResult(
            rc=rc,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration=time.monotonic() - started,
        )

    def close(self) -> None:
        self.broken = True
        self.pipe.close()
