"""`file` (a file's content and mode, a directory, or absence), `upload` (a local file) and
`template` (a Jinja2 file rendered with the host's variables).

Each reads the current state first (one probe: kind, mode, owner, sha256) and does only what
differs; a second run reports `ok`. In check mode it says what it would do and touches nothing.
With `--diff` (and in check mode) a content change carries a unified diff in the step's
`diff` data (the old content is read only then; masked like all output when shown).

    - file: {path: "{{ root }}/etc/app.conf", content: "x=1\n", mode: "0640"}
    - file: {path: "{{ root }}/releases", state: directory, owner: app, group: app}
    - upload: {src: files/app.env, dest: /srv/app/.env, mode: "0600"}
    - template: {src: templates/redis.conf.j2, dest: /etc/redis/redis.conf, owner: redis}
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
import shlex
from pathlib import Path
from typing import Any

from runbooks.actions.base import Action, Outcome, StepContext, first_line
from runbooks.engine.source import Fields
from runbooks.engine.templating import SyntaxProblem, TemplateProblem, check_file, render_file
from runbooks.errors import BookError

_PROBE = (
    'p={path}; if [ -d "$p" ]; then echo "directory $(stat -c \'%a %U:%G\' "$p")"; '
    'elif [ -e "$p" ]; then echo "file $(stat -c \'%a %U:%G\' "$p") '
    '$(sha256sum < "$p" | cut -d" " -f1)"; '
    "else echo absent; fi"
)
DIFF_LIMIT = 256 * 1024  # larger files are said to differ, not diffed
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10}")


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


def _owner(params: Fields, key: str) -> str | None:
    value = params.text(key)
    if value is not None and "{{" not in value and not _NAME.fullmatch(value):
        raise params.fail(key, "expected a user or group name (or a numeric id)")
    return value


def probe(ctx: StepContext, path: str) -> tuple[str, int | None, str | None, str | None]:
    """Return (kind: file|directory|absent, mode, owner:group, sha256 of content)."""
    result = ctx.target.run(_PROBE.format(path=shlex.quote(path)), timeout=ctx.timeout)
    words = result.stdout.split()
    if result.rc != 0 or not words:
        raise OSError(f"cannot inspect {path}: {first_line(result.stderr)}")
    kind = words[0]
    mode = int(words[1], 8) if len(words) > 1 and words[1].isdigit() else None
    owner = words[2] if len(words) > 2 else None
    digest = words[3] if len(words) > 3 else None
    return kind, mode, owner, digest


def _old_content(ctx: StepContext, path: str) -> bytes | None:
    """The file's current content, or None when it is larger than DIFF_LIMIT."""
    quoted = shlex.quote(path)
    result = ctx.target.run(
        f"[ $(wc -c < {quoted}) -le {DIFF_LIMIT} ] || exit 3; base64 < {quoted}",
        timeout=ctx.timeout,
    )
    if result.rc == 3:
        return None
    if result.rc != 0:
        raise OSError(f"cannot read {path} for --diff: {first_line(result.stderr)}")
    return base64.b64decode("".join(result.stdout.split()))


def unified_diff(path: str, before: bytes | None, after: bytes) -> str:
    """A unified diff of two contents, or one line saying why there is none."""
    if before is None or len(after) > DIFF_LIMIT:
        return f"{path}: content differs (over {DIFF_LIMIT // 1024} KiB: not diffed)\n"
    try:
        old, new = before.decode("utf-8"), after.decode("utf-8")
    except UnicodeDecodeError:
        return f"{path}: binary content differs\n"
    if "\0" in old or "\0" in new:
        return f"{path}: binary content differs\n"
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        f"{path} (before)",
        f"{path} (after)",
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def converge_file(
    ctx: StepContext,
    path: str,
    content: bytes | None,
    mode: int | None,
    state: str,
    owner: str | None = None,
    group: str | None = None,
) -> Outcome:
    """Make `path` match (state, content, mode, owner), or say what would change in check mode."""
    try:
        kind, current_mode, current_owner, digest = probe(ctx, path)
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
    if state != "absent" and (owner or group):
        have_user, _, have_group = (current_owner or ":").partition(":")
        wanted = f"{owner or have_user}:{group or have_group}" if kind != "absent" else None
        if kind == "absent" or current_owner != wanted:
            spec = f"{owner or ''}{':' + group if group else ''}"
            todo.append(f"set owner {spec}")
            script.append(f"chown {shlex.quote(spec)} -- {quoted}")
    data: dict[str, Any] = {"path": path, "before": kind, "changes": todo}
    if not todo:
        return Outcome("ok", f"{path} is as wanted", data)
    if write and ctx.diff and content is not None:
        try:
            before = b"" if kind == "absent" else _old_content(ctx, path)
        except OSError as exc:
            return Outcome("failed", str(exc), data)
        data["diff"] = unified_diff(path, before, content)
    if ctx.check:
        as_user = f" (as {ctx.become}, sudo)" if ctx.become else ""
        message = "check mode: would " + "; ".join(todo) + as_user
        return Outcome("changed", message, {**data, "check": True})
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
        params.only("path", "content", "mode", "state", "owner", "group")
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
            "owner": _owner(params, "owner"),
            "group": _owner(params, "group"),
        }

    def run(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        content = params.get("content")
        return converge_file(
            ctx,
            str(params["path"]),
            None if content is None else str(content).encode(),
            params.get("mode"),
            params["state"],
            _text(params.get("owner")),
            _text(params.get("group")),
        )


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


class Upload(Action):
    """Copy a local file (relative to the book's folder) to the host when its content differs."""

    name = "upload"

    def validate(self, params: Fields) -> dict[str, Any]:
        params.only("src", "dest", "mode", "owner", "group")
        return {
            "src": params.required("src"),
            "dest": params.required("dest"),
            "mode": _mode(params),
            "owner": _owner(params, "owner"),
            "group": _owner(params, "group"),
        }

    def run(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        source = _source(ctx.book_dir, str(params["src"]))
        try:
            content = source.read_bytes()
        except OSError as exc:
            return Outcome("failed", f"cannot read {source}: {exc.strerror or exc}")
        return self.converge(ctx, params, content)

    def converge(self, ctx: StepContext, params: dict[str, Any], content: bytes) -> Outcome:
        owner, group = _text(params.get("owner")), _text(params.get("group"))
        dest, mode = str(params["dest"]), params.get("mode")
        return converge_file(ctx, dest, content, mode, "file", owner, group)


def _source(book_dir: Path | None, src: str) -> Path:
    source = Path(src).expanduser()
    if not source.is_absolute() and book_dir is not None:
        source = book_dir / source
    return source


class Template(Upload):
    """Render a Jinja2 file (relative to the book's folder) with the host's variables and
    write it when the result differs; an undefined name fails the step at the file's line."""

    name = "template"

    def validate(self, params: Fields) -> dict[str, Any]:
        validated = super().validate(params)
        src = str(validated["src"])
        if "{{" not in src and "{%" not in src:  # a fixed file: read and parsed now
            try:
                check_file(_source(Path(params.path).parent, src))
            except (SyntaxProblem, TemplateProblem) as exc:
                raise params.fail("src", str(exc)) from None
        return validated

    def run(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        try:
            text = render_file(_source(ctx.book_dir, str(params["src"])), ctx.vars)
        except TemplateProblem as exc:
            return Outcome("failed", str(exc))
        return self.converge(ctx, params, text.encode())


ACTIONS = (File(), Upload(), Template())
