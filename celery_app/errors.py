"""The app's exceptions, one tree, each message fit to show an operator as one line.

    MaqsafyError
    ├── ConfigError            a setting is malformed; names the variable and what it expects
    ├── ServiceUnavailable     Redis or SQL did not answer; says what to check
    ├── InvalidRequest         bad input to the payment API (amount, account, key); nothing written
    │   ├── UnknownAccount     no such account
    │   └── NotFound           no such record (a failed task id); nothing changed
    ├── Refused                an operation that could destroy what it must not (a money
    │                          queue purge without --force, a cache pattern reaching other
    │                          roles' keys); nothing changed
    ├── RateLimited            a rate limit or login lockout refused the request; says when to retry
    └── LockError              the per-account lock could not be taken or is no longer ours
        └── StaleFence         a lock holder whose grant was superseded tried to commit

Business outcomes (insufficient funds) are not exceptions: they are recorded results.
"""

from __future__ import annotations


class MaqsafyError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(MaqsafyError):
    """A configuration value is malformed."""


class ServiceUnavailable(MaqsafyError):
    """A service (Redis, SQL) could not be reached or refused the request."""


class InvalidRequest(MaqsafyError):
    """Input to the payment API is invalid; nothing was written."""


class UnknownAccount(InvalidRequest):
    """The named account does not exist."""


class NotFound(InvalidRequest):
    """No record has the given id."""


class Refused(MaqsafyError):
    """A destructive operation was refused because it could reach what it must not."""


class RateLimited(MaqsafyError):
    """A rate limit or login lockout refused the request; `retry_after` is in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LockError(MaqsafyError):
    """The per-account lock could not be acquired in time."""


class StaleFence(LockError):
    """The fencing token was superseded: this holder's lock expired and another took it."""
