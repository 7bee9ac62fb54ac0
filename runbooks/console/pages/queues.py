"""Queues: each queue's waiting and unacked messages and their oldest ages (`invoke queue.size`,
the same `celery_app.ops.queues.queue_stats` on the broker role), and charts of the last hours
from the samples the console keeps (`celery_app.ops.queue_samples`). Read-only."""

from __future__ import annotations

import datetime as dt
import time

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


async def queue_sizes(request: Request, viewer: Viewer) -> Response:
    """Per queue: waiting, unacked, the oldest waiting and unacked message's age; charts of
    the last `?hours=` (1, 6 or 24) from the kept samples."""
    hours = window(request)
    console = wiring.of(request)
    broker = console.app.redis("broker")

    def read() -> tuple[list[queues.QueueStats], list[Sample], float]:
        now = time.time()
        stats = queues.queue_stats(broker, clock=lambda: now)
        return stats, queue_samples.read(broker, console.app.keyspace, now - hours * 3600), now

    stats, samples, now = await run_in_threadpool(read)
    return render(
        request,
        "queues.html",
        viewer,
        queues=[s.as_dict() for s in stats],
        hours=hours,
        windows=HOURS,
        samples=samples,
        span=[dt.datetime.fromtimestamp(s.at, dt.UTC) for s in samples[:1] + samples[-1:]],
        charts=charts(samples, now - hours * 3600, now) if samples else [],
    )
