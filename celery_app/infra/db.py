"""Engine and unit of work: one transaction per write, rolled back unless committed.

SQLite (the embedded default) runs in WAL mode with `BEGIN IMMEDIATE`, so writers queue on the
database lock instead of failing mid-transaction; PostgreSQL runs READ COMMITTED and the posting
code takes row locks (`SELECT ... FOR UPDATE`) where it reads what it will change.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from celery_app.errors import ServiceUnavailable
from celery_app.infra.private import private_file, sqlite_path

log = logging.getLogger("maqsafy.db")
T = TypeVar("T")
P = ParamSpec("P")


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """Create the engine for `url`, configured for concurrent money writes."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
        path = sqlite_path(url)

        @event.listens_for(engine, "do_connect", once=True)
        def _private(*_: Any) -> None:
            # 0600 before SQLite creates it (its WAL files take its mode); at the first connect
            # only, so a command refused before it touches the database leaves no file behind.
            if path is not None and path.parent.is_dir():
                private_file(path)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN
            cur = dbapi_conn.cursor()
            _while_locked(lambda: cur.execute("PRAGMA journal_mode=WAL"))
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        # A connection the server dropped while it sat in the pool (restart, failover) is
        # replaced at checkout, not handed out to fail its first statement; one round trip.
        pool_pre_ping=True,
        isolation_level="READ COMMITTED",
    )


def _while_locked(statement: Callable[[], object], seconds: float = 30.0) -> None:
    """Run `statement`, retrying while SQLite answers "database is locked" without waiting.

    Opening a WAL database can fail at once, the busy timeout never consulted, while another
    process creates the file, switches it to WAL or cleans up as its last connection closes
    (SQLite's wal.html, "Sometimes queries return SQLITE_BUSY"): 40 of 900 processes opening a
    fresh file six at a time hit it on a quiet machine, and CI saw a command fail with it.
    """
    deadline, pause = time.monotonic() + seconds, 0.005
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def retry_on_disconnect(work: Callable[[], T]) -> T:
    """Run `work`; if its connection turned out dead, run it once more on a fresh connection.

    Only for work that is safe to run twice. A connection can die after the pre-ping (a restart
    mid-transaction); SQLAlchemy then raises with `connection_invalidated` and has already
    invalidated it and every pooled connection opened before it, so the second run connects
    anew. Any other error, or a second disconnect (the server is down), propagates.
    """
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("database connection lost (%s); retrying once", type(exc.orig).__name__)
    return work()


# SQLite's and PostgreSQL's (UndefinedTable) words for a table the schema does not have yet.
MISSING_TABLE = re.compile(
    r'no such table: (?:\w+\.)?(\w+)|relation "(?:\w+\.)?(\w+)" does not exist'
)


def describe_error(exc: DBAPIError, url: str | URL) -> str:
    """One line for an operator: the table `invoke db.migrate` would create, or what to check."""
    lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    missing = MISSING_TABLE.search(reason)
    if missing:
        table = missing.group(1) or missing.group(2)
        return f"the database has no {table} table: run `invoke db.migrate`"
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        shown = "(DATABASE_URL)"
    return (
        f"database {shown} did not answer: {reason} (check DATABASE_URL and that the server runs)"
    )


@contextmanager
def database_errors(engine: Engine) -> Iterator[None]:
    """Translate a database that does not answer (or is not migrated) into ServiceUnavailable."""
    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        raise ServiceUnavailable(describe_error(exc, engine.url)) from exc


def check_database(engine: Engine) -> None:
    """Raise ServiceUnavailable with a one-line reason when the database does not answer."""
    with database_errors(engine), engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


class UnitOfWork:
    """`with UnitOfWork(factory) as uow: ...; uow.commit()`; leaving without commit rolls back."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = self._factory()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back whatever was not committed and detaches loaded objects without
        # expiring them, so values read inside the unit stay readable after it.
        self.session.close()

    def commit(self) -> None:
        self.session.commit()

    @property
    def is_postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"


class KeptConnections:
    """One connection per thread (per worker process), kept for every call of a hot path.

    On PostgreSQL it runs in autocommit mode: the hot paths send single statements, each its
    own transaction, so no BEGIN or COMMIT round trip and no checkout pre-ping per call. A
    connection the server dropped (restart, failover) is replaced and the work run once more on
    the new one: only for work that is safe to run twice. Disposing the engine closes them.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._all: list[Connection] = []
        self._guard = threading.Lock()
        event.listen(engine, "engine_disposed", lambda *_: self.close())

    def get(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._engine.connect()
            if self._engine.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            self._local.conn = conn
            with self._guard:
                self._all.append(conn)
        return conn

    def run(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `work(connection, ...)`; once more on a fresh connection if this one was dead."""
        conn = self.get()
        try:
            return work(conn, *args, **kwargs)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                conn.rollback()
                raise
            log.warning("database connection lost (%s); retrying once", type(exc.orig).__name__)
            conn.close()
        return work(self.get(), *args, **kwargs)

    def close(self) -> None:
        with self._guard:
            held, self._all = self._all, []
        for conn in held:
            with contextlib.suppress(Exception):  # a dead connection's close must not raise
                conn.close()
        self._local = threading.local()


@functools.lru_cache(maxsize=8)
def kept_connections(engine: Engine) -> KeptConnections:
    """The engine's kept connections (one per thread), created on first use."""
    return KeptConnections(engine)
