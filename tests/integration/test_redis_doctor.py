"""`redis.ping` and `redis.doctor`: each diagnosis produced for real against test-started servers.

Every failure the platform's Redis page lists is provoked on a real redis-server on a spare port
(or a name that cannot resolve, a port nothing listens on) and must come back with the page's
causes; no password ever appears in the output.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from celery_app.infra.keyspace import Keyspace
from celery_app.ops.findings import Finding
from celery_app.ops.redis_audit import audit
from celery_app.ops.redis_doctor import Diagnosis, diagnose, diagnose_url, ping
from runbooks.reach.redis import REDIS_VARIABLES
from tests.support.redis_app import app_env, invoke
from tests.support.services import RedisServer, free_port, start_redis, wait_for

PASSWORD = "doctor-test-pw-7f3a"


def finding(diagnosis: Diagnosis, check: str) -> Finding:
    found = [f for f in diagnosis.findings if f.check == check]
    assert found, f"no {check} finding in {[f.check for f in diagnosis.findings]}"
    return found[-1]


@pytest.fixture
def locked(tmp_path: Path) -> RedisServer:
    server = start_redis(tmp_path / "locked", "--appendonly", "yes", password=PASSWORD)
    yield server
    server.stop()


def test_a_name_that_does_not_resolve_lists_the_pages_causes() -> None:
    result = diagnose_url("redis://redis.invalid:6379/0")
    resolve = finding(result, "resolve")
    assert resolve.level == "critical"
    assert "getaddrinfo for redis.invalid failed" in resolve.message
    assert "wrong Redis hostname in .env (REDIS_HOST or REDIS_URL)" in resolve.causes
    assert any("same Docker network" in c for c in resolve.causes)
    assert "docker.ps" in resolve.next_check
    assert [f.check for f in result.findings] == ["resolve"]  # the walk stops there


def test_a_closed_port_is_connection_refused() -> None:
    port = free_port()
    result = ping(f"redis://127.0.0.1:{port}/0")
    assert (result.check, result.level, result.data["kind"]) == ("connect", "critical", "refused")
    assert f"connection refused by 127.0.0.1:{port}" in result.message
    assert "the Redis service is down" in result.causes
    assert "wrong Redis port (REDIS_PORT)" in result.causes


def test_no_password_and_wrong_password(locked: RedisServer) -> None:
    missing = diagnose_url(f"redis://127.0.0.1:{locked.port}/0")
    assert finding(missing, "connect").level == "ok"
    assert finding(missing, "ping").data["kind"] == "noauth"
    assert "REDIS_PASSWORD is missing or null in .env" in finding(missing, "ping").causes

    wrong = ping(f"redis://:not-it@127.0.0.1:{locked.port}/0")
    assert (wrong.level, wrong.data["kind"]) == ("critical", "wrongpass")


def test_a_healthy_locked_down_server_is_all_ok(locked: RedisServer) -> None:
    result = diagnose_url(locked.url, ("broker", "cache"))
    assert result.level == "ok", [f for f in result.findings if f.level != "ok"]
    assert result.facts is not None and result.facts.aof_enabled
    assert PASSWORD not in json.dumps(result.as_dict())
    assert result.target == f"redis://:********@127.0.0.1:{locked.port}/0"


def test_an_evicting_broker_warns_but_an_evicting_cache_does_not(tmp_path: Path) -> None:
    server = start_redis(
        tmp_path / "lru", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"
    )
    try:
        broker = diagnose_url(server.url, ("broker",))
        policy = finding(broker, "policy")
        assert policy.level == "warn" and "allkeys-lru, not noeviction" in policy.message
        assert finding(broker, "persistence").level == "warn"  # --save "" and no AOF
        cache = diagnose_url(server.url, ("cache",))
        assert finding(cache, "policy").level == "ok"
        assert not [f for f in cache.findings if f.check == "persistence"]
    finally:
        server.stop()


def test_memory_at_maxmemory_is_oom_on_write(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "oom", "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    try:
        client = server.client()
        filler = "x" * 100_000

        def full() -> bool:
            try:
                client.set(f"fill:{client.dbsize()}", filler)
                return False
            except Exception:
                return True

        wait_for(full, 30, "Redis to refuse writes at maxmemory", every=0)
        result = diagnose_url(server.url, ("broker",))
        assert finding(result, "write").data["kind"] == "oom"
        assert finding(result, "memory").level == "critical"
    finally:
        server.stop()


def test_a_replica_is_readonly(tmp_path: Path, redis_server: RedisServer) -> None:
    replica = start_redis(tmp_path / "replica", "--replicaof", "127.0.0.1", str(redis_server.port))
    try:
        result = diagnose_url(replica.url, ("broker",))
        write = finding(result, "write")
        assert (write.level, write.data["kind"]) == ("critical", "readonly")
        assert any("Sentinel failover" in c for c in write.causes)
    finally:
        replica.stop()


def test_an_acl_user_denied_a_command_is_noperm(locked: RedisServer) -> None:
    admin = locked.client()
    admin.acl_setuser(
        "reader",
        enabled=True,
        passwords=["+reader-pw"],
        keys=["*"],
        commands=["+@read", "+ping", "+info"],
    )
    result = diagnose_url(f"redis://reader:reader-pw@127.0.0.1:{locked.port}/0", ("cache",))
    assert finding(result, "auth").message == "authenticated as ACL user 'reader'"
    write = finding(result, "write")
    assert (write.level, write.data["kind"]) == ("critical", "noperm")
    assert "'set'" in write.message
    assert "invoke redis.acl" in write.next_check
    assert finding(result, "server").level == "ok"


def test_roles_on_one_server_are_diagnosed_once(redis_server: RedisServer) -> None:
    other = f"redis://127.0.0.1:{free_port()}/0"
    urls = {
        "broker": redis_server.url,
        "cache": redis_server.url.replace("/0", "/1"),
        "sessions": other,
    }
    results = diagnose(urls, Keyspace())
    assert [r.roles for r in results] == [("broker", "cache"), ("sessions",)]
    assert [r.level for r in results] == ["warn", "critical"]
    assert [r.roles for r in diagnose(urls, Keyspace(), role="sessions")] == [("sessions",)]


def test_the_commands_exit_codes_and_json(locked: RedisServer, tmp_path: Path) -> None:
    env = app_env(tmp_path, locked.url)
    doctor = invoke(env, "redis.doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert PASSWORD not in doctor.stdout
    assert {r["level"] for r in json.loads(doctor.stdout)} == {"ok"}

    refused = invoke(app_env(tmp_path, f"redis://127.0.0.1:{free_port()}/0"), "redis.ping")
    assert refused.returncode == 2
    assert "[CRIT] connect: connection refused" in refused.stdout

    bad = invoke(env, "redis.doctor", "--role", "queue")
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "error: unknown Redis role 'queue'; expected one of: "
        "broker, cache, sessions, ratelimit, locks",
    )


def test_env_points_the_doctor_at_the_inventorys_redis(locked: RedisServer, tmp_path: Path) -> None:
    env = {
        **app_env(tmp_path, f"redis://127.0.0.1:{free_port()}/0"),
        "REDIS_HOST": "127.0.0.1",  # what inventory/local.yml reads
        "REDIS_PORT": str(locked.port),
        "REDIS_PASSWORD": PASSWORD,
    }
    pinged = invoke(env, "redis.ping", "--env", "local")
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    assert "PONG" in pinged.stdout and PASSWORD not in pinged.stdout

    memory = invoke(env, "maintenance.memory", "--env", "local")
    assert (memory.returncode, memory.stdout.strip()) == (0, "memory, policy and evictions ok")
    (tmp_path / "empty").mkdir()
    audited = invoke(env, "audit.security", "--env", "local", "--path", str(tmp_path / "empty"))
    assert audited.returncode == 2  # the app on the default user, no role users yet
    assert f"127.0.0.1:{locked.port}" in audited.stdout and PASSWORD not in audited.stdout
    assert "[CRIT] app user: the app connects as Redis's default user" in audited.stdout
    assert "[WARN] acl maqsafy-producer: no ACL user 'maqsafy-producer'" in audited.stdout


def test_a_failed_save_is_misconf(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "misconf", "--save", "3600 1")
    try:
        client = server.client()
        shutil.rmtree(server.directory)  # even root cannot save into a folder that is gone
        client.bgsave()
        wait_for(
            lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err",
            30,
            "the background save to fail",
        )
        result = diagnose_url(server.url, ("broker",))
        refused = finding(result, "ping")  # Redis refuses even PING while it cannot save
        assert (refused.level, refused.data["kind"]) == ("critical", "misconf")
        assert "the disk holding Redis's dir is full" in refused.causes
    finally:
        server.client().config_set("save", "")  # or shutdown would retry the save for good
        server.stop()


def test_a_server_loading_its_dataset_is_loading(tmp_path: Path) -> None:
    seed = start_redis(tmp_path / "seed", "--enable-debug-command", "yes")
    seed.client().execute_command("DEBUG", "POPULATE", "3000")
    seed.client().save()
    seed.stop()
    server = start_redis(
        seed.directory,
        "--key-load-delay",
        "3000",
        "--loading-process-events-interval-bytes",
        "1024",
        wait=False,
    )
    try:
        url = server.url

        def loading() -> bool:
            try:
                redis.Redis.from_url(url, socket_timeout=1).ping()
            except redis.exceptions.BusyLoadingError:
                return True
            except redis.RedisError:
                return False
            return False

        wait_for(loading, 10, "the server to reply LOADING")
        result = ping(url)
        assert (result.level, result.data["kind"]) == ("critical", "loading")
        assert "loading_eta_seconds" in result.next_check
    finally:
        server.process.kill()
        server.process.wait()


@pytest.mark.embedded
def test_the_embedded_default_is_started_and_passes(tmp_path: Path) -> None:
    env = {
        **dict.fromkeys(REDIS_VARIABLES, ""),  # no Redis configured: the embedded default
        "MAQSAFY_VAR_DIR": str(tmp_path / "var"),
        "MAQSAFY_ENV_FILE": str(tmp_path / "no.env"),
    }
    try:
        pinged = invoke(env, "redis.ping")
        assert pinged.returncode == 0, pinged.stdout + pinged.stderr
        assert pinged.stdout.startswith(f"[ok  ] ping: PONG from unix://{tmp_path}/var/redis.sock")
        (tmp_path / "empty").mkdir()
        audited = invoke(env, "audit.security", "--json", "--path", str(tmp_path / "empty"))
        [server] = json.loads(audited.stdout)["redis"]
        checks = {f["check"]: f["level"] for f in server["findings"]}
        assert (checks["auth"], checks["bind"]) == ("ok", "ok")  # socket mode 700, port 0
    finally:
        invoke(env, "stop")


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[int]:
    """A real HTTP server (python -m http.server) on a spare port: not Redis."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
        except OSError:
            return False
        return True

    try:
        wait_for(accepts, 10, f"http.server on port {port}")
        yield port
    finally:
        process.terminate()
        process.wait(10)


