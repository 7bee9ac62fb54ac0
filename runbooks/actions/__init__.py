"""Actions: a step names an action, the book loader is given the mapping of names to code.

Built-in actions: `shell`, `command`, `file`, `upload`, `template`, `service`, `facts`, and
the deployed host's `workers.restart` / `workers.verify`. There is no global registry:
:func:`builtins` returns a new mapping, and a caller that needs more (a deploy's host-side
steps, a Python callable run on each host) passes the built-ins plus its own to the loader::

    mapping = with_python(builtins(), "deploy.switch", switch)
    book = inline_book("deploy.rollout", document, mapping)

The loader resolves each step's action once; the executor runs what the book holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runbooks.actions.base import Action, Outcome, PythonAction, StepContext

Actions = Mapping[str, Action]


def builtins() -> dict[str, Action]:
    """A new mapping of the built-in actions by name."""
    from runbooks.actions import commands, facts, files, service
    from runbooks.deploy import workers  # the workers-restart book's

    return {a.name: a for m in (commands, facts, files, service, workers) for a in m.ACTIONS}


def with_python(
    mapping: Actions,
    name: str,
    fn: Callable[[StepContext, dict[str, Any]], Outcome],
    read_only: bool = False,
    params: tuple[str, ...] | None = None,
) -> dict[str, Action]:
    """`mapping` plus the Python callable `fn` as the action `name` (a new mapping)."""
    if not name:
        raise ValueError("an action needs a name")
    return {**mapping, name: PythonAction(name, fn, read_only=read_only, params=params)}


__all__ = ["Action", "Actions", "Outcome", "PythonAction", "StepContext", "builtins", "with_python"]
