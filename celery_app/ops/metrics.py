"""A Prometheus exporter: Redis health, queue depth and age, workers, failures, outbox, ledger.

One custom collector reads :func:`celery_app.ops.status.collect` on every scrape, so the metrics
and `invoke status` never disagree. Queue depth and the oldest message's age are what Flower
does not export. Labels name servers by host:port (never a URL: a URL may hold a password).
Alert rules over these names ship in ``deploy/prometheus/alerts.yml``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from celery_app.errors import InvalidRequest
from celery_app.inputs import listen_addresses, shown
from celery_app.ops.findings import EXIT_CODES
from celery_app.ops.redis_facts import Endpoint
from celery_app.ops.status import Status

P = "maqsafy_"


CACHE_SECONDS = 5.0  # how long one status read answers the scrapes


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, labels=list(labels))


def _redis_metrics(status: Status) -> Iterator[Metric]:
    labels = ("server", "roles")
    up = _gauge("redis_up", "1 when the Redis server answered PING and INFO", labels)
    health = _gauge("redis_health", "the doctor's verdict: 0 ok, 1 warning, 2 critical", labels)
    used = _gauge("redis_used_memory_bytes", "used_memory from INFO", labels)
    limit = _gauge("redis_maxmemory_bytes", "maxmemory (0: no limit)", labels)
    noeviction = _gauge("redis_noeviction", "1 when maxmemory-policy is noeviction", labels)
    clients = _gauge("redis_connected_clients", "connected_clients from INFO", labels)
    latency = _gauge("redis_ping_latency_seconds", "median PING round trip", labels)
    evicted = CounterMetricFamily(
        P + "redis_evicted_keys", "keys evicted since the server started", labels=list(labels)
    )
    for r in status.redis:
        key = [Endpoint.parse(r["target"]).instance, ",".join(r["roles"])]
        up.add_metric(key, 1.0 if r["up"] else 0.0)
        health.add_metric(key, EXIT_CODES[r["level"]])
        if r["up"]:
            used.add_metric(key, r["used_memory"])
            limit.add_metric(key, r["maxmemory"])
            noeviction.add_metric(key, 1.0 if r["policy"] == "noeviction" else 0.0)
            clients.add_metric(key, r["clients"])
            evicted.add_metric(key, r["evicted_keys"])
        if r["latency_ms"] is not None:
            latency.add_metric(key, r["latency_ms"] / 1000)
    yield from (up, health, used, limit, noeviction, clients, latency, evicted)


def _queue_metrics(status: Status) -> Iterator[Metric]:
    waiting = _gauge("queue_waiting", "messages waiting in the queue", ("queue",))
    unacked = _gauge("queue_unacked", "messages delivered to a worker, not yet acked", ("queue",))
    oldest = _gauge(
        "queue_oldest_waiting_seconds", "age of the oldest stamped waiting message", ("queue",)
    )
    oldest_unacked = _gauge(
        "queue_oldest_unacked_seconds", "time since the oldest unacked delivery", ("queue",)
    )
    for q in status.queues or []:
        waiting.add_metric([q["name"]], q["waiting"])
        unacked.add_metric([q["name"]], q["unacked"])
        oldest.add_metric([q["name"]], q["oldest_waiting"] or 0.0)
        oldest_unacked.add_metric([q["name"]], q["oldest_unacked"] or 0.0)
    yield from (waiting, unacked, oldest, oldest_unacked)


def _sql_metrics(status: Status) -> Iterator[Metric]:
    db = _gauge("database_up", "1 when the database answered and has the schema")
    db.add_metric([], 1.0 if status.database.get("up") else 0.0)
    yield db
    if status.failed_24h is not None:
        failed = _gauge("failed_tasks_24h", "tasks that finally failed in the last 24 hours")
        failed.add_metric([], status.failed_24h)
        yield failed
    if status.outbox is not None:
        pending = _gauge("outbox_pending", "payment requests still pending (outbox backlog)")
        pending.add_metric([], status.outbox["pending"])
        oldest = _gauge("outbox_oldest_pending_seconds", "age of the oldest pending request")
        oldest.add_metric([], status.outbox["oldest_seconds"] or 0.0)
        yield from (pending, oldest)
    if status.reconciliation is not None:
        rec = status.reconciliation
        last = _gauge(
            "reconciliation_last_run_timestamp_seconds", "when the ledger last reconciled"
        )
        last.add_metric([], time.time() - rec["age_seconds"])
        found = _gauge(
            "reconciliation_discrepancies", "discrepancies the last reconciliation found"
        )
        found.add_metric([], rec["discrepancies"])
        yield from (last, found)


class StatusCollector(Collector):
    """Collects the environment's status on every scrape."""

    def __init__(self, read: Callable[[], Status]) -> None:
        self._read = read
        self._lock = threading.Lock()  # one status read at a time, however many scrapers

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            start = time.perf_counter()
            status = self._read()
            took = time.perf_counter() - start
        overall = _gauge("status", "invoke status's verdict: 0 ok, 1 warning, 2 critical")
        overall.add_metric([], EXIT_CODES[status.level])
        yield overall
        yield from _redis_metrics(status)
        workers = _gauge("workers_online", "worker nodes that answered ping")
        info = _gauge(
            "worker_info", "1 per worker node, labelled with its release", ("node", "release")
        )
        if status.workers is not None:
            workers.add_metric([], len(status.workers))
            for node in status.workers:
                info.add_metric([node["name"], str(node["release"])], 1.0)
        yield from (workers, info)
        yield from _queue_metrics(status)
        yield from _sql_metrics(status)
        duration = _gauge("scrape_duration_seconds", "how long reading the status took")
        duration.add_metric([], took)
        yield duration


def listen_host(host: str) -> bool:
    """Check where the exporter may listen; True when `host` is loopback only.

    Refused (InvalidRequest): what is neither a host name nor an IP address, a name that does
    not resolve, and any form of the wildcard (``0``, ``*``, ``0.0.0.0``, ``::``), which would
    bind every address of the machine: the metrics stay internal, like Redis itself.
    """
    wildcard = InvalidRequest(
        f"--host {shown(host)} binds every address of this machine: the metrics would be "
        "public; give an internal address of this host (default 127.0.0.1)"
    )
    if host == "*":
        raise wildcard
    addresses = set(listen_addresses(host))
    if any(address.is_unspecified for address in addresses):
        raise wildcard
    return all(address.is_loopback for address in addresses)


def cached(read: Callable[[], Status], seconds: float = CACHE_SECONDS) -> Callable[[], Status]:
    """`read`, answered from its last result for `seconds`: a scrape every second (or several
    Prometheus servers) costs one status read (a 1 s worker ping) per window, not one each."""
    lock = threading.Lock()
    last: list[tuple[float, Status]] = []

    def read_cached() -> Status:
        with lock:
            if last and time.monotonic() - last[0][0] < seconds:
                return last[0][1]
            value = read()
            last[:] = [(time.monotonic(), value)]
            return value

    return read_cached


def serve(read: Callable[[], Status], port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Serve /metrics on host:port in a background thread; return the server (shutdown() it).

    The status behind it is read at most once per :data:`CACHE_SECONDS`."""
    registry = CollectorRegistry()
    registry.register(StatusCollector(cached(read)))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
