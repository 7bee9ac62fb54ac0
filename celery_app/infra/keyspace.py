"""The Redis keyspace map: every key the project writes belongs to exactly one role.

Roles are told apart by prefix (and by database or instance where each role has its own URL).
The broker's keys are Celery's and kombu's own names; everything else starts with the
configured prefix (``maqsafy`` by default) and the role's segment.
"""

from __future__ import annotations

from dataclasses import dataclass

from celery_app.errors import ConfigError

# Queues the Celery app declares; the broker role owns these names and their kombu companions.
QUEUES = ("payments", "maintenance", "ops")
MONEY_QUEUES = ("payments",)
# kombu keeps the messages a consumer holds unacknowledged in a hash, a zset of delivery times and
# a mutex, and every consumer restores overdue ones into the queue they came from. The ops runner
# and the operator's tool keep their own three (by their Redis user, see celery.py), so no other
# role's user can plant a message that they would restore into `ops`.
UNACKED_KEYS = ("unacked", "unacked_index", "unacked_mutex")
OPS_UNACKED_KEYS = ("ops.unacked", "ops.unacked_index", "ops.unacked_mutex")
ADMIN_UNACKED_KEYS = ("admin.unacked", "admin.unacked_index", "admin.unacked_mutex")
BROKER_EXACT = (*UNACKED_KEYS, *OPS_UNACKED_KEYS, *ADMIN_UNACKED_KEYS, *QUEUES)
# kombu's bindings, binding_permanent.* and binding_deadlines; Celery's result keys.
BROKER_PREFIXES = ("_kombu.", "celery-task-meta-", "celery-taskset-meta-")
PIDBOX_SUFFIX = ".celery.pidbox"  # each worker node's remote-control queue, and reply queues


def queue_names(text: str) -> list[str]:
    """The queues in comma-separated `text`, each one the app declares; ConfigError otherwise
    (a worker on an unknown queue would start, answer ping, and consume nothing)."""
    names = [q.strip() for q in text.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if unknown or not names:
        got = f"unknown queue {', '.join(map(repr, unknown))}" if unknown else "no queue"
        raise ConfigError(f"--queues: {got}; the known queues are {', '.join(QUEUES)}")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Keyspace:
    """Builds keys for each role and says which role a key belongs to."""

    prefix: str = "maqsafy"

    def cache(self, namespace: str, key: str) -> str:
        return f"{self.prefix}:cache:{namespace}:{key}"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}"

    def session_index(self, user_id: str) -> str:
        """The ZSET of one user's session ids, scored by expiry (epoch milliseconds)."""
        return f"{self.prefix}:sessions:user:{user_id}"

    def ratelimit(self, name: str) -> str:
        return f"{self.prefix}:rl:{name}"

    def lock(self, resource: str) -> str:
        return f"{self.prefix}:lock:{resource}"

    def run_events(self, run_id: int | str) -> str:
        """A runbook run's live progress (a stream, runbooks.engine.run_events); it lives on the
        broker's Redis, which every ops worker and the console reach, and counts as broker."""
        return f"{self.prefix}:runevents:{run_id}"

    @property
    def fence_counter(self) -> str:
        return f"{self.prefix}:fence:seq"

    @property
    def queue_samples(self) -> str:
        """The queues' samples for the console's chart (celery_app/ops/queue_samples.py): on
        the broker's Redis, the broker role's, next to the queues they describe."""
        return f"{self.prefix}:samples:queues"

    def patterns(self, role: str) -> tuple[str, ...]:
        """Glob patterns that cover every key of `role` (cache, sessions, ratelimit, locks)."""
        p = self.prefix
        by_role = {
            "cache": (f"{p}:cache:*",),
            "sessions": (f"{p}:session:*", f"{p}:sessions:*"),
            "ratelimit": (f"{p}:rl:*",),
            "locks": (f"{p}:lock:*", f"{p}:fence:*"),
        }
        return by_role[role]

    def role_of(self, key: str) -> str:
        """Return the role owning `key`: broker, cache, sessions, ratelimit, locks or unknown."""
        segment = (
            key[len(self.prefix) + 1 :].split(":", 1)[0]
            if key.startswith(self.prefix + ":")
            else ""
        )
        by_segment = {
            "cache": "cache",
            "session": "sessions",
            "sessions": "sessions",
            "rl": "ratelimit",
            "lock": "locks",
            "fence": "locks",
            "runevents": "broker",
            "samples": "broker",
        }
        if segment in by_segment:
            return by_segment[segment]
        base = key.split("\x06\x16", 1)[0]  # kombu's priority-queue suffix separator
        if base in BROKER_EXACT or key.startswith(BROKER_PREFIXES) or base.endswith(PIDBOX_SUFFIX):
            return "broker"
        return "unknown"
