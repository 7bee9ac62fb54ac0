"""Read the project's configuration from the environment and `.env`.

The platform's own variables are honoured as its Redis page writes them (`REDIS_HOST`,
`REDIS_PORT`, `REDIS_PASSWORD` where the literal ``null`` means "no password",
`QUEUE_CONNECTION`, `CACHE_DRIVER`, `SESSION_DRIVER`), and URLs win where given: `REDIS_URL`
for every role, `REDIS_<ROLE>_URL` for one role, `DATABASE_URL` for SQL. A URL's user is the
Redis ACL user the process connects as (``redis://maqsafy-worker:<password>@host:6379/0``);
`MAQSAFY_REDIS_SUPERUSER_URL` names a user allowed ACL and CONFIG, used only by `redis.acl
--apply` and `audit.security`.

Nothing is configured -> the embedded default: a private redis-server and SQLite under
`MAQSAFY_VAR_DIR` (default: ``var/`` in the project's folder, whatever the current directory).
Settings come from the environment over one `.env`: the file `MAQSAFY_ENV_FILE` names, else the
project's own (next to the code), never one in the current directory.
Notifications: `MAQSAFY_NOTIFY_WEBHOOKS` names the variables (comma-separated) whose webhook
URLs receive the app's own events (failed tasks, long queue waits); `MAQSAFY_LONG_WAIT` sets
how long a queue's oldest message may wait (`payments=60,maintenance=600`; default payments 60 s).
A malformed value raises :class:`ConfigError`, whose message is one line naming the variable
and what it expects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from celery_app.errors import ConfigError
from celery_app.infra.redaction import mask_patterns
from celery_app.inputs import natural, shown, whole_number

ROLES = ("broker", "cache", "sessions", "ratelimit", "locks")
DRIVERS = {
    "QUEUE_CONNECTION": ("redis",),
    "CACHE_DRIVER": ("redis", "array"),
    "SESSION_DRIVER": ("redis", "array"),
}
REDIS_SCHEMES = ("redis", "rediss", "unix")
SQL_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")


# The checkout (or release) this code runs from. The defaults hang off it rather than off the
# current directory, so a command run from a subfolder finds the same ./var and .env.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def env_file_path(environ: Mapping[str, str]) -> Path:
    """The `.env` to read: $MAQSAFY_ENV_FILE, else the project's (next to this code).

    Never one from the current directory: a command run from a folder someone else can write
    (a download, /tmp, another checkout) would take its settings, its Redis and database URLs,
    from there. A deployed release needs none: its `.env` (linked to the host's shared/.env)
    sits next to its code."""
    named = environ.get("MAQSAFY_ENV_FILE", "").strip()
    if named:
        return Path(named)
    return PROJECT_ROOT / ".env"


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a `.env` file: KEY=VALUE lines, `#` comments, optional quotes.

    A malformed line is named by its number and, where it has one, its key; never by its text,
    which may hold a secret (a key is shown with any secret pattern in it masked)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        key = key.strip()
        where = f"{path}:{number}"
        if not sep:
            raise ConfigError(f"{where}: expected KEY=VALUE, found no '=' (the line is not shown)")
        if not key.isidentifier():
            raise ConfigError(
                f"{where}: key {shown(mask_patterns(key))} is not a variable name (letters, "
                "digits, _); its value is not shown"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:  # a variable set to nothing is unset, as in a shell
        return default
    return whole_number(raw, name, low, high, error=ConfigError)


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError(
            f"{name}: malformed URL (check the port and any %-escaping in the password)"
        ) from None
    if parts.scheme not in schemes:
        starts = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(
            f"{name}: expected a URL starting with {starts}, got scheme {shown(parts.scheme)}"
        )
    if parts.scheme in ("redis", "rediss") and not parts.hostname:
        raise ConfigError(f"{name}: the URL names no host; expected redis://HOST:PORT/DB")
    if parts.scheme in ("redis", "rediss") and parts.path.strip("/"):
        db = parts.path.strip("/")
        if natural(db) is None:
            raise ConfigError(
                f"{name}: the database after the host must be a number, got {shown(db)}"
            )
    return raw


def _driver(env: Mapping[str, str], name: str) -> str:
    allowed = DRIVERS[name]
    raw = env.get(name, "").strip().lower() or allowed[0]
    if raw not in allowed:
        raise ConfigError(
            f"{name}: unknown driver {shown(raw)}; expected one of: {', '.join(allowed)}"
        )
    return raw


@dataclass(frozen=True)
class Settings:
    """Validated configuration; build it with :func:`load_settings`."""

    var_dir: Path
    database_url: str
    redis_urls: dict[str, str]
    embedded_redis: bool
    queue_connection: str = "redis"
    cache_driver: str = "redis"
    session_driver: str = "redis"
    lock_ttl_ms: int = 10_000
    # most payment requests one posting transaction takes (1: each message posts only its own)
    post_batch: int = 32
    visibility_timeout: int = 3600
    relay_after_seconds: int = 30
    # seconds an ops worker's slice of a sliced run stays claimed without a heartbeat
    ops_slice_lease: int = 30
    key_prefix: str = "maqsafy"
    redis_superuser_url: str | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # the variables naming webhooks for the app's own events (celery_app.ops.notify)
    notify_webhooks: tuple[str, ...] = ()
    # queue -> seconds its oldest message may wait before beat notifies (0: never)
    long_wait: tuple[tuple[str, int], ...] = (("payments", 60),)

    @property
    def embedded_socket(self) -> Path:
        return self.var_dir / "redis.sock"

    def redis_url(self, role: str) -> str:
        return self.redis_urls[role]

    @property
    def database_is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _variables(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated variable names (never values: a webhook URL holds a token)."""
    names = [n.strip() for n in env.get(name, "").split(",") if n.strip()]
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", n)]
    if bad:
        raise ConfigError(
            f"{name}: expected names of variables that hold webhook URLs (A-Z, 0-9, _), "
            f"separated by commas; got {shown(mask_patterns(bad[0]))}"
        )
    return tuple(dict.fromkeys(names))


def _long_wait(env: Mapping[str, str], name: str) -> tuple[tuple[str, int], ...]:
    """`payments=60,maintenance=600` (seconds; 0 turns a queue's alert off); default payments=60."""
    from celery_app.infra.keyspace import QUEUES

    wanted = {"payments": 60}
    for item in (i.strip() for i in env.get(name, "").split(",") if i.strip()):
        queue, sep, seconds = item.partition("=")
        if not sep or queue.strip() not in QUEUES:
            raise ConfigError(
                f"{name}: expected QUEUE=SECONDS pairs such as payments=60 (queues: "
                f"{', '.join(QUEUES)}), got {shown(item)}"
            )
        wanted[queue.strip()] = whole_number(seconds.strip(), name, 0, 86_400, error=ConfigError)
    return tuple(sorted(wanted.items()))


def _secrets_of(url: str) -> list[str]:
    parts = urlsplit(url)
    found = []
    if parts.password:
        found.append(parts.password)
    return found


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Build settings from `environ` over the `.env` file; raise ConfigError on bad values."""
    source = dict(os.environ if environ is None else environ)
    env_file = dotenv if dotenv is not None else env_file_path(source)
    env = {**read_dotenv(env_file), **source}

    var_dir = Path(env.get("MAQSAFY_VAR_DIR", "").strip() or PROJECT_ROOT / "var").absolute()
    for name in DRIVERS:
        _driver(env, name)

    database_url = _url(env, "DATABASE_URL", SQL_SCHEMES) or f"sqlite:///{var_dir / 'maqsafy.db'}"
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]

    secrets: list[str] = _secrets_of(database_url)
    password = env.get("REDIS_PASSWORD", "").strip()
    if password.lower() == "null":
        password = ""
    if password:
        secrets.append(password)

    host = env.get("REDIS_HOST", "").strip()
    port = _int(env, "REDIS_PORT", 6379, 1, 65535)
    if host and ("/" in host or " " in host or ":" in host.strip("[]")):
        raise ConfigError(f"REDIS_HOST: expected a host name or address, got {shown(host)}")
    shared = _url(env, "REDIS_URL", REDIS_SCHEMES)
    embedded = False
    if shared is None and host:
        auth = f":{quote(password, safe='')}@" if password else ""
        shared = f"redis://{auth}{host}:{port}/0"

    urls: dict[str, str] = {}
    for role in ROLES:
        url = _url(env, f"REDIS_{role.upper()}_URL", REDIS_SCHEMES) or shared
        if url is None:
            embedded = True
            url = f"unix://{var_dir / 'redis.sock'}?db=0"
        urls[role] = url
        secrets.extend(_secrets_of(url))
    superuser = _url(env, "MAQSAFY_REDIS_SUPERUSER_URL", REDIS_SCHEMES)
    if superuser:
        secrets.extend(_secrets_of(superuser))

    return Settings(
        var_dir=var_dir,
        database_url=database_url,
        redis_urls=urls,
        embedded_redis=embedded,
        queue_connection=_driver(env, "QUEUE_CONNECTION"),
        cache_driver=_driver(env, "CACHE_DRIVER"),
        session_driver=_driver(env, "SESSION_DRIVER"),
        lock_ttl_ms=_int(env, "MAQSAFY_LOCK_TTL_MS", 10_000, 50, 3_600_000),
        post_batch=_int(env, "MAQSAFY_POST_BATCH", 32, 1, 500),
        visibility_timeout=_int(env, "MAQSAFY_VISIBILITY_TIMEOUT", 3600, 60, 86_400 * 7),
        relay_after_seconds=_int(env, "MAQSAFY_RELAY_AFTER", 30, 0, 86_400),
        ops_slice_lease=_int(env, "MAQSAFY_OPS_SLICE_LEASE", 30, 3, 3600),
        key_prefix=env.get("MAQSAFY_KEY_PREFIX", "").strip() or "maqsafy",
        redis_superuser_url=superuser,
        notify_webhooks=_variables(env, "MAQSAFY_NOTIFY_WEBHOOKS"),
        long_wait=_long_wait(env, "MAQSAFY_LONG_WAIT"),
        secrets=tuple(sorted({s for s in secrets if s}, key=len, reverse=True)),
    )
