"""The secret scanner: what counts as a real-looking secret, where (security finding 7)."""

from __future__ import annotations

import pytest

from runbooks.checks.secret_scan import scan_text

FOUND = [
    ("app.py", 'REDIS_PASSWORD = "hunter2-real"'),  # a Python assignment
    ("app.py", 'settings = {"token": "abc123def"}'),
    ("deploy.env", "REDIS_PASSWORD=HUNTER2SECRET"),  # all upper case is still a value
    ("notes.md", "redis://:s3cr3t@cache.internal:6379/0"),
    # Built here, so that this file holds no key itself (the scanner reads tests/ too).
    ("tests/test_x.py", 'TOKEN = "ghp_' + '8f3Kq9ZxLm2VbN7cRt5YwA1sDe4GhJ6u"'),  # a real one
    ("tests/conftest.py", "AKIA" + "IOSFODNN7EXAMPLQ"),
]
CLEAN = [
    ("deploy.env", "REDIS_PASSWORD=${REDIS_PASSWORD}"),
    ("deploy.env", "REDIS_PASSWORD=<redis-password>"),
    ("app.py", 'password_var = "MAQSAFY_REDIS_PASSWORD"'),  # names a variable
    ("app.py", "client = connect(password=settings.redis_password)"),
    ("app.py", 'token = "__maqsafy_" + secrets.token_hex(8)'),  # a prefix code completes
    ("tests/test_x.py", 'PASSWORD = "remote-test-pw-3b8f"'),  # a throwaway test value
    ("README.md", "Redis has no requirepass (its default user is open)"),
]


@pytest.mark.parametrize(("path", "line"), FOUND)
def test_real_looking_values_are_found(path: str, line: str) -> None:
    assert scan_text(path, line), line


@pytest.mark.parametrize(("path", "line"), CLEAN)
def test_placeholders_and_code_are_not(path: str, line: str) -> None:
    assert scan_text(path, line) == []
