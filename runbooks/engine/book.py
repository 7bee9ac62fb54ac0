"""Runbooks: YAML files of steps, loaded safely and validated with file:line:field errors.

    name: ping
    description: redis-cli ping from each host; expects PONG
    hosts: workers            # group, host or pattern of the environment (default: all)
    serial: 25%               # hosts per batch: a count or a percentage (default: all at once)
    max_fail_percentage: 0    # stop after a batch whose failed share exceeds this
    vars: {redis_port: 6379}
    steps:
      - name: ping redis
        command: [redis-cli, -p, "{{ redis_port }}", ping]
        read_only: true       # (an action parameter, here `command`'s)
        when: facts.has_redis_cli
        tags: [redis]
        retries: 2
        delay: 1
        register: pong
        rescue:
          - shell: echo "redis did not answer" >&2
      - name: redis.conf
        template: {src: templates/redis.conf.j2, dest: /etc/redis/redis.conf, mode: "0640"}
        become: true          # via sudo; become_user (default root), per step or for the book
        notify: restart redis
    handlers:                 # run once per host at the end, in this order, if notified by a
      - name: restart redis   # step that changed; a failed host runs none (force_handlers)
        service: {name: redis-server, state: restarted}

A step names exactly one registered action; everything else is checked against the schema
below. `when` and `{{ }}` are Jinja2 on a sandbox (:mod:`runbooks.engine.expressions`), their
syntax checked here: nothing in a runbook is evaluated as Python. A `become_password` in the
book's `vars` must be a `${VAR}` reference, resolved from the environment when the book is
loaded with one (:func:`load_book`'s `environ`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runbooks.actions import Action, Actions, builtins
from runbooks.engine.expressions import Condition, SyntaxProblem, check_templates, parse_condition
from runbooks.engine.source import Fields, MarkedDict, approval_required, load_yaml
from runbooks.errors import BookError, ExpressionError

STEP_KEYS = (
    "name",
    "when",
    "tags",
    "retries",
    "delay",
    "timeout",
    "register",
    "ignore_errors",
    "rescue",
    "notify",
    "become",
    "become_user",
)
BOOK_KEYS = (
    "name",
    "description",
    "hosts",
    "serial",
    "max_fail_percentage",
    "vars",
    "steps",
    "handlers",
    "force_handlers",
    "become",
    "become_user",
    "approval",
)
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


@dataclass(frozen=True)
class Step:
    """One validated step: an action with parameters and how to run it."""

    name: str
    action: str
    params: Mapping[str, Any]
    line: int | None = None
    when: tuple[Condition, ...] = ()
    tags: frozenset[str] = frozenset()
    retries: int = 0
    delay: float = 1.0
    timeout: float = 300.0
    register: str | None = None
    ignore_errors: bool = False
    rescue: tuple[Step, ...] = ()
    notify: tuple[str, ...] = ()
    become: bool | None = None  # None: the book's
    become_user: str | None = None
    where: str = ""  # steps[2], handlers[0], steps[1].rescue[0]
    lines: Mapping[str, int | None] = field(default_factory=dict, compare=False, repr=False)
    impl: Action | None = field(default=None, compare=False, repr=False)  # resolved at load


@dataclass(frozen=True)
class Book:
    """One validated runbook."""

    name: str
    path: Path
    steps: tuple[Step, ...]
    description: str = ""
    hosts: str = "all"
    serial: int | str | None = None
    max_fail_percentage: float | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    approval: bool = False  # `approval: required`: each run needs a second person's approval
    handlers: tuple[Step, ...] = ()
    force_handlers: bool = False
    become: bool = False
    become_user: str | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)  # resolved become_password

    def batches(self, names: list[str]) -> list[list[str]]:
        """Split `names` into rolling batches per `serial`."""
        if not names:
            return []
        size = len(names)
        if isinstance(self.serial, int):
            size = self.serial
        elif isinstance(self.serial, str):
            size = max(1, math.floor(len(names) * float(self.serial.rstrip("%")) / 100))
        return [names[i : i + size] for i in range(0, len(names), size)]

    @property
    def tags(self) -> set[str]:
        found: set[str] = set()
        for step in self.steps:
            found |= step.tags
        return found


def load_book(
    path: Path,
    text: str | None = None,
    actions: Actions | None = None,
    environ: Mapping[str, str] | None = None,
) -> Book:
    """Load and validate the runbook at `path`, its steps naming `actions` (default the
    built-ins); raise BookError naming file, line, field. With `environ`, a `${VAR}`
    `become_password` is resolved from it (and kept in `Book.secrets` for redaction)."""
    known = builtins() if actions is None else actions
    return _book(path, load_yaml(path, BookError, text), known, environ)


def inline_book(
    name: str,
    document: Mapping[str, Any],
    actions: Actions | None = None,
    environ: Mapping[str, str] | None = None,
) -> Book:
    """Validate a book built in Python (steps as dicts, as in YAML) with the same schema."""
    text = yaml.safe_dump({"name": name, **document}, sort_keys=False)
    return load_book(Path(f"<{name}>"), text, actions, environ)


def _become_password(
    top: Fields, book_vars: dict[str, Any], environ: Mapping[str, str] | None
) -> tuple[str, ...]:
    """Check the book's `become_password` is a ${VAR} reference; resolve it from `environ`."""
    if "become_password" not in book_vars:
        return ()
    where = top.mapping("vars")
    raw = book_vars["become_password"]
    match = _REFERENCE.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        raise where.fail(
            "become_password",
            "a literal secret is refused; write a reference like ${BECOME_PASSWORD} and set "
            "the variable in the environment",
        )
    if environ is None:
        return ()
    name = match.group(1)
    if name not in environ:
        raise where.fail("become_password", f"${{{name}}} is not set in the environment (or .env)")
    book_vars["become_password"] = environ[name]
    return (environ[name],) if environ[name] else ()


