"""Simulate a PostgreSQL restart for one database: terminate its client backends, on cue.

`Backends.terminate()` does what a failover or restart does to an app's pooled connections,
from a connection of its own. `Seam` arms one termination at the next firing of an engine
event (`checkout`: after the pool's pre-ping passed, before the first statement; `commit`:
after the transaction's statements, before COMMIT reaches the server), so a test can kill the
connection at an exact point of the code under test without mocking the database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

TERMINATE = text(
    "SELECT pid, pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    " AND backend_type = 'client backend'"
)


class Backends:
    """A separate, unpooled connection source to the app's database."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")

    def terminate(self) -> set[int]:
        """Terminate every other client backend of the database; return the pids that exited.

        `pg_terminate_backend(pid, 5000)` waits until the backend has exited, so the caller's
        next statement on a killed connection fails for certain, with no sleep.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(TERMINATE).all()
        return {int(pid) for pid, done in rows if done}

    def close(self) -> None:
        self.engine.dispose()


class Seam:
    """Terminate the database's backends once, at the next `event_name` of `engine` once armed."""

    def __init__(self, engine: Engine, backends: Backends, event_name: str) -> None:
        self.engine = engine
        self.backends = backends
        self.event_name = event_name
        self.armed = False
        self.killed: set[int] = set()
        event.listen(engine, event_name, self._fire)

    def arm(self) -> None:
        self.armed = True

    def _fire(self, *_: Any) -> None:
        if self.armed:
            self.armed = False
            self.killed = self.backends.terminate()

    @property
    def fired(self) -> bool:
        return bool(self.killed)

    def remove(self) -> None:
        event.remove(self.engine, self.event_name, self._fire)
