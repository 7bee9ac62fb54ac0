"""Scheduled maintenance: the checks and clean-ups beat runs, and `invoke maintenance.*` by hand.

* ``memory``: the doctor's memory, policy and eviction checks on every Redis; problems are logged
  at WARNING (ERROR when critical) so the log pipeline alerts even without Prometheus.
* ``prune``: failed tasks older than a week (Laravel's queue:prune-failed, with a longer default
  so a weekend's failures are still there on Monday).
* ``locks``: lock keys that can never expire. Every lock is taken with ``SET NX PX``, so a lock key
  without a TTL was left by something else (a restore, a PERSIST, a hand-made key) and would
  block its account forever. Keys with a TTL are never touched: they expire by themselves, and
  deleting a live lock would let two workers contend (SQL's fence check would still hold).
* ``reconcile`` and ``relay`` are the ledger's and the outbox's own functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import redis

from celery_app.bootstrap import Container
from celery_app.infra.boundary import redis_errors
from celery_app.ops import failed_tasks
from celery_app.ops.findings import Level, worst
from celery_app.ops.redis_doctor import diagnose

PRUNE_AFTER_HOURS = 24 * 7
MEMORY_CHECKS = ("policy", "memory", "evictions", "fragmentation", "persistence")
log = logging.getLogger("maqsafy.maintenance")
_DELETE_IF_NO_TTL = """
if redis.call('pttl', KEYS[1]) == -1 then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class MemoryReport:
    """The memory-related findings on every Redis, with the worst level."""

    level: Level
    problems: list[str] = field(default_factory=list)
    servers: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "problems": self.problems, "servers": self.servers}


def memory_check(container: Container) -> MemoryReport:
    """Check memory, policy, evictions and persistence on every Redis; log what is wrong."""
    found = []
    servers = []
    problems = []
    for d in diagnose(container.settings.redis_urls, container.keyspace, timeout=2.0):
        relevant = [f for f in d.findings if f.check in MEMORY_CHECKS or f.level == "critical"]
        found.extend(relevant)
        facts = d.facts
        servers.append(
            {
                "target": d.target,
                "roles": list(d.roles),
                "level": worst(relevant),
                "used_memory": facts.used_memory if facts else None,
                "maxmemory": facts.maxmemory if facts else None,
                "evicted_keys": facts.evicted_keys if facts else None,
            }
        )
        for f in relevant:
            if f.level != "ok":
                problems.append(f"{d.target} {f.check}: {f.message}")
                log.log(
                    logging.ERROR if f.level == "critical" else logging.WARNING,
                    "redis %s (%s) %s: %s; next: %s",
                    d.target,
                    ",".join(d.roles),
                    f.check,
                    f.message,
                    f.next_check,
                )
    return MemoryReport(worst(found), problems, servers)


def prune_failed(container: Container, hours: int = PRUNE_AFTER_HOURS) -> int:
    """Delete failed tasks older than `hours`; return how many."""
    return failed_tasks.prune(container.uow, hours)


def sweep_stale_locks(container: Container, batch: int = 1000) -> int:
    """Delete lock keys that have no TTL (they would never expire); return how many."""
    client = container.redis("locks")
    pattern = container.keyspace.lock("*")
    removed = 0
    delete_if_no_ttl = client.register_script(_DELETE_IF_NO_TTL)
    with redis_errors("lock sweep"):
        keys = list(client.scan_iter(match=pattern, count=batch))
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.pttl(key)
            stale = [k for k, ttl in zip(chunk, pipe.execute(), strict=True) if ttl == -1]
            for key in stale:  # checked again atomically: a lock re-taken since has a TTL
                try:
                    removed += int(delete_if_no_ttl(keys=[key]))
                except redis.exceptions.NoPermissionError:  # another role's (a deploy lock)
                    log.warning("lock key %r has no TTL; this Redis user may not delete it", key)
    if removed:
        log.warning("swept %d lock key(s) that had no TTL", removed)
    return removed
