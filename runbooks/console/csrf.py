"""CSRF tokens: one per session for every form a signed-in page shows, and a double-submit
cookie for the sign-in form (no session exists yet). Compared in constant time.

GET forms (the failed-task filter) change nothing and carry no token: a token in a URL would
land in logs and history.
"""

from __future__ import annotations

import hmac
import secrets

FIELD = "csrf"  # the hidden field every POST form carries
SIGNIN_COOKIE = "maqsafy_console_signin"  # the sign-in form's double-submit token


def new_token() -> str:
    return secrets.token_urlsafe(32)


def matches(given: object, expected: object) -> bool:
    """Whether the form's token `given` is the `expected` one (both non-empty strings)."""
    if not isinstance(given, str) or not isinstance(expected, str) or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
