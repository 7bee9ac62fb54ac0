"""`audit.security`: fails on an exposed test instance, passes on a locked-down one; secrets found
in files are named by file and line, never shown."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from celery_app.ops import redis_acl
from celery_app.ops.redis_audit import audit, public_binds
from runbooks.checks.secret_scan import scan, scan_text
from tests.support.redis_app import app_env, invoke
from tests.support.services import (
    RedisServer,
    free_port,
    require,
    require_system_redis,
    start_redis,
)

ADMIN_PW = "audit-admin-pw-8d2e"
PASSWORDS = {u.name: f"audit-{u.role}-pw-77aa" for u in redis_acl.ROLE_USERS}
REAL = "hunter2-Zq9x"  # a "real" secret planted in files the scan must find
WIDE = ("+@all", "-flushall", "-flushdb", "-config", "-debug", "-module", "-keys")


@pytest.fixture
def clean_tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "inventory").mkdir(parents=True)
    (root / "inventory" / "prod.yml").write_text(
        "vars:\n  redis_host: <redis-host>\n  redis_password: ${REDIS_PASSWORD}\n"
    )
    (root / ".env.example").write_text("REDIS_PASSWORD=null\nREDIS_HOST=redis\n")
    (root / "README.md").write_text("redis-cli -h <redis-host> -a <redis-password> ping\n")
    return root


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "locked", password=ADMIN_PW)
    redis_acl.apply(server.client(), redis_acl.ROLE_USERS, PASSWORDS, redis_acl.Scope())
    yield server
    server.stop()


def role_url(server: RedisServer, role: str) -> str:
    name = redis_acl.BY_ROLE[role].name
    return f"redis://{name}:{PASSWORDS[name]}@127.0.0.1:{server.port}/0"


def levels(found: list[object]) -> dict[str, str]:
    return {f.check: f.level for f in found}  # type: ignore[attr-defined]


def test_an_exposed_instance_fails(tmp_path: Path, clean_tree: Path) -> None:
    exposed = start_redis(tmp_path / "exposed", "--protected-mode", "no")
    try:
        found = levels(audit(exposed.url))
        assert found["auth"] == "critical"
        assert found["protected-mode"] == "warn"
        assert found["app user"] == "critical"  # on the default user, allowed everything
        assert found["acl maqsafy-producer"] == "warn"  # no role users exist
        done = invoke(app_env(tmp_path, exposed.url), "audit.security", "--path", str(clean_tree))
        assert done.returncode == 2
        assert "[CRIT] auth: Redis answers a client that sends no password" in done.stdout
    finally:
        exposed.stop()


def test_the_users_apply_creates_pass(
    locked: RedisServer, tmp_path: Path, clean_tree: Path
) -> None:
    env = app_env(tmp_path, role_url(locked, "producer"), MAQSAFY_REDIS_SUPERUSER_URL=locked.url)
    done = invoke(env, "audit.security", "--path", str(clean_tree), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [server] = json.loads(done.stdout)["redis"]
    assert {f["check"]: f["level"] for f in server["findings"]} == {
        "auth": "ok",
        "bind": "ok",
        "protected-mode": "ok",
        "tls": "ok",
        "app user": "ok",
        **{f"acl {name}": "ok" for name in PASSWORDS},
    }
    assert not any(pw in done.stdout + done.stderr for pw in [ADMIN_PW, *PASSWORDS.values()])
    assert locked.client().acl_users() == ["default", *sorted(PASSWORDS)]  # the probe is gone


def test_the_app_on_the_default_user_is_critical(
    locked: RedisServer, tmp_path: Path, clean_tree: Path
) -> None:
    done = invoke(app_env(tmp_path, locked.url), "audit.security", "--path", str(clean_tree))
    assert done.returncode == 2
    [line] = [ln.strip() for ln in done.stdout.splitlines() if ln.strip().startswith("[CRIT]")]
    assert line == (
        "[CRIT] app user: the app connects as Redis's default user, which may run anything "
        "(ACL, CONFIG, FLUSHALL, SHUTDOWN)"
    )
    assert ADMIN_PW not in done.stdout + done.stderr


def test_a_role_user_wider_than_its_role_is_critical(
    locked: RedisServer, tmp_path: Path, clean_tree: Path
) -> None:
    password = PASSWORDS["maqsafy-worker"]
    locked.client().acl_setuser(
        "maqsafy-worker", reset=True, enabled=True, passwords=[f"+{password}"], keys=["*"],
        commands=list(WIDE),
    )  # fmt: skip
    env = app_env(tmp_path, role_url(locked, "worker"), MAQSAFY_REDIS_SUPERUSER_URL=locked.url)
    done = invoke(env, "audit.security", "--path", str(clean_tree))
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = [ln.strip() for ln in done.stdout.splitlines() if ln.strip().startswith("[CRIT]")]
    assert line.startswith(
        "[CRIT] acl maqsafy-worker: ACL user 'maqsafy-worker' is wider than the worker role: "
        "may run acl, shutdown, "
    )
    assert line.endswith("; has ~*")


def test_any_other_user_allowed_the_dangerous_is_critical(locked: RedisServer) -> None:
    locked.client().acl_setuser(
        "too-wide", enabled=True, passwords=["+pw"], keys=["*"], commands=list(WIDE)
    )
    found = {f.check: f for f in audit(role_url(locked, "admin"), superuser_url=locked.url)}
    assert found["acl too-wide"].level == "critical"
    assert found["acl too-wide"].message.startswith("ACL user 'too-wide' may run acl, shutdown, ")
    assert found["acl maqsafy-admin"].level == "ok"
    narrow = {f.check: f.level for f in audit(role_url(locked, "admin"), superuser_url=locked.url)}
    locked.client().acl_setuser("maqsafy-ops", enabled=True, commands=["-psubscribe"])
    after = {f.check: f for f in audit(role_url(locked, "admin"), superuser_url=locked.url)}
    assert narrow["acl maqsafy-ops"] == "ok" and after["acl maqsafy-ops"].level == "warn"
    assert "narrower than the ops role" in after["acl maqsafy-ops"].message


def test_as_a_role_user_without_the_superuser_it_says_so(locked: RedisServer) -> None:
    found = levels(audit(role_url(locked, "producer")))
    assert found == {
        "auth": "ok",
        "bind": "warn",
        "app user": "ok",
        "app user acl": "ok",
        "acl users": "warn",
    }
    locked.client().acl_setuser("maqsafy-producer", enabled=True, commands=["+flushall"])
    [acl] = [f for f in audit(role_url(locked, "producer")) if f.check == "app user acl"]
    assert (acl.level, acl.message) == ("critical", "this user (maqsafy-producer) may run FLUSHALL")
    assert locked.client().dbsize() >= 0 and locked.client().acl_users()  # nothing ran


def test_the_scan_names_real_looking_secrets_only(clean_tree: Path, tmp_path: Path) -> None:
    assert scan(clean_tree) == []
    (clean_tree / "docs").mkdir()
    (clean_tree / "docs" / "howto.md").write_text(
        f"connect with redis://:{REAL}@redis:6379/0\nor redis://:<redis-password>@redis:6379/0\n"
    )
    (clean_tree / "inventory" / "staging.yml").write_text(f"vars:\n  redis_password: {REAL}\n")
    (clean_tree / "redis.conf").write_text(f"bind 127.0.0.1\nrequirepass {REAL}\n")
    (clean_tree / "tests").mkdir()
    (clean_tree / "tests" / "fixture.yml").write_text(f"password: {REAL}\n")  # skipped
    found = [(leak.path, leak.line, leak.kind) for leak in scan(clean_tree)]
    assert found == [
        ("docs/howto.md", 1, "password in a URL"),
        ("inventory/staging.yml", 2, "secret value"),
        ("redis.conf", 2, "requirepass value"),
    ]
    done = invoke(
        app_env(tmp_path, "redis://127.0.0.1:1/0"), "audit.security", "--path", str(clean_tree)
    )
    assert done.returncode == 2
    assert "[CRIT] secret: inventory/staging.yml:2: secret value" in done.stdout
    assert REAL not in done.stdout + done.stderr


def test_the_project_itself_has_no_finding(tmp_path: Path) -> None:
    """A fresh clone's `audit.security` must not fail on its own README's examples."""
    root = Path(__file__).resolve().parents[2]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "HEAD"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    assert scan(tmp_path) == []


@pytest.mark.parametrize(
    ("line", "found"),
    [
        (f"requirepass {REAL}", True),  # redis.conf
        (f'  requirepass "{REAL}"', True),
        (f"redis-server --appendonly yes --requirepass {REAL}", True),
        (f"redis-cli CONFIG SET requirepass {REAL}", True),
        (f"`requirepass {REAL}`", True),
        (f"REDIS_PASSWORD={REAL}", True),
        ("Redis has no requirepass (its default user is nopass)", False),  # prose
        ("set requirepass (or ACL users) on the server", False),
        ("requirepass <redis-password>", False),
        ('--requirepass "$$REDIS_PASSWORD"', False),
        ("requirepass ${REDIS_PASSWORD}", False),
        ("requirepass changeme", False),
        ("REDIS_PASSWORD=", False),
        ("REDIS_PASSWORD=null", False),
    ],
)
def test_a_placeholder_is_not_a_value(line: str, found: bool) -> None:
    assert bool(scan_text("notes.md", line)) is found


@pytest.mark.parametrize(
    ("bind", "public"),
    [
        ("127.0.0.1 -::1", []),
        ("10.0.3.7 127.0.0.1", []),
        ("0.0.0.0", ["0.0.0.0"]),
        ("* -::*", ["*", "::*"]),
        ("", ["(every interface)"]),
        ("34.1.2.3 127.0.0.1", ["34.1.2.3"]),
    ],
)
def test_public_binds(bind: str, public: list[str]) -> None:
    assert public_binds(bind) == public


def test_tls_where_the_server_offers_it(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    require(openssl is not None, "openssl is not installed (needed to make a test certificate)")
    require_system_redis("is built without TLS")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [str(openssl), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls_port = free_port()
    server = start_redis(
        tmp_path / "tls", "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        password=ADMIN_PW,
    )  # fmt: skip
    try:
        plain = {f.check: f for f in audit(server.url)}
        assert plain["tls"].level == "warn"
        assert f"offers TLS on port {tls_port} but the app connects without it" in (
            plain["tls"].message
        )
        secure = audit(f"rediss://:{ADMIN_PW}@127.0.0.1:{tls_port}/0?ssl_cert_reqs=none")
        assert levels(secure)["tls"] == "ok" and levels(secure)["auth"] == "ok"
    finally:
        server.stop()
