"""Who is signed in: sign-in with an operator account, the session behind the cookie, sign-out.

Sign-in asks the platform's login protection first (:class:`celery_app.stores.login.LoginGuard`:
every attempt counts as a failure before the password is checked, per account and per client
address, with a lockout), then the operator's password (:func:`runbooks.access.operators.verify`,
the same check `invoke login` makes), and on success starts a session in the platform's session
store (:class:`celery_app.stores.sessions.SessionStore`, role ``sessions``) named by the
operator, holding the session's CSRF token. The cookie holds only the session id.

Every signed-in request reads the session, then the operator's account: a disabled or deleted
operator's session ends there, and the role shown is the one SQL holds now. The role is judged
again by the access gate on every action (:mod:`runbooks.console.acting`).

The client address is the TCP peer's: no proxy header is trusted, so behind a reverse proxy
every client shares the proxy's address budget (50 failures per 15 minutes by default).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from celery_app.errors import InvalidRequest
from celery_app.infra.db import UnitOfWork
from celery_app.stores.sessions import session_id
from runbooks.access import guarded, operators
from runbooks.console import csrf
from runbooks.console.wiring import Console
from runbooks.errors import AccessDenied

COOKIE = "maqsafy_console"
REFUSED = "sign-in refused: unknown operator, wrong password or disabled"
UNKNOWN_ADDRESS = "0.0.0.0"  # a peer that is no IP address (none on TCP) shares one budget


@dataclass(frozen=True)
class Viewer:
    """The operator a request is signed in as: name, current role, the session's CSRF token."""

    name: str
    role: str
    csrf: str
    session: str


def client_address(host: str | None) -> str:
    """The peer address the login guard counts (an IP address)."""
    try:
        return ipaddress.ip_address(host or "").compressed
    except ValueError:
        return UNKNOWN_ADDRESS


def sign_in(console: Console, name: str, password: str, address: str) -> Viewer:
    """Check the attempt, then the password; start a session. RateLimited while the account
    or address is locked out; AccessDenied (one wording) for any wrong name or password."""

    def check() -> tuple[str, str]:
        with UnitOfWork(console.app.sessions) as uow:
            operator = operators.verify(uow.session, name, password)
            return operator.name, operator.role

    try:
        name, role = guarded.admit(console.guard, name, address, check)
    except AccessDenied:
        raise AccessDenied(REFUSED) from None
    token = csrf.new_token()
    session = console.sessions.create(name, {"csrf": token})
    return Viewer(name, role, token, session.id)


def resolve(console: Console, cookie: str | None) -> Viewer | None:
    """The operator the session cookie names, its idle timeout renewed; None when there is no
    live session or its operator is disabled or gone (then the session ends)."""
    if not cookie:
        return None
    try:
        sid = session_id(cookie)
    except InvalidRequest:
        return None
    session = console.sessions.read(sid)
    if session is None:
        return None
    with UnitOfWork(console.app.sessions) as uow:
        try:
            operator = operators.signed_in(uow.session, session.user_id)
        except AccessDenied:
            operator = None
        role = operator.role if operator is not None else ""
    if operator is None:
        console.sessions.destroy(sid)
        return None
    if console.sessions.touch(session) is None:
        return None
    return Viewer(session.user_id, role, str(session.data.get("csrf", "")), sid)


def sign_out(console: Console, viewer: Viewer) -> None:
    """End the viewer's session."""
    console.sessions.destroy(viewer.session)
