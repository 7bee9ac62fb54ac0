"""What an action is: validated parameters in, an :class:`Outcome` value out.

An action checks the state it needs before acting, does only what is missing, and reports
``ok`` (nothing to do), ``changed``, ``skipped`` or ``failed`` with a message and data. In check
mode (`ctx.check`) it reports what it would change and changes nothing; actions marked
``read_only`` only read, so they run as usual in check mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from runbooks.connectors.targets import Target
from runbooks.engine.source import Fields
from runbooks.errors import BookError

STATUSES = ("ok", "changed", "skipped", "failed")


@dataclass
class Outcome:
    """An action's result. `facts` are merged into the host's `facts` variable."""

    status: str
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    facts: dict[str, Any] | None = None


@dataclass
class StepContext:
    """What an action may use: the host's target, check mode, the vars, the step timeout;
    `diff` asks for a unified diff of what a file action changes (`--diff`; check mode too),
    `become` names the user the target runs scripts as (sudo), if any."""

    target: Target
    host: str
    check: bool
    vars: Mapping[str, Any]
    timeout: float = 300.0
    book_dir: Path | None = None
    diff: bool = False
    become: str | None = None


class Action:
    """Base of the registered actions; subclasses set `name` and implement `run`."""

    name: ClassVar[str] = ""
    #: the parameter a step's scalar/list value stands for (`shell: "echo hi"` -> cmd)
    shorthand: ClassVar[str | None] = None
    #: only reads state, so it runs in check mode too
    read_only: ClassVar[bool] = False
    #: False where a second run may change things again (e.g. `shell` without `creates`)
    idempotent: ClassVar[bool] = True

    def validate(self, params: Fields) -> dict[str, Any]:
        """Check the step's parameters at load time; return them (templates still unrendered)."""
        return dict(params.data)

    def run(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        raise NotImplementedError


class PythonAction(Action):
    """An action backed by a Python callable `fn(ctx, params) -> Outcome` (for other packages)."""

    def __init__(
        self,
        name: str,
        fn: Callable[[StepContext, dict[str, Any]], Outcome],
        read_only: bool = False,
        params: tuple[str, ...] | None = None,
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.fn = fn
        self.read_only = read_only  # type: ignore[misc]
        self.params = params

    def validate(self, params: Fields) -> dict[str, Any]:
        if self.params is not None:
            params.only(*self.params)
        return dict(params.data)

    def run(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        return self.fn(ctx, params)


def first_line(text: str, limit: int = 200) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:limit]


def require_mapping(params: Fields, key: str) -> dict[str, str]:
    value = params.raw(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values()
    ):
        raise BookError(
            params.path, params.line_of(key), params.field(key), "expected a mapping of strings"
        )
    return {str(k): str(v) for k, v in value.items()}
