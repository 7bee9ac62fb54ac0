"""Signed runbook requests for the `ops` queue: who may run which book where, proven by HMAC.

Anyone who can write to the broker can put a message on `ops`; only a holder of the ops signing
key can put one there that a worker runs. A request names a book under runbooks/books (a name,
never a path), the environment, its options, who asked, when, and a one-time nonce; it travels
with an HMAC-SHA256 over its canonical JSON. The worker refuses, and records the refusal:

- a request with no signature, a bad one, or one made with a key it does not hold;
- one issued more than :data:`MAX_AGE` seconds ago (or from the future beyond a small skew);
- one whose nonce it has seen before (a replay): nonces are SQL rows (``ops_request_nonces``),
  so a Redis that lost its data cannot make an old request new again;
- a book that is not a plain name, or an environment this worker is not configured for.

A slice of a sliced run (``--slices N``) is one signed request per slice: the body also names
the run's request id, the slice's index and the count. A slice may arrive more than once (its
worker died and the broker or another slice hands it on): its nonce seen before, or its age past
:data:`MAX_AGE` once its run has started, is no reason to refuse it, since SQL decides what is
left to run (:mod:`runbooks.engine.history_slices`); the runner checks that, not this module.

Keys come from the environment, never from a file in the repository:
``MAQSAFY_OPS_SIGNING_KEY`` signs and verifies; ``MAQSAFY_OPS_SIGNING_KEY_PREVIOUS`` is also
accepted while a new key rolls out (sign with the new one everywhere, then drop the old). Give
them to the operators' machines and the hosts that run the ops queue only, never to the web
tier. ``MAQSAFY_OPS_ENVIRONMENTS`` (comma-separated, default ``local``) lists the environments
a worker runs books on; ``MAQSAFY_OPS_INVENTORY_DIR`` is the folder of their inventories
(default the project's ``inventory/``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from celery_app.infra.db import UnitOfWork
from celery_app.infra.models import utcnow
from runbooks.engine.history_tables import OpsRequestNonce
from runbooks.errors import RunbookError

KEY_VAR = "MAQSAFY_OPS_SIGNING_KEY"
PREVIOUS_KEY_VAR = "MAQSAFY_OPS_SIGNING_KEY_PREVIOUS"
ENVIRONMENTS_VAR = "MAQSAFY_OPS_ENVIRONMENTS"
INVENTORY_VAR = "MAQSAFY_OPS_INVENTORY_DIR"
BOOKS_VAR = "MAQSAFY_OPS_BOOKS_DIR"
MAX_AGE = 600.0  # seconds a request may wait in the queue before it is refused as expired
SKEW = 30.0  # clocks of the sender and the worker may differ by this much
MIN_KEY_BYTES = 32
BOOK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FIELDS = ("book", "environment", "limit", "tags", "skip_tags", "check")
MAX_SLICES = 64  # `--slices` at most: more tasks than this on ops is a fleet for a deploy
NONCE = re.compile(r"[0-9a-f]{32}")


class RequestRefused(RunbookError):
    """A request on `ops` that this worker will not run (the reason is the message)."""


class SigningKeyMissing(RunbookError):
    """No usable signing key in the environment."""


@dataclass(frozen=True)
class SliceRef:
    """Which slice of which sliced run a request is: `index` of `count` (from 0)."""

    request: str
    index: int
    count: int

    def to_body(self) -> dict[str, Any]:
        return {"request": self.request, "index": self.index, "count": self.count}


@dataclass(frozen=True)
class Envelope:
    """A verified request: what to run and who asked (and which slice, for a sliced run)."""

    fields: dict[str, Any]
    requested_by: str
    nonce: str
    issued_at: float
    slice: SliceRef | None = None


def keys(environ: Mapping[str, str]) -> list[bytes]:
    """The signing keys this process holds: the current one first, then the previous."""
    found = []
    for var in (KEY_VAR, PREVIOUS_KEY_VAR):
        value = environ.get(var, "").strip()
        if not value:
            continue
        if len(value.encode()) < MIN_KEY_BYTES:
            raise SigningKeyMissing(
                f"{var} is shorter than {MIN_KEY_BYTES} bytes: generate one with "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        found.append(value.encode())
    return found


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(key: bytes, body: Mapping[str, Any]) -> str:
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


def signing_key(environ: Mapping[str, str]) -> bytes:
    """The key requests are signed with; SigningKeyMissing when this process holds none."""
    held = keys(environ)
    if not held or not environ.get(KEY_VAR, "").strip():
        raise SigningKeyMissing(
            f"{KEY_VAR} is not set: runbook requests on the ops queue must be signed with the "
            "key the ops workers hold (set it in your environment or .env, never in the repo)"
        )
    return held[0]


def sign(
    fields: Mapping[str, Any],
    requested_by: str,
    environ: Mapping[str, str],
    now: float | None = None,
    part: SliceRef | None = None,
) -> dict[str, Any]:
    """The message body for `fields` (and slice `part`), signed with the current key
    (SigningKeyMissing without)."""
    key = signing_key(environ)
    body = {
        "v": 1,
        **{k: fields.get(k) for k in FIELDS},
        "requested_by": requested_by,
        "issued_at": round(time.time() if now is None else now, 3),
        "nonce": uuid.uuid4().hex,
        **({"slice": part.to_body()} if part is not None else {}),
    }
    return {"body": body, "signature": _mac(key, body)}


def age_refusal(issued_at: float, now: float | None = None) -> str:
    """Why a request issued at `issued_at` is too old or too new to run ('' when it is not)."""
    age = (time.time() if now is None else now) - issued_at
    if age > MAX_AGE:
        return f"expired: issued {age:.0f}s ago (at most {MAX_AGE:.0f}s)"
    if age < -SKEW:
        return f"issued {-age:.0f}s in the future: check the clocks"
    return ""


def _slice(body: Mapping[str, Any]) -> SliceRef | None:
    raw = body.get("slice")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise RequestRefused("malformed slice (not an object)")
    request, index, count = raw.get("request"), raw.get("index"), raw.get("count")
    if not isinstance(request, str) or not NONCE.fullmatch(request):
        raise RequestRefused("malformed slice (no request id)")
    if (
        isinstance(index, int)
        and isinstance(count, int)
        and not isinstance(index, bool)
        and not isinstance(count, bool)
        and 0 <= index < count <= MAX_SLICES
    ):
        return SliceRef(request, index, count)
    raise RequestRefused(f"malformed slice ({str(index)[:10]} of {str(count)[:10]})")


def verify(
    message: Any, environ: Mapping[str, str], now: float | None = None, fresh: bool = True
) -> Envelope:
    """Check a message's signature, fields and (unless not `fresh`) age; not yet its nonce
    (see :func:`consume`). The runner of a slice judges its age itself (see the module)."""
    if not isinstance(message, Mapping) or not isinstance(message.get("body"), Mapping):
        raise RequestRefused("unsigned request (no signed body)")
    body, signature = dict(message["body"]), message.get("signature")
    if not isinstance(signature, str) or not signature:
        raise RequestRefused("unsigned request (no signature)")
    held = keys(environ)
    if not held:
        raise RequestRefused(f"this worker holds no {KEY_VAR}: it runs no runbook requests")
    if not any(hmac.compare_digest(_mac(key, body), signature) for key in held):
        raise RequestRefused("bad signature: altered, or signed with a key this worker lacks")
    issued = body.get("issued_at")
    if not isinstance(issued, int | float):
        raise RequestRefused("signed request without an issue time")
    too_old = age_refusal(float(issued), now) if fresh else ""
    if too_old:
        raise RequestRefused(too_old)
    book, environment = str(body.get("book", "")), str(body.get("environment", ""))
    if not BOOK_NAME.fullmatch(book):
        raise RequestRefused(f"book must be a name under runbooks/books, got {book[:80]!r}")
    if not ENV_NAME.fullmatch(environment):
        raise RequestRefused(f"bad environment name {environment[:80]!r}")
    allowed = allowed_environments(environ)
    if environment not in allowed:
        raise RequestRefused(
            f"environment {environment!r} is not one this worker serves "
            f"({ENVIRONMENTS_VAR}={','.join(allowed)})"
        )
    nonce = str(body.get("nonce", ""))
    if not NONCE.fullmatch(nonce):
        raise RequestRefused("signed request without a nonce")
    return Envelope(
        {k: body.get(k) for k in FIELDS},
        str(body.get("requested_by", "")),
        nonce,
        float(issued),
        _slice(body),
    )


def allowed_environments(environ: Mapping[str, str]) -> Sequence[str]:
    chosen = environ.get(ENVIRONMENTS_VAR, "").strip() or "local"
    return [e.strip() for e in chosen.split(",") if e.strip()]


def inventory_dir(environ: Mapping[str, str]) -> Path | None:
    """The folder this worker reads inventories from (None: the project's ``inventory/``)."""
    chosen = environ.get(INVENTORY_VAR, "").strip()
    return Path(chosen) if chosen else None


def books_dir(environ: Mapping[str, str]) -> Path | None:
    """The folder books sent to the ops queue are named from, on the sending side and the
    worker's (None: the project's ``runbooks/books``)."""
    chosen = environ.get(BOOKS_VAR, "").strip()
    return Path(chosen) if chosen else None


def consume(sessions: sessionmaker[Session], nonce: str) -> None:
    """Accept `nonce` once; RequestRefused when it was seen before (a replay).

    Nonces older than a request may live are pruned: such a request is refused as expired.
    """
    horizon = utcnow() - dt.timedelta(seconds=2 * (MAX_AGE + SKEW))
    try:
        with UnitOfWork(sessions) as uow:
            uow.session.execute(
                delete(OpsRequestNonce).where(OpsRequestNonce.received_at < horizon)
            )
            uow.session.add(OpsRequestNonce(nonce=nonce))
            uow.commit()
    except IntegrityError:
        raise RequestRefused(f"replayed request (nonce {nonce} was already used)") from None


def claimed(message: Any) -> dict[str, Any]:
    """What an unverified message says about itself, cut short, for the refusal's record."""
    body = message.get("body") if isinstance(message, Mapping) else None
    source = body if isinstance(body, Mapping) else message if isinstance(message, Mapping) else {}
    found = {
        k: str(source.get(k))[:80]
        for k in ("book", "environment", "requested_by", "nonce")
        if k in source
    }
    part = source.get("slice")
    if isinstance(part, Mapping) and isinstance(part.get("request"), str):
        found["run_request"] = str(part["request"])[:80]  # where `--wait` looks for the run
    return found
