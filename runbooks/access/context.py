"""What the entry points tell the access gate, kept light (no SQL import, so loading tasks.py
stays quick): the command being run and its arguments, the approval `approvals.run` grants,
and who is acting: the command line's API token (where this process's token comes from), or
an operator the console signed in (:func:`signed_in_as`, for one request)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Invocation:
    """The command being run: its name as typed (`failed.flush`) and every argument."""

    command: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


invocation: ContextVar[Invocation | None] = ContextVar("invocation", default=None)
grant: ContextVar[int | None] = ContextVar("grant", default=None)
# The operator a console session names (its password was checked at sign-in); None: use the token.
signed_in: ContextVar[str | None] = ContextVar("signed_in", default=None)
_token_source: list[Callable[[], str | None]] = [lambda: None]


def use_token(source: Callable[[], str | None]) -> None:
    """Where tokens come from in this process (the command line: its config file)."""
    _token_source[0] = source


def token() -> str | None:
    return _token_source[0]()


@contextmanager
def invoking(command: str, body: Callable[..., Any], args: Any, kwargs: Any) -> Iterator[None]:
    """Around a task's body: the command and its arguments (defaults filled in, no context)."""
    try:
        bound = inspect.signature(body).bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(list(bound.arguments.items())[1:])
    except TypeError:  # Invoke says what is wrong with the call
        arguments = {}
    reset = invocation.set(Invocation(command, arguments))
    try:
        yield
    finally:
        invocation.reset(reset)


@contextmanager
def granted(approval_id: int) -> Iterator[None]:
    """Run the block with approval `approval_id` to spend (`approvals.run`)."""
    reset = grant.set(approval_id)
    try:
        yield
    finally:
        grant.reset(reset)


@contextmanager
def signed_in_as(operator: str, command: str, arguments: Mapping[str, Any]) -> Iterator[None]:
    """Run the block as `operator`, signed in to the console, doing `command` with
    `arguments` (named as the command line names them): the gate judges them like a token's
    operator running that command, and never as the local operator."""
    reset_who = signed_in.set(operator)
    reset_what = invocation.set(Invocation(command, dict(arguments)))
    try:
        yield
    finally:
        invocation.reset(reset_what)
        signed_in.reset(reset_who)
