"""What a reachable Redis says about its resources: memory against maxmemory and the eviction
policy (noeviction for a broker of money queues), persistence, and latency, each a Finding."""

from __future__ import annotations

import statistics
import time

import redis

from celery_app.ops.findings import Finding, Level
from celery_app.ops.redis_causes import CAUSES
from celery_app.ops.redis_facts import RedisFacts

MEMORY_WARN, MEMORY_CRITICAL = 0.80, 0.95
LATENCY_WARN_MS, LATENCY_CRITICAL_MS = 20.0, 200.0
FRAGMENTATION_HIGH, FRAGMENTATION_MIN_BYTES = 1.5, 64 * 2**20


def latency(client: redis.Redis, samples: int = 5) -> float:
    """Median PING round trip in milliseconds."""
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        client.ping()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def memory_findings(facts: RedisFacts, broker: bool) -> list[Finding]:
    found: list[Finding] = []
    used = f"{facts.used_memory / 2**20:.1f} MiB"
    if facts.maxmemory_policy != "noeviction" and broker:
        found.append(
            Finding(
                "policy",
                "warn",
                f"the broker's maxmemory-policy is {facts.maxmemory_policy}, not noeviction",
                (
                    "under memory pressure Redis deletes keys: queued tasks, unacked messages "
                    "and locks can vanish",
                ),
                "CONFIG SET maxmemory-policy noeviction (and in redis.conf); or give the cache "
                "its own Redis with REDIS_CACHE_URL",
                {"policy": facts.maxmemory_policy},
            )
        )
    else:
        found.append(Finding("policy", "ok", f"maxmemory-policy {facts.maxmemory_policy}"))
    ratio = facts.memory_ratio
    if ratio is None:
        found.append(Finding("memory", "ok", f"{used} used, no maxmemory limit"))
    else:
        limit = f"{used} of {facts.maxmemory / 2**20:.1f} MiB ({ratio:.0%})"
        level: Level = (
            "critical" if ratio >= MEMORY_CRITICAL else "warn" if ratio >= MEMORY_WARN else "ok"
        )
        found.append(
            Finding(
                "memory",
                level,
                f"{limit}" + ("" if level == "ok" else ": near maxmemory"),
                CAUSES["oom"].causes if level != "ok" else (),
                CAUSES["oom"].next_check if level != "ok" else "",
                {"ratio": round(ratio, 4)},
            )
        )
    if facts.evicted_keys:
        found.append(
            Finding(
                "evictions",
                "critical" if broker else "warn",
                f"{facts.evicted_keys} keys evicted since Redis started",
                ("maxmemory reached with an evicting policy",)
                + (("the broker may have lost queued messages",) if broker else ()),
                "invoke redis.keyspace; raise maxmemory or use noeviction for the broker",
                {"evicted_keys": facts.evicted_keys},
            )
        )
    else:
        found.append(Finding("evictions", "ok", "no keys evicted"))
    frag = facts.fragmentation_ratio
    if facts.used_memory >= FRAGMENTATION_MIN_BYTES and (frag > FRAGMENTATION_HIGH or frag < 0.9):
        found.append(
            Finding(
                "fragmentation",
                "warn",
                f"mem_fragmentation_ratio {frag:.2f}",
                ("many deletes left memory fragmented (ratio high)",)
                if frag > 1
                else ("Redis memory is swapped out (ratio below 1)",),
                "CONFIG SET activedefrag yes, or restart in a maintenance window",
            )
        )
    return found


def persistence_findings(facts: RedisFacts, broker: bool) -> list[Finding]:
    found: list[Finding] = []
    if not facts.rdb_last_bgsave_ok or not facts.aof_last_write_ok:
        cause = CAUSES["misconf"]
        found.append(
            Finding(
                "persistence",
                "critical",
                "the last save to disk failed: " + cause.summary,
                cause.causes,
                cause.next_check,
            )
        )
    elif broker and facts.persistent is False:
        found.append(
            Finding(
                "persistence",
                "warn",
                "the broker has no persistence (no AOF, no RDB save)",
                (
                    "a Redis restart loses every queued message (payments come back through the "
                    "outbox relay; other tasks are lost)",
                ),
                "CONFIG SET appendonly yes (and in redis.conf)",
            )
        )
    elif broker and facts.persistent is None:
        found.append(
            Finding("persistence", "ok", "AOF off; RDB save unknown (CONFIG denied to this user)")
        )
    elif broker:
        how = "AOF" if facts.aof_enabled else f"RDB save {facts.config and facts.config['save']}"
        found.append(Finding("persistence", "ok", f"persistent ({how})"))
    return found


def latency_finding(ms: float) -> Finding:
    level: Level = (
        "critical" if ms >= LATENCY_CRITICAL_MS else "warn" if ms >= LATENCY_WARN_MS else "ok"
    )
    return Finding(
        "latency",
        level,
        f"PING round trip {ms:.2f} ms (median of 5)",
        ("a slow network path", "Redis busy with slow commands (SLOWLOG GET)")
        if level != "ok"
        else (),
        "redis-cli --latency; SLOWLOG GET 10" if level != "ok" else "",
        {"ms": round(ms, 3)},
    )
