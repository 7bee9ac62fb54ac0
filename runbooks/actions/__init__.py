"""The action registry: a step names an action, the registry gives the code.

Built-in actions: `shell`, `command`, `file`, `upload`, `facts`, and the deployed host's
`workers.restart` / `workers.verify`. Other packages register theirs
with :func:`register` (an :class:`Action` instance) or :func:`register_python` (a callable)::

    def restart(ctx: StepContext, params: dict) -> Outcome: ...
    register_python("workers.restart", restart)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runbooks.actions.base import Action, Outcome, PythonAction, StepContext

_REGISTRY: dict[str, Action] = {}


def register(action: Action) -> Action:
    """Register `action` under its name (replacing one of the same name)."""
    if not action.name:
        raise ValueError("an action needs a name")
    _REGISTRY[action.name] = action
    return action


def register_python(
    name: str,
    fn: Callable[[StepContext, dict[str, Any]], Outcome],
    read_only: bool = False,
    params: tuple[str, ...] | None = None,
) -> Action:
    """Register a Python callable as the action `name`."""
    return register(PythonAction(name, fn, read_only=read_only, params=params))


def get(name: str) -> Action | None:
    return _REGISTRY.get(name)


def names() -> list[str]:
    return sorted(_REGISTRY)


def _builtins() -> None:
    from runbooks.actions import commands, facts, files
    from runbooks.deploy import workers  # the workers-restart book's

    for module in (commands, facts, files, workers):
        for action in module.ACTIONS:
            register(action)


_builtins()

__all__ = ["Action", "Outcome", "PythonAction", "StepContext", "get", "names", "register"]
