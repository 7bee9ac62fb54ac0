"""One long-lived `sh` per host that carries every step, told apart by sentinel markers.

A new SSH exec channel per step costs ~100 ms on the server (a fork, a login, a shell); the steps
of a book instead go down one channel to one `/bin/sh` reading its standard input. The session
first makes a private directory (`mktemp -d`, removed when the shell exits). Each step is then
written as::

    ( cd DIR && export K=V && exec /bin/sh /dev/fd/3 ) </dev/null >D/T.o 2>D/T.e 3<<'T'
    SCRIPT
    T
    r=$?; cat D/T.o; printf '\\n%s %s\\n' T "$r"; cat D/T.e >&2; printf '\\n%s\\n' T >&2

so every step is its own `sh` process (its own `$$`; its `exit`, `cd`, `export`, `set -e`, `exec`
and `kill $$` end only the step), reads its script from a here-document on fd 3 (no argument
size limit, nothing on disk) with stdin closed, and writes its output to files of its own: a
background job it leaves behind writes into that step's files, never into a later step's output.
Then the shell prints the files, a random per-step token and the exit status on stdout, and the
token on stderr. The reader collects both streams up to their markers; the newline written before
each marker is removed again, so the output is exact.

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


# Run once when the session opens: the private directory for the steps' output files.
SESSION_SETUP = (
    b"__mq=$(command -p mktemp -d 2>/dev/null) || { echo 'maqsafy: mktemp -d failed on this host: "
    b"make TMPDIR (or /tmp) writable with free space' >&2; exit 125; }; "
    b"trap 'command -p rm -rf \"$__mq\"' EXIT; trap 'exit 129' HUP; trap 'exit 143' TERM\n"
)


def step_line(
    token: str, script: str, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> bytes:
    """The lines that run `script` as its own process and print the markers."""
    prelude = []
    if cwd:
        prelude.append(f"cd {shlex.quote(cwd)} || exit 1")
    for name, value in (env or {}).items():
        if not _ENV_NAME.fullmatch(name):
            raise StepError(f"env: {name!r} is not a valid environment variable name")
        prelude.append(f"export {name}={shlex.quote(str(value))}")
    # fd 3 is the script's here-document: the step's shell has its own descriptor for it.
    body = "; ".join([*prelude, "exec /bin/sh /dev/fd/3"])
    out, err = f'"$__mq/{token}.o"', f'"$__mq/{token}.e"'
    return (
        f"( {body}\n) </dev/null >{out} 2>{err} 3<<'{token}'\n"
        f"exec 3<&-; {script}\n{token}\n"
        f"__mr=$?; [ -s {out} ] && command -p cat {out}; printf '\\n%s %s\\n' {token} \"$__mr\"; "
        f"[ -s {err} ] && command -p cat {err} >&2; printf '\\n%s\\n' {token} >&2\n"
    ).encode()


class ShellSession:
    """Run scripts one after another in the shell behind `pipe`."""

    def __init__(self, pipe: Pipe, host: str) -> None:
        self.pipe = pipe
        self.host = host
        self.broken = False
        self._setup = SESSION_SETUP  # sent with the first step

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
            self.pipe.send(self._setup + step_line(token, script, env, cwd))
            self._setup = b""
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
                said = err.decode("utf-8", "replace").strip().splitlines()
                why = f": {said[-1][:200]}" if said else ""
                raise HostUnreachable(self.host, "lost", f"the remote shell exited mid-step{why}")
        return CommandResult(
            rc=rc,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration=time.monotonic() - started,
        )

    def close(self) -> None:
        self.broken = True
        self.pipe.close()
