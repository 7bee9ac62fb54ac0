"""Operator accounts and their API tokens: add, list, disable; log in (a token), log out.

    operators.check_add(sessions, "ana", "operator")     # before anything is recorded
    operators.add(sessions, "ana", "operator", password, created_by="root")
    token, expires = operators.login(sessions, "ana", password, days=30)
    operators.authenticate(session, token)               # the Operator, or AccessDenied

The first account must be an admin (it adds the others); the last active admin cannot be
disabled. A token is shown once and kept only as its sha256; it stops working when it expires,
is revoked (logout) or its operator is disabled.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from celery_app.errors import InvalidRequest
from celery_app.infra.db import UnitOfWork
from celery_app.infra.models import utcnow
from celery_app.inputs import shown
from runbooks.access.passwords import (
    MIN_PASSWORD,
    hash_password,
    new_token,
    token_digest,
    verify_password,
)
from runbooks.access.roles import ROLES, parse_role
from runbooks.access.tables import Operator, OperatorToken
from runbooks.errors import AccessDenied, NotFound

NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
DEFAULT_DAYS = 30
MAX_DAYS = 365
REFUSED = "login refused: unknown operator, wrong password or disabled"


@functools.cache
def _dummy_hash() -> str:
    return hash_password("-" * MIN_PASSWORD)


def aware(moment: dt.datetime) -> dt.datetime:
    """SQLite keeps no zone: its rows are written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def active_count(session: Session) -> int:
    """How many operator accounts are enabled (0: the tool is one local operator)."""
    return int(
        session.scalar(select(func.count()).select_from(Operator).where(~Operator.disabled)) or 0
    )


def check_add(sessions: sessionmaker[Session], name: str, role: str) -> None:
    """Refuse a bad name, an unknown role, a name taken, or a first account that is no admin."""
    if not NAME.fullmatch(name):
        raise InvalidRequest(
            f"operator name {shown(name)}: expected 1 to 64 lowercase letters, digits, _ . or -,"
            " starting with a letter"
        )
    parse_role(role)
    with UnitOfWork(sessions) as uow:
        if uow.session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
            raise InvalidRequest(f"operator {name!r} exists (operators.list shows them)")
        if role != "admin" and active_count(uow.session) == 0:
            raise InvalidRequest(
                "the first operator account must be an admin (--role admin): it adds the others"
            )


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(f"the password must have at least {MIN_PASSWORD} characters")


def add(
    sessions: sessionmaker[Session], name: str, role: str, password: str, created_by: str
) -> str:
    """Create the account; return a line saying so."""
    check_add(sessions, name, role)
    check_password(password)
    hashed = hash_password(password)
    try:
        with UnitOfWork(sessions) as uow:
            uow.session.add(
                Operator(
                    name=name,
                    role=role,
                    password_hash=hashed,
                    disabled=False,
                    created_at=utcnow(),
                    created_by=created_by,
                )
            )
            uow.commit()
    except IntegrityError:  # added at the same moment by someone else
        raise InvalidRequest(f"operator {name!r} exists (operators.list shows them)") from None
    return f"added operator {name} ({role})"


