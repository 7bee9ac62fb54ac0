"""Password checks behind the platform's login protection, for the console and `invoke login`.

Every attempt is counted as a failure per account and per client address before the password
is checked (:class:`celery_app.stores.login.LoginGuard`); a success forgets the account's
failures. The console and the command line share one budget per account, so guessing an
operator's password is as slow from a shell as from a browser.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from celery_app.errors import InvalidRequest, RateLimited
from celery_app.stores.login import LoginGuard, subject
from runbooks.access import operators
from runbooks.errors import AccessDenied

T = TypeVar("T")
THIS_MACHINE = "127.0.0.1"  # `invoke login` is counted as a client on this machine


def admit(guard: LoginGuard, name: str, address: str, check: Callable[[], T]) -> T:
    """`check()` (the password check, raising AccessDenied) if the guard allows an attempt by
    `name` from `address`; RateLimited while either is locked out. A name that cannot be an
    account is refused without spending an attempt."""
    try:
        subject("account", name)
    except InvalidRequest:
        raise AccessDenied(operators.REFUSED) from None
    decision = guard.attempt(name, address)
    if not decision.allowed:
        wait = max(1, round(decision.retry_after))
        raise RateLimited(f"too many sign-in attempts: try again in {wait} s", wait)
    value = check()
    guard.succeeded(decision)
    return value