def _book(
    path: Path, document: MarkedDict, actions: Actions, environ: Mapping[str, str] | None
) -> Book:
    top = Fields(path, document, BookError)
    top.only(*BOOK_KEYS)
    serial: int | str | None = None
    raw_serial = top.raw("serial")
    if isinstance(raw_serial, str) and re.fullmatch(r"\d+(\.\d+)?%", raw_serial.strip()):
        serial = raw_serial.strip()
        if not 0 < float(serial.rstrip("%")) <= 100:
            raise top.fail("serial", "a percentage must be above 0% and at most 100%")
    elif raw_serial is not None:
        serial = top.integer("serial", None, 1, 100_000)
    mfp = top.raw("max_fail_percentage")
    steps_items = top.items("steps")
    if not steps_items:
        raise BookError(path, top.line_of("steps"), "steps", "a runbook needs at least one step")
    steps = tuple(
        _step(path, line, raw, f"steps[{i}]", actions) for i, (line, raw) in enumerate(steps_items)
    )
    handlers = _handlers(path, top, actions, steps)
    book_vars = dict(top.mapping("vars").data)
    try:
        check_templates(book_vars)
    except SyntaxProblem as exc:
        raise ExpressionError(path, top.line_of("vars"), "vars", str(exc)) from None
    secrets = _become_password(top, book_vars, environ)
    return Book(
        name=top.text("name") or path.stem,
        path=path,
        steps=steps,
        description=(top.text("description") or "").strip(),
        hosts=top.text("hosts") or "all",
        serial=serial,
        max_fail_percentage=None if mfp is None else top.number("max_fail_percentage", 0, 0, 100),
        vars=book_vars,
        handlers=handlers,
        force_handlers=top.flag("force_handlers"),
        become=top.flag("become"),
        become_user=_user(top),
        secrets=secrets,
        approval=approval_required(top),
    )


def _user(fields: Fields) -> str | None:
    user = fields.text("become_user")
    if user is not None and not _USER.fullmatch(user):
        raise fields.fail("become_user", "expected a user name (lower-case letters, digits, _.-)")
    return user