def list_operators(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    """Every account, by name: role, disabled, when and by whom it was added, live tokens."""
    now = utcnow()
    with UnitOfWork(sessions) as uow:
        rows = uow.session.scalars(select(Operator).order_by(Operator.name)).all()
        tokens = uow.session.scalars(
            select(OperatorToken).where(OperatorToken.revoked_at.is_(None))
        ).all()
        live: dict[int, int] = {}
        for t in tokens:
            if aware(t.expires_at) > now:
                live[t.operator_id] = live.get(t.operator_id, 0) + 1
        return [
            {
                "name": r.name,
                "role": r.role,
                "disabled": r.disabled,
                "created_at": aware(r.created_at).isoformat(),
                "created_by": r.created_by,
                "tokens": live.get(r.id, 0),
            }
            for r in rows
        ]


def disable(sessions: sessionmaker[Session], name: str) -> str:
    """Disable the account and revoke its tokens (the last active admin stays)."""
    with UnitOfWork(sessions) as uow:
        row = uow.session.scalar(select(Operator).where(Operator.name == name))
        if row is None:
            raise NotFound(f"no operator {shown(name)} (operators.list shows them)")
        if row.disabled:
            return f"operator {name} was already disabled"
        admins = uow.session.scalar(
            select(func.count())
            .select_from(Operator)
            .where(~Operator.disabled, Operator.role == "admin")
        )
        if row.role == "admin" and admins == 1:
            raise InvalidRequest(f"{name} is the last active admin: add another admin first")
        row.disabled = True
        uow.session.execute(
            update(OperatorToken)
            .where(OperatorToken.operator_id == row.id, OperatorToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        uow.commit()
    return f"disabled operator {name}; its tokens are revoked"


def verify(session: Session, name: str, password: str) -> Operator:
    """The enabled operator `name` if `password` is theirs; AccessDenied (one wording, the same
    time taken whether or not the name exists) otherwise."""
    row = session.scalar(select(Operator).where(Operator.name == name))
    stored = row.password_hash if row is not None else _dummy_hash()  # same time taken
    if not verify_password(password, stored) or row is None or row.disabled:
        raise AccessDenied(REFUSED)
    return row


def login(
    sessions: sessionmaker[Session], name: str, password: str, days: int = DEFAULT_DAYS
) -> tuple[str, dt.datetime]:
    """A new token for `name` if `password` is theirs; AccessDenied (one wording) otherwise."""
    with UnitOfWork(sessions) as uow:
        row = verify(uow.session, name, password)
        token = new_token()
        expires = utcnow() + dt.timedelta(days=days)
        uow.session.add(
            OperatorToken(
                operator_id=row.id,
                digest=token_digest(token),
                created_at=utcnow(),
                expires_at=expires,
            )
        )
        uow.commit()
    return token, expires


def logout(sessions: sessionmaker[Session], token: str) -> bool:
    """Revoke `token`; whether it was live."""
    with UnitOfWork(sessions) as uow:
        done = uow.session.execute(
            update(OperatorToken)
            .where(OperatorToken.digest == token_digest(token), OperatorToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        uow.commit()
    return bool(getattr(done, "rowcount", 0))


def signed_in(session: Session, name: str) -> Operator:
    """The enabled operator `name`, who signed in elsewhere (the console checked the password
    and holds the session); AccessDenied when the account is gone or disabled since."""
    operator = session.scalar(select(Operator).where(Operator.name == name))
    if operator is None or operator.disabled:
        raise AccessDenied(f"operator {shown(name)} is disabled or gone: sign in again")
    if operator.role not in ROLES:
        raise AccessDenied(f"operator {operator.name} has an unknown role {operator.role!r}")
    return operator


def authenticate(session: Session, token: str | None) -> Operator:
    """The enabled operator whose live token this is; AccessDenied saying what to do otherwise."""
    if not token:
        raise AccessDenied("this database has operator accounts: log in first (invoke login NAME)")
    found = session.execute(
        select(OperatorToken, Operator)
        .join(Operator, Operator.id == OperatorToken.operator_id)
        .where(OperatorToken.digest == token_digest(token))
    ).first()
    if found is None:
        raise AccessDenied("the token is not known to this database: log in again (invoke login)")
    row, operator = found
    if row.revoked_at is not None or operator.disabled:
        raise AccessDenied("the token was revoked or its operator disabled: log in again")
    if aware(row.expires_at) <= utcnow():
        raise AccessDenied("the token expired: log in again (invoke login NAME)")
    if operator.role not in ROLES:
        raise AccessDenied(f"operator {operator.name} has an unknown role {operator.role!r}")
    row.last_used_at = utcnow()
    return operator
