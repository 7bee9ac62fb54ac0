"""A run's progress as it happens, for another process to watch: one Redis stream per run.

The history in SQL is the record (written when hosts and runs end, :mod:`history`); this is only
the live view the console's run page streams while a run is running. Every recorded run appends
its events here, keyed by its history run id: a batch starting, each step's result (its output
redacted with the run's redactor, clipped), each host's end, and the run's end. Local runs
(`invoke run`), runs an ops worker executes (`run --remote`) and each slice of a sliced run write
to the same stream of their run.

The stream lives on the **broker's** Redis (role ``broker``): the one every ops worker and the
console reach by construction (workers consume ``ops`` from it, the console sends to it). Key
``<prefix>:runevents:<run_id>``; at most :data:`MAX_EVENTS` entries (older ones trimmed), expiring
:data:`KEEP` seconds after the last event (the run's end, for a run that ends).

A lost event store never fails nor holds up a run: the client has 1 s timeouts, a failure is
logged once and the store is left alone for :data:`BACKOFF` seconds, and events in between are
dropped (the page then shows SQL's history when the run ends).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from celery_app.infra.keyspace import Keyspace
from runbooks.engine.redact import Redactor
from runbooks.engine.results import HostResult, StepResult

log = logging.getLogger("runbooks.engine.run_events")

# Bounded because the broker's Redis keeps queues under `noeviction`: at most ~10 MB a run.
MAX_EVENTS = 5_000  # per run (the oldest trimmed): five hundred hosts of ten steps
KEEP = 6 * 3600  # seconds a run's stream outlives its last event
BACKOFF = 30.0  # seconds the store is left alone after it failed
OUTPUT = 1_000  # last characters of a step's stdout and of its stderr an event carries (SQL
# keeps 16,000 of each when the host ends)
TIMEOUT = 1.0
EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")  # a stream entry id, as Last-Event-ID sends it back


@dataclass(frozen=True)
class Event:
    """One entry of a run's stream: its id (`1733100000000-0`) and what happened."""

    id: str
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))


class RunEvents:
    """The event streams of runs on one Redis (see the module docstring)."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace) -> None:
        self.client = client
        self.keyspace = keyspace
        self._down_until = 0.0
        self._lock = threading.Lock()

    @classmethod
    def for_app(cls, app: Any) -> RunEvents:
        """The store on `app`'s broker Redis, with a client of its own (short timeouts)."""
        client = redis.Redis.from_url(
            app.settings.redis_url("broker"),
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            health_check_interval=30,
        )
        return cls(client, app.keyspace)

    def key(self, run_id: int) -> str:
        return self.keyspace.run_events(run_id)

    def append(self, run_id: int, data: Mapping[str, Any]) -> None:
        """Add one event to run `run_id`'s stream; a failure is logged, never raised."""
        if time.monotonic() < self._down_until:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.key(run_id), {"e": json.dumps(data, default=str)}, maxlen=MAX_EVENTS)
            pipe.expire(self.key(run_id), KEEP)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            with self._lock:
                if time.monotonic() >= self._down_until:
                    log.warning(
                        "run %s: live events not written (%s); the run goes on, its history "
                        "is in SQL; retrying in %.0f s",
                        run_id,
                        exc,
                        BACKOFF,
                    )
                self._down_until = time.monotonic() + BACKOFF

    def read(self, run_id: int, after: str | None = None, count: int = 500) -> list[Event]:
        """Run `run_id`'s events after entry id `after` (all from the first without), oldest
        first; raises redis errors (the reader decides what a lost store means)."""
        start = f"({after}" if after else "-"
        entries: Any = self.client.xrange(self.key(run_id), start, "+", count=count)
        return [Event(_text(entry_id), json.loads(fields[b"e"])) for entry_id, fields in entries]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def step_event(result: StepResult, redactor: Redactor) -> dict[str, Any]:
    """A step's result as its event: what the run page's step line shows, redacted."""
    return {
        "kind": "step",
        "host": result.host,
        "position": result.position,
        "step": redactor.text(result.step)[:300],
        "action": result.action,
        "status": result.status,
        "message": redactor.text(result.message),
        "rc": result.rc,
        "attempts": result.attempts,
        "duration": round(result.duration, 3),
        "ignored": result.ignored,
        "rescue": result.rescue,
        "handler": result.handler,
        "stdout": redactor.text(result.stdout)[-OUTPUT:],
        "stderr": redactor.text(result.stderr)[-OUTPUT:],
    }


class EventWriter:
    """The executor's listener that appends run `run_id`'s progress to its event stream."""

    def __init__(self, events: RunEvents, run_id: int, redactor: Redactor) -> None:
        self.events, self.run_id, self.redactor = events, run_id, redactor

    def batch(self, index: int, hosts: list[str]) -> None:
        self.events.append(self.run_id, {"kind": "batch", "batch": index, "hosts": hosts})

    def step(self, result: StepResult) -> None:
        self.events.append(self.run_id, step_event(result, self.redactor))

    def host(self, result: HostResult) -> None:
        self.events.append(
            self.run_id,
            {
                "kind": "host",
                "host": result.host,
                "status": result.status,
                "cause": result.cause,
                "message": self.redactor.text(result.message),
                "duration": round(result.duration, 3),
            },
        )

    def say(self, line: str) -> None:
        """A line of the command's own progress (a deploy's phases), redacted."""
        self.events.append(self.run_id, {"kind": "say", "message": self.redactor.text(line)})

    def end(self, status: str, message: str = "") -> None:
        """The run ended (the stream's last event): its status as the history closed it."""
        self.events.append(
            self.run_id, {"kind": "end", "status": status, "message": self.redactor.text(message)}
        )


def writer(app: Any, run_id: int, redactor: Redactor) -> EventWriter:
    """The event writer of run `run_id` on `app`'s store (one client per process)."""
    return EventWriter(store(app), run_id, redactor)


_stores: dict[tuple[str, str], RunEvents] = {}
_stores_lock = threading.Lock()


def store(app: Any) -> RunEvents:
    """`app`'s event store (one client per broker URL in a process)."""
    where = (app.settings.redis_url("broker"), app.keyspace.prefix)
    with _stores_lock:
        store = _stores.get(where)
        if store is None:
            store = _stores[where] = RunEvents.for_app(app)
        return store