def test_a_web_server_on_the_redis_port_is_not_redis(web_server: int, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{web_server}/0"
    pinged = ping(url)
    assert (pinged.level, pinged.data["kind"]) == ("critical", "not_redis")
    where = f"127.0.0.1:{web_server}"
    assert pinged.message.startswith(f"something other than Redis answers at {where} (")
    assert "an HTTP (web) server" in pinged.message and "Protocol error" not in pinged.message
    assert any(c.startswith("wrong port: REDIS_PORT") for c in pinged.causes)
    assert "which program listens there" in pinged.next_check
    walked = diagnose_url(url)
    assert [(f.check, f.level) for f in walked.findings] == [
        ("resolve", "ok"),
        ("connect", "ok"),
        ("ping", "critical"),
    ]

    env = app_env(tmp_path, "", REDIS_HOST="127.0.0.1", REDIS_PORT=str(web_server))
    done = invoke(env, "redis.ping")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("[CRIT] ping: something other than Redis answers at ")


def test_a_password_the_server_ignores_warns(redis_server: RedisServer, tmp_path: Path) -> None:
    url = f"redis://:any-pw-at-all@127.0.0.1:{redis_server.port}/0"  # no requirepass there
    pinged = ping(url)
    assert (pinged.level, pinged.data["kind"]) == ("warn", "password_ignored")
    assert pinged.message.startswith(f"PONG from redis://:********@127.0.0.1:{redis_server.port}/0")
    assert "but the password is ignored: Redis has no requirepass" in pinged.message
    assert "this Redis is unprotected: anyone who reaches it is in" in pinged.causes
    assert finding(diagnose_url(url, ("cache",)), "auth").level == "warn"

    # A named ACL user's password counts, but the default user still lets anyone in.
    redis_server.client().acl_setuser(
        "named", enabled=True, passwords=["+named-pw"], commands=["+ping"]
    )
    named = ping(f"redis://named:named-pw@127.0.0.1:{redis_server.port}/0")
    assert (named.level, named.data["kind"]) == ("warn", "default_open")

    env = app_env(
        tmp_path,
        "",
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(redis_server.port),
        REDIS_PASSWORD="any-pw-at-all",
    )
    done = invoke(env, "redis.ping")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("[WARN] ping: PONG from ")
    assert "any-pw-at-all" not in done.stdout


def test_a_unix_socket_others_may_open_warns_as_the_audit_fails(tmp_path: Path) -> None:
    path = tmp_path / "r.sock"
    server = start_redis(tmp_path / "sock", "--unixsocket", str(path), "--unixsocketperm", "770")
    url = f"unix://{path}?db=0"
    try:
        shared = diagnose_url(url, ("cache",))
        assert finding(shared, "auth").level == "warn"
        assert "unix socket others may open" in finding(shared, "auth").message
        assert {f.check: f.level for f in audit(url)}["auth"] == "critical"

        path.chmod(0o700)  # the embedded default's --unixsocketperm 700
        private = diagnose_url(url, ("cache",))
        assert finding(private, "auth").message == (
            "no password: unix socket only its owner may open (mode 700)"
        )
        assert {f.check: f.level for f in audit(url)}["auth"] == "ok"
    finally:
        server.stop()
