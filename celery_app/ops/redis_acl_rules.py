"""The least-privilege rules of each Redis role user (producer, worker, ops, admin), as a value:
what each process needs on Redis and why (see redis_acl's docstring), rendered for redis-cli."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kombu.pidbox import Mailbox
from kombu.transport.redis import Channel

from celery_app.errors import InvalidRequest
from celery_app.infra.keyspace import (
    ADMIN_UNACKED_KEYS,
    OPS_UNACKED_KEYS,
    PIDBOX_SUFFIX,
    UNACKED_KEYS,
    Keyspace,
)
from celery_app.ops.queues import priority_lists
from celery_app.ops.redis_facts import Endpoint

PROBE_USER = "maqsafy-acl-probe"
MAILBOX = "celery"  # Celery's remote-control namespace
CONTROL_EXCHANGE = Mailbox.exchange_fmt % MAILBOX  # celery.pidbox (fanout: PUBLISH/PSUBSCRIBE)
REPLY_EXCHANGE = Mailbox.reply_exchange_fmt % MAILBOX  # reply.celery.pidbox (direct: lists)
NODE_QUEUES = f"*@*{PIDBOX_SUFFIX}"  # each worker node's control queue, <name>@<host>.celery.pidbox
REPLY_QUEUES = f"*.{REPLY_EXCHANGE}"  # a caller's reply queue, <uuid>.reply.celery.pidbox
DEADLINES = Channel.keyprefix_binding_deadlines  # when each expiring binding table is swept

# Commands every role's client sends on connecting (redis-py, kombu), and nothing else there.
CONNECT = "+ping +echo +hello +auth +client|setname +client|getname +client|id"
# The stores' data commands, on the root's keys only.
DATA = (
    "+@read +@write +@keyspace +@string +@list +@hash +@set +@sortedset +@transaction"
    " -@dangerous -@blocking -@pubsub -function -move -copy"
    " +eval +evalsha +script|load +script|exists +time"
)
# What kombu runs on each kind of key.
CONSUME = "+brpop +rpop +lpush +rpush +llen"
UNACKED = "+hset +hget +hdel +zadd +zrem +zrange +zrangebyscore +set +get +del +watch"
SCRIPT = "+eval +evalsha"
BINDINGS = "+sadd +smembers"
CONTROL = "+sadd +srem +smembers +zadd +zrangebyscore +zrem +exists +del"
NODE = "+llen +del +exists +pexpire +rpop"
EVENTS = "+xadd +expire +xrange"  # a run's live events: written by whoever runs it, read by all


@dataclass(frozen=True)
class RoleUser:
    """A role's Redis user: its name, where its password comes from, what it is for, and the
    unacked keys kombu uses in its processes (see :func:`unacked_keys`)."""

    role: str
    name: str
    password_env: str
    purpose: str
    unacked: tuple[str, str, str] = UNACKED_KEYS


PRODUCER = RoleUser(
    "producer",
    "maqsafy-producer",
    "MAQSAFY_REDIS_PRODUCER_PASSWORD",
    "the web app: enqueue to payments and maintenance; cache, sessions, rate limits",
)
WORKER = RoleUser(
    "worker",
    "maqsafy-worker",
    "MAQSAFY_REDIS_WORKER_PASSWORD",
    "payment workers and beat: consume payments and maintenance; account locks, fence; "
    "answer remote control",
)
OPS = RoleUser(
    "ops",
    "maqsafy-ops",
    "MAQSAFY_REDIS_OPS_PASSWORD",
    "the ops runner: consume ops (its own unacked keys); runs' live events; answer remote control",
    OPS_UNACKED_KEYS,
)
ADMIN = RoleUser(
    "admin",
    "maqsafy-admin",
    "MAQSAFY_REDIS_ADMIN_PASSWORD",
    "the operator's tool: remote control, queue depths, purge and re-send, deploy lock, stores",
    ADMIN_UNACKED_KEYS,
)
ROLE_USERS = (PRODUCER, WORKER, OPS, ADMIN)
BY_ROLE = {u.role: u for u in ROLE_USERS}
BY_NAME = {u.name: u for u in ROLE_USERS}


def unacked_keys(user: str) -> tuple[str, str, str]:
    """The unacked hash, index and mutex kombu uses in a process connected as Redis `user`.

    Every kombu consumer restores overdue unacked messages into the queue they name; so the ops
    runner and the operator's tool (whose users may LPUSH to `ops`) restore only from keys no
    other role may write, and a payment worker cannot plant a message that lands in `ops`.
    """
    found = BY_NAME.get(user)
    return found.unacked if found is not None else UNACKED_KEYS


@dataclass(frozen=True)
class Scope:
    """What the rules depend on: the key prefix, the broker's database and every database the
    role URLs name (a user may SELECT those and no other)."""

    prefix: str = "maqsafy"
    broker_db: int = 0
    dbs: tuple[int, ...] = (0,)

    @property
    def keyspace(self) -> Keyspace:
        return Keyspace(self.prefix)

    @property
    def control_channel(self) -> str:
        """The pidbox fanout's PUB/SUB channel (kombu's ``/{db}.`` prefix + the exchange)."""
        return Channel.keyprefix_fanout.format(db=self.broker_db) + CONTROL_EXCHANGE


def scope_for(urls: Mapping[str, str], prefix: str) -> Scope:
    """The scope of a deployment whose role URLs are `urls` (settings.redis_urls)."""
    dbs = tuple(sorted({Endpoint.parse(url).db for url in urls.values()}))
    return Scope(prefix, Endpoint.parse(urls["broker"]).db, dbs)


def _keys(names: Iterable[str], mode: str = "") -> list[str]:
    return [f"{mode}~{name}" for name in names]


def _lists(*queues: str) -> list[str]:
    return [key for queue in queues for key in priority_lists(queue)]


def binding_keys(*exchanges: str) -> list[str]:
    """kombu's binding table and permanent set of each exchange (a queue's is its own name)."""
    return [
        key
        for exchange in exchanges
        for key in (
            Channel.keyprefix_queue % exchange,
            Channel.keyprefix_binding_permanent % exchange,
        )
    ]


def _selector(keys: Sequence[str], commands: str) -> str:
    return f"({' '.join(keys)} resetchannels -@all {commands})"


def _select(scope: Scope) -> str:
    # redis-py sends SELECT only for a database other than 0; Redis 7 allows a command's first
    # argument alone (+select|1), so a user reaches the configured databases and no other.
    return " ".join(f"+select|{db}" for db in sorted(set(scope.dbs)) if db != 0)


def _control(scope: Scope) -> tuple[list[str], list[str]]:
    """Root channel rules and selectors for a worker that answers remote control."""
    channels = ["resetchannels", f"&{scope.control_channel}"]
    tables = [*binding_keys(CONTROL_EXCHANGE, REPLY_EXCHANGE), DEADLINES]
    selectors = [
        _selector(_keys(tables), f"{CONTROL} {SCRIPT}"),
        _selector(_keys(_lists(NODE_QUEUES)), NODE),
        _selector(_keys(_lists(REPLY_QUEUES)), "+lpush"),
    ]
    return channels, selectors


def _words(*parts: str) -> list[str]:
    return [word for part in parts for word in part.split()]


def _stores(scope: Scope) -> list[str]:
    return [p for r in ("cache", "sessions", "ratelimit") for p in scope.keyspace.patterns(r)]


def _producer(scope: Scope) -> list[str]:
    money = ("payments", "maintenance")
    return [
        *_keys(_stores(scope)),
        "resetchannels",
        *_words(CONNECT, DATA, _select(scope)),
        _selector(_keys(_lists(*money)), "+lpush +llen"),
        _selector(_keys(binding_keys(*money)), BINDINGS),
    ]


def _worker(scope: Scope) -> list[str]:
    ks = scope.keyspace
    queues = ("payments", "maintenance")
    channels, control = _control(scope)
    own = [ks.lock("account:*"), ks.fence_counter, ks.cache("doctor", "probe")]
    return [
        *_keys(own),
        *_keys([ks.lock("*")], "%R"),  # the lock sweep reads every lock, deletes its own
        *channels,
        *_words(CONNECT, DATA, "+info +psubscribe +punsubscribe", _select(scope)),
        _selector(_keys(_lists(*queues)), CONSUME),
        _selector(_keys(WORKER.unacked), f"{UNACKED} {SCRIPT}"),
        _selector(_keys(binding_keys(*queues)), BINDINGS),
        *control,
    ]


def _ops(scope: Scope) -> list[str]:
    channels, control = _control(scope)
    return [
        *channels,
        *_words(
            CONNECT,
            "+multi +exec +discard +unwatch +script|load +script|exists +time",
            "+psubscribe +punsubscribe",
            _select(scope),
        ),
        _selector(_keys(_lists("ops")), CONSUME),
        _selector(_keys(OPS.unacked), f"{UNACKED} {SCRIPT}"),
        _selector(_keys(binding_keys("ops")), BINDINGS),
        _selector(_keys([scope.keyspace.run_events("*")]), EVENTS),
        *control,
    ]


def _admin(scope: Scope) -> list[str]:
    queues = ("payments", "maintenance", "ops")
    # Reads (queue depths, unacked ages, the keyspace report's MEMORY USAGE) of every broker
    # key; writes only through the selectors.
    broker = [
        *_lists(*queues),
        *WORKER.unacked,
        *OPS.unacked,
        "_kombu.*",  # binding tables, permanent sets, deadlines
        *_lists(NODE_QUEUES, REPLY_QUEUES),
    ]
    tables = [*binding_keys(*queues, CONTROL_EXCHANGE, REPLY_EXCHANGE), DEADLINES]
    return [
        # the stores, locks, and the queue samples the console writes (ops/queue_samples.py)
        *_keys([*_stores(scope), scope.keyspace.lock("*"), scope.keyspace.queue_samples]),
        *_keys([f"{scope.prefix}:fence:*", *broker], "%R"),
        "resetchannels",
        f"&{scope.control_channel}",
        *_words(CONNECT, DATA, "+info +memory|usage +publish", _select(scope)),
        _selector(_keys(_lists(*queues)), "+lpush +llen +lindex +del"),
        _selector(_keys(ADMIN.unacked), f"{UNACKED} {SCRIPT}"),
        _selector(_keys(tables), f"{CONTROL} {SCRIPT}"),
        _selector(_keys(_lists(REPLY_QUEUES)), "+brpop +rpop +llen +del +exists +pexpire"),
        _selector(_keys([scope.keyspace.run_events("*")]), EVENTS),
    ]


RULES = {"producer": _producer, "worker": _worker, "ops": _ops, "admin": _admin}


def rules(role: str, scope: Scope) -> list[str]:
    """The ACL rules (without a password) for `role`'s user."""
    if role not in RULES:
        raise InvalidRequest(f"unknown role {role!r}; expected one of: {', '.join(RULES)}")
    return ["reset", "on", *RULES[role](scope)]


def as_redis_cli(token: str) -> str:
    """A rule as redis-cli reads it: quoted, with \\xHH escapes, where it has spaces or bytes."""
    if token.isprintable() and " " not in token and '"' not in token:
        return token
    escaped = "".join(
        c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02x}" for c in token
    )
    return f'"{escaped}"'


def render(scope: Scope, users: Sequence[RoleUser] = ROLE_USERS) -> str:
    """Each user's purpose and rules, for people. Not a command to paste: the password is set
    by --apply from its variable, never written here (a pasted placeholder would become it)."""
    lines = []
    for user in users:
        lines.append(f"{user.name}: {user.purpose}")
        lines.append(f"  password: from ${user.password_env} by --apply (never shown)")
        lines.append(f"  rules: {' '.join(as_redis_cli(r) for r in rules(user.role, scope))}")
    return "\n".join(lines)
