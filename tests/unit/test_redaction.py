"""Redaction by pattern: what a host alone knows is masked; ordinary sentences stay intact."""

from __future__ import annotations

import json

import pytest

from celery_app.infra.redaction import MASK, Redactor, mask_patterns, secret_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("REDIS_PASSWORD=s3cr3t-only", f"REDIS_PASSWORD={MASK}"),
        ("db postgresql://app:hostpw-123@db/x up", f"db postgresql://app:{MASK}@db/x up"),
        ("redis://:pw@h:6379/0", f"redis://:{MASK}@h:6379/0"),
        ("export API_TOKEN=tok-xyz", f"export API_TOKEN={MASK}"),
        ("export API_TOKEN='tok xyz' done", f"export API_TOKEN='{MASK}' done"),
        ('{"password": "pa\\"ss", "user": "x"}', f'{{"password": "{MASK}", "user": "x"}}'),
        ("{'db_pwd': 'x1', 'redis_auth': 'y'}", f"{{'db_pwd': '{MASK}', 'redis_auth': '{MASK}'}}"),
        ("redis_pass: hunter2 # comment", f"redis_pass: {MASK} # comment"),
        ("Client_Secret = abc", f"Client_Secret = {MASK}"),
        ("apiKey=abc signing_key: def", f"apiKey={MASK} signing_key: {MASK}"),
        ("MAQSAFY_OPS_SIGNING_KEY_PREVIOUS=abc", f"MAQSAFY_OPS_SIGNING_KEY_PREVIOUS={MASK}"),
        (
            "redis-server --requirepass hunter2 --port 1",
            f"redis-server --requirepass {MASK} --port 1",
        ),
        ("requirepass hunter2", f"requirepass {MASK}"),
        ("  masterauth 'hunter2'", f"  masterauth '{MASK}'"),
        ("CONFIG SET requirepass hunter2", f"CONFIG SET requirepass {MASK}"),
        ("requirepass\nhunter2\n", f"requirepass\n{MASK}\n"),
        ("redis-cli -h r -a hunter2 ping", f"redis-cli -h r -a {MASK} ping"),
        (
            '1.5 [0 1.2.3.4:5] "AUTH" "default" "hunter2"',
            f'1.5 [0 1.2.3.4:5] "AUTH" "default" "{MASK}"',
        ),
        ("Authorization: Bearer abc.def", f"Authorization: Bearer {MASK}"),
        ("GET /reset?token=abc", f"GET /reset?token={MASK}"),
    ],
)
def test_masked(text: str, expected: str) -> None:
    assert mask_patterns(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "cache key count: 3",
        "idempotency_key=req-2026-0001 routing_key=payments",
        "fencing_token=42 (fencing token 42), tokens: 4",
        "SSH_AUTH_SOCK=/tmp/ssh-x/agent.1 PWD=/srv/app OLDPWD=/root",
        "MAQSAFY_KEY_PREFIX=maqsafy host_key_check: strict evicted_keys:0",
        'REDIS_PASSWORD=null password: ${REDIS_PASSWORD} REDISCLI_AUTH="$PW" has_password: True',
        "[sudo] Password:\nauth: ok",
        "redis-cli -p 6379 --no-auth-warning ping",
        "wrong REDIS_PASSWORD (or password in REDIS_URL); NOAUTH Authentication required.",
        "w1                ok=3  changed=1  unreachable=0  failed=0  skipped=0  rescued=0",
        "run 12: ok, 2 hosts, 0 failed, 1.20s",
        "redis://redis:6379/0 and https://host:8443/x",
        f"redis://:{MASK}@h:6379/0",
        "if password == expected:",
        "this worker holds no MAQSAFY_OPS_SIGNING_KEY: it runs no runbook requests",
    ],
)
def test_kept_intact(text: str) -> None:
    assert mask_patterns(text) == text


def test_the_name_rule() -> None:
    secret = ["REDIS_PASSWORD", "redis_pass", "db_pwd", "redis_auth", "requirepass", "api_token"]
    secret += ["signing_key", "API_KEY_2", "x-auth-token", "secretKey", "Authorization", "token"]
    plain: list[object] = [
        "key",
        "idempotency_key",
        "cache_key",
        "key_prefix",
        "PWD",
        "auth",
        "pass",
        "bypass",
    ]
    plain += ["SSH_AUTH_SOCK", "fencing_token", "tokens", "host_key_check", "token_ttl", 3]
    plain += ["password_env", "api_token_file", "password_ok"]
    assert [n for n in secret if not secret_name(n)] == []
    assert [n for n in plain if secret_name(n)] == []


def test_redactor_masks_values_under_secret_names_and_keeps_json_valid() -> None:
    redactor = Redactor(['kn"own'])
    data = {"password": "hunter2", "api_token": 7, "idempotency_key": "k-1", "enabled": True}
    assert redactor.value(data) == {
        "password": MASK,
        "api_token": MASK,
        "idempotency_key": "k-1",
        "enabled": True,
    }
    stored = redactor.text(json.dumps({"a": 'x kn"own y', "token": "t\\"}))
    assert json.loads(stored) == {"a": f"x {MASK} y", "token": MASK}


def test_error_lines_mask_patterns_but_keep_a_located_field() -> None:
    from invoke import Exit

    from celery_app.errors import ServiceUnavailable
    from runbooks.cli.errors import operator_errors
    from runbooks.errors import InventoryError

    with pytest.raises(Exit) as caught, operator_errors():
        raise ServiceUnavailable("redis://:hostpw@r:6379/0 refused AUTH (REDISCLI_AUTH=hostpw)")
    assert caught.value.message == (
        f"error: redis://:{MASK}@r:6379/0 refused AUTH (REDISCLI_AUTH={MASK}"
    )
    with pytest.raises(Exit) as caught, operator_errors():
        raise InventoryError("inv.yml", 3, "vars.redis_password", "unknown value api_key=k-9")
    assert (
        caught.value.message
        == f"error: inv.yml:3: vars.redis_password: unknown value api_key={MASK}"
    )
