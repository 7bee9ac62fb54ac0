"""An action from the console, done as the command line does it: as the signed-in operator,
through the access gate, recorded in the run history before it acts.

The history record names the command (`failed.retry`), so the gate judges the operator's
role for it exactly as it would judge their token running `invoke failed.retry`, and asks for
an approval where the command would. The record's arguments say it came from the console.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from celery_app.errors import InvalidRequest
from celery_app.inputs import record_id
from runbooks.access import roles
from runbooks.access.context import signed_in_as
from runbooks.console.auth import Viewer
from runbooks.console.wiring import Console
from runbooks.engine import history

T = TypeVar("T")
LOCAL = "local"  # the console acts on its own database and Redis, as the commands do here


@dataclass(frozen=True)
class Outcome:
    """The history record the action closed, and its message."""

    run_id: int
    message: str


def may(viewer: Viewer, command: str) -> bool:
    """Whether the viewer's role allows `command` (to show its button; the gate decides)."""
    return roles.allows(viewer.role, roles.needed_role(command, command))


def act(
    console: Console,
    viewer: Viewer,
    command: str,
    typed: Mapping[str, Any],
    work: Callable[[], T],
    said: Callable[[T], str],
    **recorded: Any,
) -> Outcome:
    """Run `work()` recorded as `command` with the arguments `recorded`, as `viewer`.

    `typed` is the command's arguments as the command line names them (an approval request
    keeps them, to be run with `invoke approvals.run`). AccessDenied, ApprovalPending and
    HistoryError come from the record's opening: then `work` never ran.
    """
    with (
        signed_in_as(viewer.name, command, typed),
        history.recording(
            console.app.sessions,
            command,
            environment=LOCAL,
            arguments={**recorded, "via": "console"},
            redactor=console.redactor,
        ) as record,
    ):
        value = work()
        record.message = said(value)
    return Outcome(record.run_id, record.message)


def banner(
    console: Console, run_text: str | None, actions: tuple[str, ...]
) -> dict[str, Any] | None:
    """The history record an action of a page just closed (`?run=N`), to say what it did;
    None for any other run (a crafted `?run=` names no record of another page's actions)."""
    if not run_text:
        return None
    try:
        run = history.get_run(console.app.sessions, record_id(run_text, "run", "the history"))
    except (InvalidRequest, history.NotFound):
        return None
    return run if run["name"] in actions else None
