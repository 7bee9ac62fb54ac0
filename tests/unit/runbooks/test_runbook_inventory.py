"""Inventories: hosts, groups, vars, ${VAR} secrets; malformed files give file:line:field."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbooks.engine.inventory import INVENTORY_DIR, load_environment, load_inventory
from runbooks.errors import InventoryError, NotFound, SecretLiteral

GOOD = """\
environment: staging
defaults: {user: deploy, port: 2222, key: ~/.ssh/id}
vars:
  redis_port: 6379
  redis_password: ${REDIS_PASSWORD}
  broker_url: redis://:${REDIS_PASSWORD}@redis:6379/0
groups:
  workers:
    vars: {queues: payments, redis_port: 6380}
hosts:
  w1: {address: 10.0.0.1, groups: [workers]}
  w2: {address: 10.0.0.2, groups: [workers], vars: {redis_port: 7000}}
  r1: {address: 10.0.0.3, port: 22, groups: [redis]}
"""


def write(tmp_path: Path, text: str, name: str = "staging.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_hosts_groups_and_vars_with_precedence(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, GOOD), {"REDIS_PASSWORD": "pw-123"})
    assert list(inv.hosts) == ["w1", "w2", "r1"]
    assert inv.hosts["w1"].port == 2222 and inv.hosts["r1"].port == 22
    assert inv.hosts["w1"].user == "deploy"
    assert inv.groups["workers"] == ("w1", "w2")
    assert inv.host_vars(inv.hosts["w1"])["redis_port"] == 6380
    assert inv.host_vars(inv.hosts["w2"])["redis_port"] == 7000
    assert inv.host_vars(inv.hosts["r1"])["redis_port"] == 6379
    assert inv.vars["broker_url"] == "redis://:pw-123@redis:6379/0"
    assert "pw-123" in inv.secrets


def test_secrets_referenced_inside_urls_are_known(tmp_path: Path) -> None:
    text = "vars:\n  url: redis://:${RB_PASS}@h:6379/0\n  dsn: ${DB_TOKEN}\nhosts: {a: {}}\n"
    inv = load_inventory(write(tmp_path, text), {"RB_PASS": "url-pw", "DB_TOKEN": "tok-9"})
    assert {"url-pw", "tok-9"} <= set(inv.secrets)


@pytest.mark.parametrize(
    ("pattern", "limit", "expected"),
    [
        ("all", None, ["w1", "w2", "r1"]),
        ("workers", None, ["w1", "w2"]),
        ("all", "w*", ["w1", "w2"]),
        ("all", "workers,!w2", ["w1"]),
        ("!redis", None, ["w1", "w2"]),
        ("workers", "r1,w2", ["w2"]),
    ],
)
def test_select(tmp_path: Path, pattern: str, limit: str | None, expected: list[str]) -> None:
    inv = load_inventory(write(tmp_path, GOOD), {"REDIS_PASSWORD": "x"})
    assert [h.name for h in inv.select(pattern, limit)] == expected


def test_unknown_limit_is_named(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, GOOD), {"REDIS_PASSWORD": "x"})
    with pytest.raises(NotFound, match="'db' matches no host"):
        inv.select("all", "db")


@pytest.mark.parametrize(
    ("text", "line", "field", "error"),
    [
        (
            "hosts:\n  a:\n    vars:\n      redis_password: hunter2\n",
            4,
            "hosts.a.vars.redis_password",
            SecretLiteral,
        ),
        ("vars:\n  api_token: abc\nhosts: {a: {}}\n", 2, "vars.api_token", SecretLiteral),
        ("vars:\n  url: redis://:hunter2@h:6379\nhosts: {a: {}}\n", 2, "vars.url", SecretLiteral),
        ("hosts:\n  a:\n    password: hunter2\n", 3, "hosts.a.password", SecretLiteral),
        ("hosts:\n  a:\n    adress: 1.2.3.4\n", 3, "hosts.a.adress", InventoryError),
        ("hosts:\n  a:\n    port: http\n", 3, "hosts.a.port", InventoryError),
        ("hosts:\n  a:\n    connection: telnet\n", 3, "hosts.a.connection", InventoryError),
        ("vars:\n  x: ${NOT_SET_ANYWHERE}\nhosts: {a: {}}\n", 2, "vars.x", InventoryError),
        ("hosts: {}\n", 1, "hosts", InventoryError),
        ("hosts:\n  a: {}\n  a: {}\n", 3, "", InventoryError),
        ("hosts:\n  a: [1\n", 3, "", InventoryError),
        ("colour: blue\nhosts: {a: {}}\n", 1, "colour", InventoryError),
    ],
)
def test_malformed_inventory_names_file_line_field(
    tmp_path: Path, text: str, line: int, field: str, error: type[Exception]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(error) as caught:
        load_inventory(path, {})
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: {field}")
    assert "\n" not in message
    assert "hunter2" not in message


def test_secret_reference_with_default_and_examples_load(tmp_path: Path) -> None:
    path = write(tmp_path, "vars:\n  redis_password: ${RP:-}\nhosts: {a: {}}\n")
    assert load_inventory(path, {}).vars["redis_password"] == ""
    env = {"REDIS_PASSWORD": "placeholder", "DATABASE_URL": "sqlite://"}
    for example in INVENTORY_DIR.glob("*.example.yml"):
        inv = load_inventory(example, env)
        assert inv.hosts
    local = load_environment("local", {})
    assert local.hosts["localhost"].is_local


def test_unknown_environment_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    with pytest.raises(NotFound, match="known: staging"):
        load_environment("prod", {}, tmp_path)


@pytest.mark.parametrize(
    "name", ["redis_pass", "db_pwd", "redis_auth", "api_token", "signing_key", "client_secret"]
)
def test_every_secret_name_refuses_a_literal_and_takes_a_reference(
    tmp_path: Path, name: str
) -> None:
    path = write(tmp_path, f"vars:\n  other: 1\n  {name}: hunter2\nhosts: {{a: {{}}}}\n")
    with pytest.raises(SecretLiteral) as caught:
        load_inventory(path, {})
    assert str(caught.value).startswith(f"{path}:3: vars.{name}: a literal secret is refused")
    assert "hunter2" not in str(caught.value)
    path.write_text(f"vars:\n  {name}: ${{SOME_VAR}}\nhosts: {{a: {{}}}}\n")
    inv = load_inventory(path, {"SOME_VAR": "from-env"})
    assert inv.vars[name] == "from-env" and "from-env" in inv.secrets


def test_names_that_hold_no_secret_keep_their_literals(tmp_path: Path) -> None:
    text = (
        "defaults: {key: ~/.ssh/id, host_key_check: strict}\n"
        "vars: {cache_key: 'maqsafy:cache:x', key_prefix: maqsafy, idempotency_key: k-1,"
        " ssh_auth_sock: /tmp/agent, fencing_token: 3}\n"
        "hosts: {a: {}}\n"
    )
    inv = load_inventory(write(tmp_path, text), {})
    assert inv.vars["key_prefix"] == "maqsafy" and inv.hosts["a"].key == "~/.ssh/id"


def test_reach_defaults_to_ssh_for_ssh_hosts_and_direct_for_local_ones(tmp_path: Path) -> None:
    remote = load_inventory(write(tmp_path, GOOD), {"REDIS_PASSWORD": "pw"})
    here = load_inventory(write(tmp_path, "hosts: {me: {connection: local}}\n", "l.yml"), {})
    told = load_inventory(
        write(tmp_path, "reach: direct\n" + GOOD, "d.yml"), {"REDIS_PASSWORD": "p"}
    )
    assert (remote.reach, here.reach, told.reach) == ("ssh", "direct", "direct")
    with pytest.raises(InventoryError, match=r"b.yml:1: reach: expected one of: ssh, direct"):
        load_inventory(write(tmp_path, "reach: vpn\nhosts: {a: {}}\n", "b.yml"), {})


def test_jump_host_is_given_to_every_ssh_host_with_the_defaults(tmp_path: Path) -> None:
    text = "jump: {address: bastion.example.org, port: 2200}\n" + GOOD
    text += "  me: {connection: local}\n"
    inv = load_inventory(write(tmp_path, text), {"REDIS_PASSWORD": "pw"})
    jump = inv.hosts["w1"].jump
    assert jump is not None and (jump.address, jump.port, jump.user) == (
        "bastion.example.org",
        2200,
        "deploy",  # from defaults
    )
    assert inv.hosts["me"].jump is None and "jump" not in inv.hosts
    with pytest.raises(InventoryError, match=r"j.yml:1: jump: .*needs an address"):
        load_inventory(write(tmp_path, "jump: {user: x}\nhosts: {a: {}}\n", "j.yml"), {})
