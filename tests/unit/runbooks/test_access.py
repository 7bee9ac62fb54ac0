"""The access rules that need no database: password hashes, tokens, roles, what needs
approval, the digests that pin an approval to its arguments, the token file's modes, and
`approval:` in books and inventories."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from runbooks.access import approvals, passwords, roles, rules, token_file
from runbooks.engine.book import load_book
from runbooks.engine.inventory import load_inventory
from runbooks.errors import AccessDenied, BookError, InventoryError


def test_password_hash_is_salted_scrypt_and_verifies_only_the_password() -> None:
    one, two = passwords.hash_password("correct horse"), passwords.hash_password("correct horse")
    assert one.startswith("scrypt$32768$8$1$") and one != two  # salted
    assert "correct horse" not in one
    assert passwords.verify_password("correct horse", one)
    assert not passwords.verify_password("correct horsf", one)
    assert not passwords.verify_password("correct horse", "scrypt$broken")
    assert not passwords.verify_password("correct horse", "md5$x$y$z$a$b")


def test_tokens_are_random_and_kept_as_digests() -> None:
    a, b = passwords.new_token(), passwords.new_token()
    assert a != b and a.startswith("mqo_") and len(a) > 40
    assert passwords.token_digest(a) == passwords.token_digest(a) != passwords.token_digest(b)
    assert a not in passwords.token_digest(a)


@pytest.mark.parametrize(
    ("role", "needed", "allowed"),
    [
        ("viewer", "viewer", True),
        ("viewer", "operator", False),
        ("operator", "operator", True),
        ("operator", "approver", False),
        ("approver", "operator", True),
        ("approver", "admin", False),
        ("admin", "approver", True),
        ("root", "viewer", False),
    ],
)
def test_roles_are_ordered(role: str, needed: str, allowed: bool) -> None:
    assert roles.allows(role, needed) is allowed


def test_the_role_each_record_needs() -> None:
    assert roles.needed_role("failed.flush", "failed.flush") == "operator"
    assert roles.needed_role("deploy.releases", "deploy.releases") == "viewer"
    # a book that calls itself deploy.releases is still a run: the command decides
    assert roles.needed_role("deploy.releases", "run") == "operator"
    assert roles.needed_role("deploy.releases", None) == "operator"
    assert roles.needed_role("approvals.approve", "approve") == "approver"
    assert roles.needed_role("operators.add", "operators.add") == "admin"
    with pytest.raises(AccessDenied, match="unknown role 'root'"):
        roles.parse_role("root")


@pytest.mark.parametrize(
    ("name", "environment", "arguments", "needs"),
    [
        ("queue.purge", "local", {"queue": "payments", "force": True}, True),
        ("queue.purge", "local", {"queue": "maintenance", "force": True}, False),
        ("queue.purge", "local", {"queue": "payments", "force": False}, False),
        ("failed.flush", "local", {"hours": None}, True),
        ("failed.flush (remote)", "staging", {"book": "failed.flush (remote)"}, True),
        ("failed.prune", "local", {"hours": 1}, False),
        ("cache.clear", "production", {}, True),
        ("cache.clear", "staging", {}, False),
    ],
)
def test_what_the_tool_holds_dangerous(
    name: str, environment: str, arguments: dict[str, object], needs: bool
) -> None:
    assert (rules.needs_approval(name, environment, arguments) is not None) is needs


def test_digests_pin_the_arguments_but_not_the_reason() -> None:
    base = approvals.invocation_digest("failed.flush", {"hours": "48", "reason": "a"})
    assert base == approvals.invocation_digest("failed.flush", {"reason": "b", "hours": "48"})
    assert base != approvals.invocation_digest("failed.flush", {"hours": "0", "reason": "a"})
    assert base != approvals.invocation_digest("failed.prune", {"hours": "48", "reason": "a"})


def test_token_file_is_private_and_env_wins(tmp_path: Path) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    assert token_file.load(environ) is None
    path = token_file.save(environ, "mqo_secret")
    assert path == tmp_path / "cfg" / "maqsafy-ops" / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert token_file.load(environ) == "mqo_secret"
    assert token_file.load({**environ, "MAQSAFY_TOKEN": "mqo_other"}) == "mqo_other"
    assert token_file.remove(environ) and not token_file.remove(environ)
    relative = token_file.config_dir({"XDG_CONFIG_HOME": "relative", "HOME": str(tmp_path)})
    assert relative == Path.home() / ".config" / "maqsafy-ops"  # XDG: relative paths ignored


def test_books_and_inventories_declare_approval(tmp_path: Path) -> None:
    book = tmp_path / "b.yml"
    book.write_text("approval: required\nsteps:\n  - shell: 'true'\n")
    assert load_book(book).approval
    book.write_text("steps:\n  - shell: 'true'\n")
    assert not load_book(book).approval
    book.write_text("approval: yes please\nsteps:\n  - shell: 'true'\n")
    with pytest.raises(BookError, match=r"b.yml:1: approval: expected required or none"):
        load_book(book)
    inventory = tmp_path / "prod.yml"
    inventory.write_text("approval: required\nhosts:\n  here: {connection: local}\n")
    assert load_inventory(inventory, {}).approval
    inventory.write_text("approval: true\nhosts:\n  here: {connection: local}\n")
    with pytest.raises(InventoryError, match="approval: expected required or none"):
        load_inventory(inventory, {})
