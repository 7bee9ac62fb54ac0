"""A running run's output as it happens: the events so far on its page, then server-sent events.

`GET /runs/<id>/events` is a ``text/event-stream`` of the run's events (:mod:`runbooks.engine.
run_events`), each with its stream id, so a browser that reconnects sends ``Last-Event-ID`` and
gets only what it missed (`?after=ID` does the same for the first connection: the page already
shows what came before). The stream ends with the run's `end` event; when the event store lost
the end (or everything), SQL says the run is over and a last `end` is made from its row; and
when the server is told to exit (the browser then reconnects to the next server).
run_live.js (static, no inline script) appends each event's line to the page and reloads it at
the end, when the page shows the history SQL recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from celery_app.errors import InvalidRequest
from runbooks.console import wiring
from runbooks.console.auth import Viewer
from runbooks.console.wiring import Console
from runbooks.engine import history
from runbooks.engine.run_events import EVENT_ID, Event

log = logging.getLogger("runbooks.console.live")

POLL = 0.25  # seconds between reads of a quiet stream
SQL_EVERY = 2.0  # seconds between looks at the run's row (has it ended without an `end`?)
KEEP_ALIVE = 15.0  # seconds of silence before a comment line keeps proxies from closing
MARK = {"failed": "FAILED", "unreachable": "UNREACHABLE"}


def line_of(data: Mapping[str, Any]) -> str:
    """One event as the run page's line (the command line's progress, in words)."""
    kind = data.get("kind")
    if kind == "batch":
        return f"== batch {data.get('batch')}: {', '.join(data.get('hosts') or [])}"
    if kind == "step":
        status = MARK.get(str(data.get("status")), str(data.get("status")))
        if data.get("ignored"):
            status += " (ignored)"
        prefix = "handler: " if data.get("handler") else "rescue: " if data.get("rescue") else ""
        message = f" - {data['message']}" if data.get("message") else ""
        return (
            f"{data.get('host')} #{data.get('position')} {status} {prefix}{data.get('step')} "
            f"({float(data.get('duration') or 0):.2f}s){message}"
        )
    if kind == "host":
        message = f" - {data['message']}" if data.get("message") else ""
        status = MARK.get(str(data.get("status")), str(data.get("status")))
        return f"{data.get('host')} ended {status}{message}"
    if kind == "say":
        return str(data.get("message") or "")
    if kind == "end":
        message = f": {data['message']}" if data.get("message") else ""
        return f"run ended {data.get('status')}{message}"
    return str(kind)


def shown(event: Event) -> dict[str, Any]:
    """What the page gets of an event: its line, status and the step's output."""
    data = event.data
    output = "\n".join(str(data.get(k) or "").rstrip("\n") for k in ("stdout", "stderr")).strip()
    if output == str(data.get("message") or ""):  # one line of output is the step's message
        output = ""
    return {
        "id": event.id,
        "kind": event.kind,
        "status": str(data.get("status") or ""),
        "line": line_of(data),
        "output": output,
    }


def so_far(console: Console, run_id: int) -> tuple[list[dict[str, Any]], str, str]:
    """The run's events already written (shown), the last one's id, and '' or why none can
    be read (the run page says so and still refreshes)."""
    try:
        events = console.events().read(run_id, count=10_000)
    except redis.RedisError as exc:
        log.warning("run %s: live events not read: %s", run_id, exc)
        return (
            [],
            "",
            "the live events cannot be read now; the page shows the history when the run ends",
        )
    return [shown(e) for e in events], events[-1].id if events else "", ""


def _frame(payload: Mapping[str, Any], kind: str, event_id: str = "") -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps(payload)}\n\n"


def _status(console: Console, run_id: int) -> str:
    return history.run_status(console.app.sessions, run_id)


async def stream(request: Request, viewer: Viewer, run_id: int) -> Response:
    """The run's events after Last-Event-ID (or ?after=), as server-sent events."""
    console = wiring.of(request)
    after = request.headers.get("last-event-id") or request.query_params.get("after") or ""
    if after and not EVENT_ID.fullmatch(after):
        raise InvalidRequest(f"bad event id {after[:40]!r}: expected what the stream sent")
    await run_in_threadpool(_status, console, run_id)  # NotFound (404) before any stream
    server = getattr(request.app.state, "server", None)  # uvicorn's, set by serve.server

    def stopping() -> bool:
        return bool(getattr(server, "should_exit", False))

    return StreamingResponse(
        _events(console, run_id, after or None, stopping),
        media_type="text/event-stream",
        headers={"x-accel-buffering": "no"},
    )


async def _events(
    console: Console, run_id: int, after: str | None, stopping: Callable[[], bool]
) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    store = console.events()
    looked = said = time.monotonic()
    ended = ""  # the run's status once SQL says it ended: one more read, then the end
    while True:
        try:
            events = await run_in_threadpool(store.read, run_id, after)
        except redis.RedisError:
            events = []
        for event in events:
            yield _frame(shown(event), event.kind, event.id)
            after = event.id
            if event.kind == "end":
                return
        now = time.monotonic()
        if events:
            said = now
            continue
        if ended:  # SQL closed the run and the store holds no `end`: lost, or never written
            yield _frame({"kind": "end", "status": ended, "line": f"run ended {ended}"}, "end")
            return
        if now - looked >= SQL_EVERY:
            looked = now
            status = await run_in_threadpool(_status, console, run_id)
            if status != "running":
                ended = status
                continue
        if stopping():  # the server is shutting down: the browser reconnects to the next one
            return
        if now - said >= KEEP_ALIVE:
            said = now
            yield ": still running\n\n"
        await asyncio.sleep(POLL)
