"""`file` (a file's content and mode, a directory, or absence) and `upload` (a local file).

Each reads the current state first (one probe: kind, mode, sha256) and does only what differs;
a second run reports `ok`. In check mode it says what it would do and touches nothing.

    - file: {path: "{{ root }}/etc/app.conf", content: "x=1\n", mode: "0640"}
    - file: {path: "{{ root }}/releases", state: directory}
    - upload: {src: files/app.env, dest: /srv/app/.env, mode: "0600"}
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

from runbooks.actions.base import Action, Outcome, StepContext, first_line
from runbooks.engine.source import Fields
from runbooks.errors import BookError

_PROBE = (
    'p={path}; if [ -d "$p" ]; then echo "directory $(stat -c %a "$p")"; '
    'elif [ -e "$p" ]; then echo "file $(stat -c %a "$p") $(sha256sum < "$p" | cut -d" " -f1)"; '
    "else echo absent; fi"
)


def _mode(params: Fields, key: str = "mode") -> int | None:
    raw = params.raw(key)
    if raw is None:
        return None
    text = str(raw)
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if isinstance(raw, bool) or not 0 <= value <= 0o7777:
        raise BookError(
            params.path,
            params.line_of(key),
            params.field(key),
            f'expected an octal mode like "0644", got {raw!r}',
        )
    return value


def probe(ctx: StepContext, path: str) -> tuple[str, int | None, str | None]:
    """Return (kind: file|directory|absent, mode, sha256 of content)."""
    result = ctx.target.run(_PROBE.format(path=shlex.quote(path)), timeout=ctx.timeout)
    words = result.stdout.split()
    if result.rc != 0 or not words:
        raise OSError(f"cannot inspect {path}: {first_line(result.stderr)}")
    kind = words[0]
    mode = int(words[1], 8) if len(words) > 1 and words[1].isdigit() else None
    digest = words[2] if len(words) > 2 else None
    return kind, mode, digest


def converge_file(
    ctx: StepContext, path: str, content: bytes | None, mode: int | None, state: str
) -> Outcome:
    """Make `path` match (state, content, mode), or say what would change in check mode."""
    try:
        kind, current_mode, digest = probe(ctx, path)
    except OSError as exc:
        return Outcome("failed", str(exc))
    todo: list[str] = []
    script: list[str] = []
    quoted = shlex.quote(path)
    write = False
    if state == "absent":
        if kind != "absent":
            todo.append(f"remove {kind} {path}")
            script.append(f"rm -rf -- {quoted}")
    elif state == "directory":
        if kind == "file":
            return Outcome("failed", f"{path} is a file, expected a directory")
        if kind == "absent":
            todo.append(f"create directory {path}")
            script.append(f"mkdir -p -- {quoted}")
        if mode is not None and current_mode != mode:
            todo.append(f"set mode {mode:04o}" if kind != "absent" else f"mode {mode:04o}")
            script.append(f"chmod {mode:o} -- {quoted}")
    else:
        if kind == "directory":
            return Outcome("failed", f"{path} is a directory, expected a file")
        wanted = hashlib.sha256(content).hexdigest() if content is not None else None
        if kind == "absent":
            todo.append(f"create {path}")
            write = True
        elif wanted is not None and digest != wanted:
            todo.append(f"update content of {path}")
            write = True
        if mode is not None and current_mode != mode and not (write and kind == "absent"):
            todo.append(f"set mode {mode:04o}")
            if not write:
                script.append(f"chmod {mode:o} -- {quoted}")
    data = {"path": path, "before": kind, "changes": todo}
    if not todo:
        return Outcome("ok", f"{path} is as wanted", data)
    if ctx.check:
        return Outcome("changed", "check mode: would " + "; ".join(todo), {**data, "check": True})
    try:
        if write:
            keep = (
                mode if mode is not None else (current_mode if current_mode is not None else 0o644)
            )
            ctx.target.put(content or b"", path, keep)
        if script:
            result = ctx.target.run(" && ".join(script), timeout=ctx.timeout)
            if result.rc != 0:
                return Outcome("failed", f"exit {result.rc}: {first_line(result.stderr)}", data)
    except OSError as exc:
        return Outcome("failed", str(exc), data)
    return Outcome("changed", "; ".join(todo), data)


class File(Action):
    """A file with given content/mode, a directory, or nothing at a path."""

    name = "file"
    shorthand = "path"

    def validate(self, params: Fields) -> dict[str, Any]:
        params.only("path", "content", "mode", "state")
        state = params.text("state") or "file"
        if state not in ("file", "directory", "absent"):
            raise params.fail("state", "expected file, directory or absent")
        if state != "file" and params.has("content"):
            raise params.fail("content", f"content makes no sense with state {state}")
        return {
            "path": params.required("path"),
            "content": params.text("content"),
            "mode": _mode(params),
            "state": state,
        }

    def run(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        content = params.get("content")
        return converge_file(
            ctx,
            str(params["path"]),
            None if content is None else str(content).encode(),
            params.get("mode"),
            params["state"],
        )


class Upload(Action):
    """Copy a local file (relative to the book's folder) to the host when its content differs."""

    name = "upload"

    def validate(self, params: Fields) -> dict[str, Any]:
        params.only("src", "dest", "mode")
        return {
            "src": params.required("src"),
            "dest": params.required("dest"),
            "mode": _mode(params),
        }

    def run(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        source = Path(str(params["src"])).expanduser()
        if not source.is_absolute() and ctx.book_dir is not None:
            source = ctx.book_dir / source
        try:
            content = source.read_bytes()
        except OSError as exc:
            return Outcome("failed", f"cannot read {source}: {exc.strerror or exc}")
        return converge_file(ctx, str(params["dest"]), content, params.get("mode"), "file")


ACTIONS = (File(), Upload())
