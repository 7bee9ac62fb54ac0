"""What each Redis failure usually means, and what to check next (the platform's Redis page).

The page's symptoms are kept in its own words so an operator who searches for the message they
saw (``getaddrinfo for redis failed``, connection refused) finds the causes it lists. Error replies
are classified by their code (NOAUTH, WRONGPASS, LOADING, MISCONF, OOM, READONLY, NOPERM); a
reply that is not Redis's protocol at all (a web server on the port) is told apart from Redis
errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class Cause:
    """A failure kind: what the operator sees, why it happens, what to run next."""

    kind: str
    summary: str
    causes: tuple[str, ...]
    next_check: str


DOCKER_NEXT = "invoke docker.ps (is the Redis container running?), then invoke docker.networks"

CAUSES: dict[str, Cause] = {
    c.kind: c
    for c in (
        Cause(
            "resolve",
            "getaddrinfo for {host} failed: the name does not resolve",
            (
                "wrong Redis hostname in .env (REDIS_HOST or REDIS_URL)",
                "the Redis container is not running",
                "the app's container and the Redis container are not on the same Docker network",
                "the Docker service name changed",
            ),
            DOCKER_NEXT,
        ),
        Cause(
            "refused",
            "connection refused by {host}:{port}",
            (
                "the Redis service is down",
                "wrong Redis port (REDIS_PORT)",
                "a firewall or network issue",
                "Redis requires authentication but the password is missing (after connecting, "
                "that shows as NOAUTH)",
            ),
            "invoke docker.ps and docker.logs redis; redis-cli -h <redis-host> -p <port> ping",
        ),
        Cause(
            "timeout",
            "no answer from {host}:{port} within {timeout}s",
            (
                "a firewall drops the packets",
                "wrong host: the address routes nowhere",
                "Redis is overloaded or blocked by a slow command",
            ),
            "check the security group / firewall between this host and Redis; "
            "redis-cli -h <redis-host> -p <port> --latency",
        ),
        Cause(
            "unreachable",
            "network error reaching {host}:{port}",
            ("no route to the Redis host", "the network interface or VPN is down"),
            "ip route get <redis-address>; invoke docker.networks",
        ),
        Cause(
            "socket",
            "no Redis listening on the unix socket {path}",
            (
                "the embedded Redis under ./var is not running (commands start it on use)",
                "the socket path in REDIS_URL is wrong",
            ),
            "ls -l the socket path; invoke redis.doctor again after any command starts it",
        ),
        Cause(
            "noauth",
            "Redis requires authentication but no password was sent (NOAUTH)",
            (
                "REDIS_PASSWORD is missing or null in .env",
                "REDIS_URL has no :password@ part",
            ),
            "set REDIS_PASSWORD (placeholders only in docs) and run invoke redis.ping",
        ),
        Cause(
            "wrongpass",
            "Redis refused the password (WRONGPASS)",
            (
                "wrong REDIS_PASSWORD (or password in REDIS_URL)",
                "wrong ACL user name, or the user is disabled",
                "the password was rotated on the server but not in .env",
            ),
            "compare the password source with the server's requirepass/ACL (invoke redis.acl)",
        ),
        Cause(
            "noauth_set",
            "a password was sent but Redis has none configured",
            (
                "the server runs without requirepass or ACL users: anyone who reaches it is in",
                "the client points at the wrong Redis",
            ),
            "invoke audit.security; set requirepass or ACL users on the server",
        ),
        Cause(
            "not_redis",
            "something other than Redis answers at {address}",
            (
                "wrong port: REDIS_PORT (or the port in REDIS_URL) is another service's "
                "(Redis listens on 6379 unless configured otherwise)",
                "wrong host: REDIS_HOST (or REDIS_URL) names a machine or container that is "
                "not the Redis",
                "a Docker port mapping publishes another container on the Redis port",
            ),
            "ss -ltnp 'sport = :<port>' on the Redis host (which program listens there), "
            "invoke docker.ps; then fix REDIS_HOST / REDIS_PORT in .env and invoke redis.ping",
        ),
        Cause(
            "password_ignored",
            "the password is ignored: Redis has no requirepass (its default user is nopass), "
            "so it answers without one",
            (
                "this Redis is unprotected: anyone who reaches it is in",
                "REDIS_HOST / REDIS_URL points at the wrong Redis (not the one with the password)",
            ),
            "invoke audit.security; set requirepass (or ACL users) on the server, "
            "or point REDIS_HOST at the Redis the password belongs to",
        ),
        Cause(
            "default_open",
            "Redis also answers a client that sends no password (its default user is nopass)",
            ("anyone who reaches this Redis is in, whatever the app's ACL user may do",),
            "invoke audit.security; ACL SETUSER default off (or give it a password)",
        ),
        Cause(
            "loading",
            "Redis is loading its dataset into memory (LOADING)",
            ("Redis restarted and is reading its RDB/AOF file; it answers once loaded",),
            "wait; INFO persistence shows loading_eta_seconds",
        ),
        Cause(
            "misconf",
            "Redis refuses writes: it cannot persist to disk (MISCONF)",
            (
                "the disk holding Redis's dir is full",
                "Redis cannot write to its dir (permissions)",
                "stop-writes-on-bgsave-error yes after a failed background save",
            ),
            "docker logs <redis-container> (or the Redis log); df -h on the Redis host",
        ),
        Cause(
            "oom",
            "Redis is out of memory and refuses writes (OOM)",
            (
                "used_memory reached maxmemory under noeviction (the right policy for a broker)",
                "queues grew because workers are down or slow",
                "keys without a TTL pile up",
            ),
            "invoke queue.size, invoke redis.keyspace; then raise maxmemory or drain the backlog",
        ),
        Cause(
            "readonly",
            "Redis is a read-only replica (READONLY)",
            (
                "a Sentinel failover promoted another server and the URL still names the old one",
                "the URL points at a replica",
            ),
            "redis-cli -h <redis-host> role; point REDIS_HOST at the current master",
        ),
        Cause(
            "noperm",
            "the ACL user may not run this command or touch this key (NOPERM)",
            ("the app's ACL user lacks a command or key pattern it needs",),
            "invoke redis.acl shows the least-privilege rules the app needs",
        ),
        Cause(
            "maxclients",
            "Redis refused the connection: max number of clients reached",
            ("a connection leak in a client", "maxclients too low for the worker count"),
            "redis-cli client list | wc -l; check worker concurrency",
        ),
        Cause(
            "error",
            "Redis answered with an error",
            ("see the message",),
            "redis-cli -h <redis-host> -p <port> ping",
        ),
    )
}

CODES = {
    "NOAUTH": "noauth",
    "WRONGPASS": "wrongpass",
    "LOADING": "loading",
    "MISCONF": "misconf",
    "OOM": "oom",
    "READONLY": "readonly",
    "NOPERM": "noperm",
}


def classify(exc: redis.RedisError) -> str:
    """Return the failure kind of a redis-py error (a key of :data:`CAUSES`)."""
    code = getattr(exc, "status_code", None)
    text = str(exc)
    if code is None:
        code = text.split(" ", 1)[0]
    if code in CODES:
        return CODES[code]
    lowered = text.lower()
    if "called without any password configured" in lowered:
        return "noauth_set"
    if "max number of clients" in lowered:
        return "maxclients"
    if "invalid password" in lowered:
        return "wrongpass"
    if isinstance(exc, redis.exceptions.InvalidResponse):  # the reply is not RESP at all
        return "not_redis"
    if isinstance(exc, redis.TimeoutError):
        return "timeout"
    if isinstance(exc, redis.ConnectionError):
        return "refused" if "refused" in lowered else "unreachable"
    return "error"
