"""`become`: run a step's scripts as another user through sudo, the password on stdin only.

A :class:`BecomeTarget` wraps a host's target; each script it runs becomes, inside that step's
own `sh` (its stdin is /dev/null, its script on fd 3: :mod:`runbooks.connectors.session`)::

    { printf '%s\\n' PASSWORD; exec cat <<'T'
    cd DIR || exit 1; export K=V
    SCRIPT
    T
    } | exec sudo -k -S -H -p '' -u USER -- \\
        /bin/sh -c 'exec 3<&0 </dev/null; __s=$(cat <&3; echo .); eval "unset __s; ${__s%.}"'

sudo reads the password line from the pipe one byte at a time and stops there; the user's
shell then reads the rest of the pipe (the script) and evaluates it with stdin closed, as
every step runs (a script reads nothing from stdin; `exit` ends the step). `printf` is the
shell's builtin and the script travels in the session's input, so the password is in no argv,
environment, file or shell history. `-k` ignores cached credentials, so sudo reads a password
every time it needs one, never a script line. (Without a password the script is sudo's stdin
directly: ``exec sudo -k -n -H -u USER -- /bin/sh -c '...' <<'T'``.)

Which mode a user needs is asked once per host and user (cached for the host's run),
before the first step: ``sudo -k -n -u USER true`` (no password needed: NOPASSWD, or the
login user is root), else the password alone piped to ``sudo -k -S ... true``. A host that
needs a password none was given for, a refused password or a host without sudo fails the
step with one line and never sends a script line sudo could take for a password. The
password is masked wherever output leaves (the inventory's secret rule names
``become_password``; a book's is resolved from a ``${VAR}``).
"""

from __future__ import annotations

import base64
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runbooks.connectors.session import _ENV_NAME, CommandResult
from runbooks.errors import StepError

# The user's shell takes the rest of its stdin (the script) and runs it with stdin closed. It
# reads the inherited descriptor (`cat <&3`) rather than reopening /dev/fd/3: another user may
# not open the login user's pipe by path. The trailing `.` keeps the script's last newlines.
_SHELL = (
    "/bin/sh -c 'exec 3<&0 </dev/null; __s=$(command -p cat <&3; echo .); exec 3<&-; "
    'eval "unset __s; ${__s%.}"\''
)


@dataclass(frozen=True)
class Become:
    """Whom a step runs as, and the sudo password if the host asks for one."""

    user: str = "root"
    password: str | None = field(default=None, repr=False)


def _probe(become: Become) -> str:
    user = shlex.quote(become.user)
    lines = [
        "command -v sudo >/dev/null 2>&1 || { echo nosudo; exit 0; }",
        f"if sudo -k -n -H -u {user} -- true 2>/dev/null; then echo nopass; exit 0; fi",
    ]
    if become.password is None:
        lines.append("echo needpass")
    else:
        lines.append(
            f"printf '%s\\n' {shlex.quote(become.password)} | "
            f"sudo -k -S -H -p '' -u {user} -- true && echo pass"
        )
    return "\n".join(lines)


def wrap(script: str, become: Become, with_password: bool, env: Any = None, cwd: Any = None) -> str:
    """The script that runs `script` (with `env`, in `cwd`) as `become.user`."""
    prelude = []
    if cwd:
        prelude.append(f"cd {shlex.quote(str(cwd))} || exit 1")
    for name, value in (env or {}).items():
        if not _ENV_NAME.fullmatch(str(name)):
            raise StepError(f"env: {name!r} is not a valid environment variable name")
        prelude.append(f"export {name}={shlex.quote(str(value))}")
    token = "__maqsafy_become_" + secrets.token_hex(8)
    body = "\n".join([*prelude, script])
    user = shlex.quote(become.user)
    if with_password:
        assert become.password is not None
        return (
            f"{{ printf '%s\\n' {shlex.quote(become.password)}; exec cat <<'{token}'\n"
            f"{body}\n{token}\n}} | exec sudo -k -S -H -p '' -u {user} -- {_SHELL}\n"
        )
    return f"exec sudo -k -n -H -u {user} -- {_SHELL} <<'{token}'\n{body}\n{token}\n"


class BecomeTarget:
    """`target` with every script run as `become.user` (through sudo)."""

    def __init__(self, target: Any, become: Become, modes: dict[str, str]) -> None:
        if become.password is not None and "\n" in become.password:
            raise StepError("become_password: a sudo password cannot hold a line break")
        self.target = target
        self.name = target.name
        self.become = become
        self.modes = modes  # per host: user -> nopass | pass (asked once)

    def _mode(self, timeout: float) -> str:
        user = self.become.user
        if user not in self.modes:
            result = self.target.run(_probe(self.become), timeout=timeout)
            said = result.stdout.split()
            if "nosudo" in said:
                raise StepError(f"become: sudo is not installed on {self.name}")
            if "nopass" in said:
                self.modes[user] = "nopass"
            elif "pass" in said:
                self.modes[user] = "pass"
            elif "needpass" in said:
                raise StepError(
                    f"become: sudo on {self.name} asks a password to run as {user}: set "
                    "become_password: ${VAR} in the inventory or the book's vars"
                )
            else:
                why = (result.stderr.strip().splitlines() or ["refused"])[-1][:200]
                raise StepError(f"become: sudo refused to run as {user} on {self.name}: {why}")
        return self.modes[user]

    def run(
        self,
        script: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 300.0,
    ) -> CommandResult:
        mode = self._mode(timeout)
        return self.target.run(wrap(script, self.become, mode == "pass", env, cwd), timeout=timeout)

    def put(self, data: bytes, path: str, mode: int | None = None) -> None:
        put_through(self, data, path, mode)

    def close(self) -> None:
        self.target.close()


_CHUNK = 48 * 1024


def put_through(target: Any, data: bytes, path: str, mode: int | None = None) -> None:
    """Write `data` to `path` with `target.run` (any target: the session's, or a become one)."""
    result = target.run(put_script(data, path, mode))
    if not result.ok:
        raise OSError(f"writing {path} failed: {result.stderr.strip()[-200:]}")


def put_script(data: bytes, path: str, mode: int | None = None) -> str:
    """The script that writes `data` to `path` atomically (temp file, then rename)."""
    tmp = shlex.quote(f"{path}.maqsafy-tmp")
    lines = ["umask 077", f": > {tmp} || exit 1"]
    encoded = base64.b64encode(data).decode()
    for start in range(0, len(encoded), _CHUNK):
        chunk = encoded[start : start + _CHUNK]
        lines.append(f"printf '%s' {chunk} | base64 -d >> {tmp} || exit 1")
    if mode is not None:
        lines.append(f"chmod {mode:o} {tmp} || exit 1")
    lines.append(f"mv -f {tmp} {shlex.quote(path)}")
    return "\n".join(lines)
