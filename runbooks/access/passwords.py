"""Password hashes (scrypt, from the standard library) and API tokens (random, kept as digests).

A password is stored as ``scrypt$n$r$p$salt$hash`` with n=2**15, r=8, p=1 (32 MiB of memory per
guess; one hash took 0.15-0.19 s on the 2-core test machine), a 16-byte random salt, compared in
constant time. Tokens carry 256 random bits, so one sha256 is enough at rest: there is nothing
to guess, only a stolen table to make useless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**15, 8, 1
MAXMEM = 64 * 1024 * 1024
ISSUED_MARK = "mqo_"  # what every issued token starts with (easy to spot in a leak)
MIN_PASSWORD = 12


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    """A new salted scrypt hash of `password`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=MAXMEM)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (compared in constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def new_token() -> str:
    """A new API token as the operator keeps it (shown once, stored only as its digest)."""
    return ISSUED_MARK + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()