def _handlers(
    path: Path, top: Fields, actions: Actions, steps: tuple[Step, ...]
) -> tuple[Step, ...]:
    """The book's handlers: named, unique, untagged; every `notify` names one of them, and a
    handler notifies only handlers defined after it (they run in the order defined)."""
    handlers: list[Step] = []
    for i, (line, raw) in enumerate(top.items("handlers")):
        where = f"handlers[{i}]"
        if isinstance(raw, dict):
            fields = Fields(path, raw, BookError, where)
            if not fields.text("name"):
                raise BookError(path, line, where, "a handler needs a name (steps notify it)")
            if fields.has("tags"):
                raise fields.fail("tags", "handlers run when notified; tags do not select them")
        handler = _step(path, line, raw, where, actions)
        if any(h.name == handler.name for h in handlers):
            raise BookError(path, line, f"{where}.name", f"a second handler {handler.name!r}")
        handlers.append(handler)
    names = [h.name for h in handlers]

    def check(step: Step, after: int) -> None:
        for name in step.notify:
            if name not in names:
                known = ", ".join(names) or "none: add a handlers list"
                raise BookError(
                    path,
                    step.lines.get("notify"),
                    f"{step.where}.notify",
                    f"no handler named {name!r} (handlers: {known})",
                )
            if names.index(name) <= after:
                raise BookError(
                    path,
                    step.lines.get("notify"),
                    f"{step.where}.notify",
                    f"{name!r} is not defined after this handler (handlers run in the order "
                    "defined, once)",
                )
        for item in step.rescue:
            check(item, after)

    for step in steps:
        check(step, -1)
    for index, handler in enumerate(handlers):
        check(handler, index)
    return tuple(handlers)


def _step(path: Path, line: int | None, raw: Any, where: str, actions: Actions) -> Step:
    if not isinstance(raw, dict):
        raise BookError(path, line, where, "a step must be a mapping naming one action")
    step = Fields(path, raw, BookError, where)
    action_keys = [k for k in step.names() if k not in STEP_KEYS]
    if len(action_keys) != 1:
        shown = ", ".join(map(str, action_keys)) or "none"
        raise BookError(
            path,
            step.line,
            where,
            f"a step names exactly one action (found: {shown}); "
            f"actions: {', '.join(sorted(actions))}",
        )
    name = action_keys[0]
    action = actions.get(str(name))
    if action is None:
        raise step.fail(name, f"unknown action; known actions: {', '.join(sorted(actions))}")
    value = raw[name]
    if isinstance(value, dict):
        params = Fields(path, value, BookError, step.field(name))
    else:
        data = MarkedDict()
        data.line = step.line_of(name) or 0
        data.key_lines = {}
        if value is not None:
            if action.shorthand is None:
                raise step.fail(name, "expected a mapping of parameters")
            data[action.shorthand] = value
            data.key_lines[action.shorthand] = data.line
        params = Fields(path, data, BookError, step.field(name))
    validated = action.validate(params)
    lines: dict[str, int | None] = {f"{name}.{key}": params.line_of(key) for key in validated}
    for key, value in validated.items():
        try:
            check_templates(value)
        except SyntaxProblem as exc:
            raise ExpressionError(path, params.line_of(key), params.field(key), str(exc)) from None
    rescue = tuple(
        _step(path, item_line, item, f"{where}.rescue[{i}]", actions)
        for i, (item_line, item) in enumerate(step.items("rescue"))
    )
    register = step.text("register")
    if register is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", register):
        raise step.fail("register", "expected a variable name (letters, digits, _)")
    lines.update({key: step.line_of(key) for key in ("name", "when", "notify", "register")})
    step_name = step.text("name") or f"{name} ({where})"
    try:
        check_templates(step_name)
    except SyntaxProblem as exc:
        raise ExpressionError(path, step.line_of("name"), step.field("name"), str(exc)) from None
    become = step.raw("become")
    return Step(
        name=step_name,
        action=str(name),
        impl=action,
        params=validated,
        line=step.line,
        when=_conditions(step),
        tags=frozenset(step.str_list("tags")),
        retries=step.integer("retries", 0, 0, 100) or 0,
        delay=step.number("delay", 1.0, 0, 3600),
        timeout=step.number("timeout", 300.0, 0.1, 86_400),
        register=register,
        ignore_errors=step.flag("ignore_errors"),
        rescue=rescue,
        notify=tuple(step.str_list("notify")),
        become=None if become is None else step.flag("become"),
        become_user=_user(step),
        where=where,
        lines=lines,
    )


def _conditions(step: Fields) -> tuple[Condition, ...]:
    raw = step.raw("when")
    if raw is None:
        return ()
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    items = raw if isinstance(raw, list) else [raw]
    conditions = []
    for item in items:
        if isinstance(item, bool):
            item = "true" if item else "false"
        if not isinstance(item, str):
            raise step.fail("when", "expected an expression or a list of expressions")
        try:
            conditions.append(parse_condition(item))
        except SyntaxProblem as exc:
            raise ExpressionError(
                step.path, step.line_of("when"), step.field("when"), f"{exc} in {item!r}"
            ) from None
    return tuple(conditions)
