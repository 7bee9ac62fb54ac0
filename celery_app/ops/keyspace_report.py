"""Report the Redis keyspace per role: key count and memory, sampled with SCAN.

Each distinct Redis (roles may share one URL or have their own) is scanned once with SCAN, never
KEYS, and every key is attributed to its role by :meth:`Keyspace.role_of`. Memory is
``MEMORY USAGE`` on up to `sample` keys per role, scaled to the role's key count, so the report
costs the same on a large keyspace as on a small one. A scan stopped at `max_keys` scales the
counts by DBSIZE and says so (``estimated``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from celery_app.infra.boundary import redis_errors
from celery_app.infra.keyspace import Keyspace
from celery_app.settings import ROLES

REPORT_ROLES = (*ROLES, "unknown")


@dataclass
class RoleUsage:
    """Keys and memory of one role; memory is estimated from a sample of keys."""

    role: str
    keys: int = 0
    memory_bytes: int = 0
    sampled: int = 0
    _sample: list[bytes] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class KeyspaceReport:
    roles: list[RoleUsage]
    scanned: int
    estimated: bool

    def as_dict(self) -> dict[str, Any]:
        roles = [{k: v for k, v in asdict(r).items() if not k.startswith("_")} for r in self.roles]
        return {"roles": roles, "scanned": self.scanned, "estimated": self.estimated}


def scan_keyspace(
    clients: list[redis.Redis], keyspace: Keyspace, sample: int = 50, max_keys: int = 200_000
) -> KeyspaceReport:
    """Scan each client's database once and total keys and sampled memory per role."""
    usage = {role: RoleUsage(role) for role in REPORT_ROLES}
    scanned = 0
    estimated = False
    with redis_errors("keyspace report"):
        for client in clients:
            seen: dict[str, int] = dict.fromkeys(REPORT_ROLES, 0)
            for raw in client.scan_iter(count=1000):
                key = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                role = keyspace.role_of(key)
                seen[role] += 1
                if len(usage[role]._sample) < sample:
                    usage[role]._sample.append(raw if isinstance(raw, bytes) else raw.encode())
                if sum(seen.values()) >= max_keys:
                    break
            total = sum(seen.values())
            scanned += total
            size = int(client.dbsize())
            scale = size / total if total and size > total else 1.0
            estimated = estimated or scale > 1.0
            for name, count in seen.items():
                usage[name].keys += round(count * scale)
            _measure(client, usage)
    for measured in usage.values():
        if measured.sampled:
            measured.memory_bytes = round(measured.memory_bytes / measured.sampled * measured.keys)
    return KeyspaceReport(list(usage.values()), scanned, estimated)


def _measure(client: redis.Redis, usage: dict[str, RoleUsage]) -> None:
    """Add MEMORY USAGE of each role's sampled keys (one pipeline) and clear the sample."""
    pipe = client.pipeline(transaction=False)
    owners = []
    for role in usage.values():
        for key in role._sample:
            pipe.memory_usage(key, samples=5)
            owners.append(role)
        role._sample.clear()
    for role, used in zip(owners, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(used, redis.exceptions.NoPermissionError):
            continue  # a key this ACL user may not read (another role's, another app's)
        if isinstance(used, Exception):
            raise used
        if used is not None:  # the key expired between SCAN and MEMORY USAGE
            role.memory_bytes += int(used)
            role.sampled += 1


def report(app: Any, sample: int = 50, max_keys: int = 200_000) -> KeyspaceReport:
    """Report the keyspace of every distinct Redis the container's roles point at (scanning at
    most `max_keys` keys of each; beyond that the counts are estimated)."""
    first_role_per_url: dict[str, str] = {}
    for role in ROLES:
        first_role_per_url.setdefault(app.settings.redis_url(role), role)
    clients = [app.redis(role) for role in first_role_per_url.values()]
    return scan_keyspace(clients, app.keyspace, sample=sample, max_keys=max_keys)
