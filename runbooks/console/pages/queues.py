"""Queues: each queue's waiting and unacked messages and their oldest ages (`invoke queue.size`,
the same `celery_app.ops.queues.queue_stats` on the broker role), and charts of the last hours
from the samples the console keeps (`celery_app.ops.queue_samples`). Read-only."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.errors import InvalidRequest
from celery_app.infra.keyspace import QUEUES
from celery_app.inputs import shown
from celery_app.ops import queue_samples, queues
from celery_app.ops.queue_samples import FIELDS, Sample
from runbooks.console import chart, wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render

HOURS = ("1", "6", "24")  # the chart's windows (samples are kept 24 h)
DEFAULT_HOURS = "6"


def window(request: Request) -> int:
    """`?hours=`: one of HOURS; InvalidRequest (400) naming them otherwise."""
    hours = request.query_params.get("hours", DEFAULT_HOURS)
    if hours not in HOURS:
        raise InvalidRequest(f"hours: expected one of {', '.join(HOURS)}, got {shown(hours)}")
    return int(hours)


def series(samples: list[Sample]) -> dict[str, list[tuple[str, list[chart.Point]]]]:
    """Per field of FIELDS, one (queue, points) per declared queue; an oldest age is 0 where
    its queue was empty and None (a gap) where it was not known."""
    found: dict[str, list[tuple[str, list[chart.Point]]]] = {f: [] for f in FIELDS}
    for queue in QUEUES:
        rows = [(s.at, s.queues[queue]) for s in samples if queue in s.queues]
        waiting: list[chart.Point] = [(at, r[0]) for at, r in rows]
        unacked: list[chart.Point] = [(at, r[1]) for at, r in rows]
        found["waiting"].append((queue, waiting))
        found["unacked"].append((queue, unacked))
        found["oldest_waiting"].append(
            (queue, [(at, 0.0 if r[0] == 0 else r[2]) for at, r in rows])
        )
        found["oldest_unacked"].append(
            (queue, [(at, 0.0 if r[1] == 0 else r[3]) for at, r in rows])
        )
    return found


TITLES = {
    "waiting": "Waiting messages",
    "unacked": "Unacked messages",
    "oldest_waiting": "Oldest waiting message's age",
    "oldest_unacked": "Oldest unacked message's age",
}


def charts(samples: list[Sample], start: float, end: float) -> list[chart.Chart]:
    """Waiting, unacked, oldest waiting and oldest unacked: one line per queue each."""
    drawn = []
    for name, lines in series(samples).items():
        counting = not name.startswith("oldest")
        drawn.append(
            chart.chart(
                "chart-" + name.replace("_", "-"),
                TITLES[name],
                lines,
                start,
                end,
                chart.count if counting else chart.duration,
                chart.COUNT_STEPS if counting else chart.AGE_STEPS,
            )
        )
    return drawn


@dataclass(frozen=True)
class Drawn:
    """A window's charts, how many samples they were drawn from and the first and last time."""

    charts: list[chart.Chart]
    count: int
    span: list[dt.datetime]


def drawn(console: wiring.Console, hours: int, now: float) -> Drawn:
    """The charts of the last `hours`, drawn again only when the samples or the minute changed:
    the window ends at the next minute, so views within a minute over the same samples (the
    newest member and the count say so) are the same drawing, kept on the console per window."""
    broker, keyspace = console.app.redis("broker"), console.app.keyspace
    end = queue_samples.minute(now) + queue_samples.STEP
    key = (end, queue_samples.newest(broker, keyspace))
    kept = console.drawings.get(hours)
    if kept is not None and kept[0] == key:
        return cast(Drawn, kept[1])
    samples = queue_samples.read(broker, keyspace, end - hours * 3600)
    made = Drawn(
        charts(samples, end - hours * 3600, end) if samples else [],
        len(samples),
        [dt.datetime.fromtimestamp(s.at, dt.UTC) for s in samples[:1] + samples[-1:]],
    )
    console.drawings[hours] = (key, made)
    return made


async def queue_sizes(request: Request, viewer: Viewer) -> Response:
    """Per queue: waiting, unacked, the oldest waiting and unacked message's age; charts of
    the last `?hours=` (1, 6 or 24) from the kept samples."""
    hours = window(request)
    console = wiring.of(request)

    def read() -> tuple[list[queues.QueueStats], Drawn]:
        now = time.time()
        stats = queues.queue_stats(console.app.redis("broker"), clock=lambda: now)
        return stats, drawn(console, hours, now)

    stats, made = await run_in_threadpool(read)
    return render(
        request,
        "queues.html",
        viewer,
        queues=[s.as_dict() for s in stats],
        hours=hours,
        windows=HOURS,
        count=made.count,
        span=made.span,
        charts=made.charts,
    )
