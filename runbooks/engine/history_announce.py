"""Who started an action elsewhere (the console, in a thread of its own) learns which history
record it opened: each record opened inside :func:`announcing` is announced by id."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_announce: ContextVar[Callable[[int], None] | None] = ContextVar("announce", default=None)


@contextmanager
def announcing(opened: Callable[[int], None]) -> Iterator[None]:
    """Call `opened(run_id)` for every record opened in this context, once it is committed
    (the first is the action's own: a deploy's phases come after its row)."""
    reset = _announce.set(opened)
    try:
        yield
    finally:
        _announce.reset(reset)


def announce(run_id: int) -> None:
    """Tell the context's listener (if any) that record `run_id` was opened."""
    opened = _announce.get()
    if opened is not None:
        opened(run_id)
