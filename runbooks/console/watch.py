"""Worker answers read in the background: pages show the last, never wait out a ping.

Celery's broadcast ping waits its whole timeout for replies (there is no knowing how many
workers will answer), so a page that pinged on every view took about a second whatever else it
did (`benchmarks.console`: Overview and Workers at ~1.04 s p95, every other page under 60 ms).
Here one thread per console asks every `every` seconds and pages read what it last heard, with
the time it heard it; the first view waits for the first answer. A read that failed (the broker
down) is raised to the page that asks, as the direct read was.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from celery_app.errors import ServiceUnavailable

T = TypeVar("T")


class Latest(Generic[T]):
    """`read()` run every `every` seconds on a thread started by the first `get()`."""

    def __init__(self, read: Callable[[], T], every: float) -> None:
        self._read, self._every = read, every
        self._changed = threading.Condition()
        self._value: T | None = None
        self._error: Exception | None = None
        self._at: dt.datetime | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def get(self, wait: float) -> tuple[T, dt.datetime]:
        """The last value read and when; waits up to `wait` seconds for the first read."""
        with self._changed:
            self._start()
            if not self._changed.wait_for(lambda: self._at is not None, timeout=wait):
                raise ServiceUnavailable(f"the workers' ping did not return within {wait:g} s")
            if self._error is not None:
                raise self._error
            return self._value, self._at  # type: ignore[return-value]

    def start(self) -> None:
        """Start reading now rather than at the first `get()`."""
        with self._changed:
            self._start()

    def _start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._loop, name="console-watch")
            self._thread.daemon = True
            self._thread.start()

    def close(self) -> None:
        """Stop asking (after the read under way, if any)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self._every + 30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            value: T | None = None
            error: Exception | None = None
            try:
                value = self._read()
            except Exception as exc:  # kept for the pages, which raise it as their own
                error = exc
            with self._changed:
                self._value, self._error = value, error
                self._at = dt.datetime.now(dt.UTC)
                self._changed.notify_all()
            self._stop.wait(self._every)
