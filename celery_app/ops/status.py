"""One screen for the environment: Redis, database, workers, queues, failures, outbox, ledger.

Each section is read independently: a section whose service is down says so (and makes the
status critical) while the others are still read. The worst finding gives the exit status that
cron and monitoring use: 0 healthy, 1 warning, 2 critical.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from celery_app.bootstrap import Container
from celery_app.errors import MaqsafyError
from celery_app.infra import migrate
from celery_app.infra.db import check_database
from celery_app.infra.models import PaymentRequest, ReconciliationRun
from celery_app.ops import failed_tasks, queues, workers
from celery_app.ops.findings import Finding, Level, worst
from celery_app.ops.redis_doctor import Diagnosis, diagnose
from celery_app.ops.redis_facts import Endpoint

QUEUE_AGE_WARN = 300.0  # seconds a message may wait before the queue is called backed up
RECONCILE_MAX_AGE = dt.timedelta(hours=2)  # beat reconciles hourly
STUCK_MIN_AGE = 120.0  # a pending request older than this (and 4 relay periods) is stuck

ReadWorkers = Callable[[], list[dict[str, Any]]]


def workers_reader(celery: Celery, timeout: float = 1.0) -> ReadWorkers:
    """Ask the workers through the app's remote control: name, queues, release of each node."""

    def read() -> list[dict[str, Any]]:
        return [node.as_dict() for node in workers.status(celery, timeout)]

    return read


@dataclass
class Status:
    """The environment's state; `findings` say what is wrong and what to check."""

    redis: list[dict[str, Any]] = field(default_factory=list)
    database: dict[str, Any] = field(default_factory=dict)
    workers: list[dict[str, Any]] | None = None  # name, queues, release, active, ...
    queues: list[dict[str, Any]] | None = None
    failed_24h: int | None = None
    outbox: dict[str, Any] | None = None
    reconciliation: dict[str, Any] | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def level(self) -> Level:
        return worst(self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "redis": self.redis,
            "database": self.database,
            "workers": self.workers,
            "queues": self.queues,
            "failed_24h": self.failed_24h,
            "outbox": self.outbox,
            "reconciliation": self.reconciliation,
            "findings": [f.as_dict() for f in self.findings],
        }


def _down(check: str, exc: Exception) -> Finding:
    return Finding(check, "critical", str(exc).splitlines()[0][:200] if str(exc) else repr(exc))


def redis_summary(d: Diagnosis) -> dict[str, Any]:
    """The status line of one Redis server: up, version, memory, policy, clients, evictions."""
    facts = d.facts
    return {
        "target": d.target,
        "roles": list(d.roles),
        "up": facts is not None,
        "level": d.level,
        "version": facts.version if facts else None,
        "used_memory": facts.used_memory if facts else None,
        "maxmemory": facts.maxmemory if facts else None,
        "policy": facts.maxmemory_policy if facts else None,
        "clients": facts.connected_clients if facts else None,
        "evicted_keys": facts.evicted_keys if facts else None,
        "latency_ms": d.latency_ms,
    }


def _redis(app: Container, status: Status) -> bool:
    """Diagnose every Redis; return whether the broker answered."""
    broker_up = False
    for d in diagnose(app.settings.redis_urls, app.keyspace, timeout=1.0):
        status.redis.append(redis_summary(d))
        where = f"redis {d.target} ({', '.join(d.roles)})"
        status.findings.extend(
            Finding(f"{where} {f.check}", f.level, f.message, f.causes, f.next_check)
            for f in d.findings
            if f.level != "ok"
        )
        if "broker" in d.roles and d.facts is not None:
            broker_up = True
    return broker_up


def _database(app: Container, status: Status) -> bool:
    url = app.engine.url.render_as_string(hide_password=True)
    status.database = {"url": url, "up": False, "revision": None, "head": None}
    try:
        check_database(app.engine)
        status.database.update(
            up=True, revision=migrate.current(app.engine), head=migrate.head(app.engine)
        )
    except MaqsafyError as exc:
        status.findings.append(_down("database", exc))
        return False
    if status.database["revision"] is None:
        status.findings.append(
            Finding("database", "critical", "the database has no schema", (), "invoke db.migrate")
        )
        return False
    if status.database["revision"] != status.database["head"]:
        status.findings.append(
            Finding(
                "database",
                "warn",
                f"schema at {status.database['revision']}, code ships {status.database['head']}",
                ("a deploy did not migrate",),
                "invoke db.migrate",
            )
        )
    return True


def _workers(read: ReadWorkers, status: Status) -> None:
    try:
        status.workers = read()
    except Exception as exc:  # kombu/redis errors from the remote-control round trip
        status.findings.append(_down("workers", exc))
        return
    if not status.workers:
        status.findings.append(
            Finding(
                "workers",
                "critical",
                "no worker answered ping: nothing consumes the queues, payments wait",
                ("the workers are stopped or crashed", "the workers use another broker"),
                "invoke workers.status; start or restart the workers",
            )
        )
        return
    if not any("payments" in node["queues"] for node in status.workers):
        status.findings.append(
            Finding(
                "workers",
                "critical",
                "no worker consumes the payments queue",
                ("the workers were started with -Q without payments",),
                "invoke workers.status; restart a worker with -Q payments",
            )
        )
    releases = sorted({str(node["release"]) for node in status.workers})
    if len(releases) > 1:
        status.findings.append(
            Finding(
                "workers",
                "warn",
                f"workers run different releases: {', '.join(releases)}",
                ("a deploy stopped part way", "a host was left out of the last deploy"),
                "invoke deploy.releases; finish the deploy or roll back",
            )
        )


def _queues(app: Container, status: Status) -> None:
    try:
        stats = queues.queue_stats(app.redis("broker"))
    except MaqsafyError as exc:
        status.findings.append(_down("queues", exc))
        return
    status.queues = [s.as_dict() for s in stats]
    for s in stats:
        age = s.oldest_waiting
        if age is not None and age > QUEUE_AGE_WARN:
            status.findings.append(
                Finding(
                    f"queue {s.name}",
                    "warn",
                    f"{s.waiting} waiting, the oldest for {age:.0f}s",
                    ("too few workers for the load", "a worker stuck on a long task"),
                    "invoke queue.size; invoke workers.status",
                )
            )


def _sql_sections(app: Container, status: Status, now: dt.datetime) -> None:
    status.failed_24h = failed_tasks.count_failed(app.uow, since=now - dt.timedelta(hours=24))
    if status.failed_24h:
        status.findings.append(
            Finding(
                "failed tasks",
                "warn",
                f"{status.failed_24h} task(s) failed in the last 24 hours",
                ("see each failure's exception",),
                "invoke failed.list --since 24h",
            )
        )
    stuck_age = max(STUCK_MIN_AGE, 4.0 * app.settings.relay_after_seconds)
    with app.uow() as work:
        pending, oldest = work.session.execute(
            select(func.count(), func.min(PaymentRequest.created_at)).where(
                PaymentRequest.status == "pending"
            )
        ).one()
        last = work.session.scalar(
            select(ReconciliationRun).order_by(ReconciliationRun.id.desc()).limit(1)
        )
    oldest_age = (now - failed_tasks.utc(oldest)).total_seconds() if oldest else None
    status.outbox = {"pending": int(pending), "oldest_seconds": oldest_age}
    if oldest_age is not None and oldest_age > stuck_age:
        status.findings.append(
            Finding(
                "outbox",
                "warn",
                f"{pending} payment request(s) pending, the oldest for {oldest_age:.0f}s",
                ("no worker posts them", "the outbox relay is not running (beat stopped)"),
                "invoke workers.status; invoke maintenance.relay",
            )
        )
    if last is None:
        status.findings.append(
            Finding(
                "reconciliation",
                "warn",
                "the ledger was never reconciled",
                (),
                "invoke maintenance.reconcile",
            )
        )
        return
    ran_at = failed_tasks.utc(last.ran_at)
    status.reconciliation = {
        "ran_at": ran_at.isoformat(),
        "age_seconds": (now - ran_at).total_seconds(),
        "discrepancies": last.discrepancies,
        "accounts": last.accounts,
    }
    if last.discrepancies:
        status.findings.append(
            Finding(
                "reconciliation",
                "critical",
                f"the last reconciliation found {last.discrepancies} discrepancies",
                ("a balance differs from the sum of its entries, or a posting is unbalanced",),
                "read reconciliation_runs.details; stop settlement until explained",
            )
        )
    elif now - ran_at > RECONCILE_MAX_AGE:
        status.findings.append(
            Finding(
                "reconciliation",
                "warn",
                f"the last reconciliation ran at {ran_at:%H:%M}Z",
                ("beat is not running",),
                "invoke maintenance.reconcile",
            )
        )


def collect(app: Container, read: ReadWorkers, now: dt.datetime | None = None) -> Status:
    """Read every section; a section that cannot be read adds a critical finding."""
    now = now or dt.datetime.now(dt.UTC)
    status = Status()
    if _redis(app, status):
        _workers(read, status)
        _queues(app, status)
    else:
        status.findings.append(
            Finding("workers", "critical", "not checked: the broker Redis does not answer")
        )
    if _database(app, status):
        try:
            _sql_sections(app, status, now)
        except (MaqsafyError, SQLAlchemyError) as exc:
            status.findings.append(_down("database", exc))
    return status


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}M"


def render(d: dict[str, Any]) -> list[str]:
    """The status screen as lines for people."""
    lines = [f"status: {d['level'].upper()}"]
    for r in d["redis"]:
        state = (
            f"up, Redis {r['version']}, memory {_mib(r['used_memory'])}"
            f"/{_mib(r['maxmemory']) if r['maxmemory'] else 'no limit'}, {r['policy']}, "
            f"{r['clients']} clients, {r['evicted_keys']} evicted"
            if r["up"]
            else "DOWN"
        )
        lines.append(
            f"redis     {Endpoint.parse(r['target']).instance} ({','.join(r['roles'])}): {state}"
        )
    db = d["database"]
    lines.append(
        f"database  {db['url']}: " + (f"up, schema {db['revision']}" if db["up"] else "DOWN")
    )
    workers = d["workers"]
    if workers is None:
        lines.append("workers   not checked")
    else:
        shown = [f"{w['name']} ({w['release']}: {','.join(w['queues'])})" for w in workers]
        lines.append(
            f"workers   {len(workers)} online" + (f": {', '.join(shown)}" if shown else "")
        )
    for q in d["queues"] or []:
        age = q["oldest_waiting"]
        lines.append(
            f"queue     {q['name']}: {q['waiting']} waiting, {q['unacked']} unacked"
            + (f", oldest {age:.0f}s" if age is not None else "")
        )
    if d["failed_24h"] is not None:
        lines.append(f"failed    {d['failed_24h']} in the last 24h")
    if d["outbox"] is not None:
        lines.append(f"outbox    {d['outbox']['pending']} pending request(s)")
    rec = d["reconciliation"]
    if rec is not None:
        lines.append(
            f"ledger    reconciled {rec['age_seconds']:.0f}s ago, "
            f"{rec['discrepancies']} discrepancies"
        )
    return lines
