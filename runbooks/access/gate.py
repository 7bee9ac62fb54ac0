"""The one decision every history record passes: who is acting, may they, and is it approved.

:func:`runbooks.engine.history.start_run` calls :func:`admit` inside the transaction that
inserts the record, so no command that records itself (every one that changes state) can act
without it:

- **No operator account** in the database: the OS user is the one local operator, as before.
  A command the tool itself deems dangerous runs with a warning (there is no second person to
  ask); a book or environment *declared* `approval: required` is refused, saying to create
  accounts: the declaration asks for two people, and one person cannot be two.
- **Accounts exist**: the token the command line holds (:func:`use_token`; `invoke login`)
  must be live, or the operator the console signed in (:func:`context.signed_in_as`) still
  enabled; the operator's role must allow the record (:mod:`runbooks.access.roles`);
  a record that needs approval spends the approval `approvals.run` grants (:func:`granted`),
  or else becomes an approval request (:class:`ApprovalPending`) and nothing runs.

An operator signed in to the console is never the local operator, even with no account left.

The command line says which command is running (:func:`runbooks.access.context.invoking`, from
every task call) so that a request can be run again exactly, and gives the token source once
at start (:func:`runbooks.access.context.use_token`).
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy.orm import Session, sessionmaker

from runbooks.access import approvals, context, rules
from runbooks.access.context import Invocation
from runbooks.access.operators import active_count, authenticate, signed_in
from runbooks.access.roles import allows, needed_role
from runbooks.access.tables import Operator
from runbooks.errors import AccessDenied, ApprovalPending

log = logging.getLogger("runbooks.access")


@dataclass(frozen=True)
class Intent:
    """The record about to be opened: what the gate judges."""

    kind: str
    name: str
    environment: str
    arguments: Mapping[str, Any]
    check: bool = False
    approval: str | None = None  # why a book or inventory requires approval, if it does

    def digest(self) -> str:
        return approvals.digest(
            {
                "kind": self.kind,
                "name": self.name,
                "environment": self.environment,
                "arguments": dict(self.arguments),
                "check": self.check,
            }
        )


@dataclass(frozen=True)
class Admitted:
    """Who the record names: the operator, and the approver and approval when one was spent."""

    operator: str
    approved_by: str = ""
    approval_id: int | None = None
    local: bool = False  # no accounts: the OS user


_admitted: ContextVar[Admitted | None] = ContextVar("admitted", default=None)


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def last_admitted() -> Admitted | None:
    """Who the last record opened in this context names."""
    return _admitted.get()


def may(sessions: sessionmaker[Session], name: str) -> Admitted:
    """Who is acting, if they may open the record `name` (the record's own admission judges
    again): for a command to refuse before it asks anything (a password, a decision)."""
    with sessions() as session, session.begin():
        if _local(session):
            return Admitted(os_user(), local=True)
        operator = _acting(session)
        invocation = context.invocation.get()
        _check_role(operator.name, operator.role, name, invocation.command if invocation else None)
        return Admitted(operator.name)


def _local(session: Session) -> bool:
    """Whether the one local operator acts: no accounts, and nobody signed in to the console."""
    return context.signed_in.get() is None and active_count(session) == 0


def _acting(session: Session) -> Operator:
    """The operator acting: the one the console signed in, else the token's."""
    name = context.signed_in.get()
    return signed_in(session, name) if name is not None else authenticate(session, context.token())


def _check_role(who: str, role: str, name: str, command: str | None) -> None:
    needed = needed_role(name, command)
    if not allows(role, needed):
        raise AccessDenied(
            f"{who} is {'an' if role[0] in 'aeiou' else 'a'} {role}: {command or name} needs "
            f"the {needed} role (an admin changes roles)"
        )


def admit_apart(sessions: sessionmaker[Session], intent: Intent) -> Admitted:
    """:func:`admit` in a transaction of its own, for an act recorded elsewhere (a book sent to
    the ops queue is recorded by the worker that runs it, naming who this admits)."""
    try:
        with sessions() as session, session.begin():
            return admit(sessions, session, intent)
    except RequestNeeded as needed:
        request_approval(sessions, needed)


def admit(sessions: sessionmaker[Session], session: Session, intent: Intent) -> Admitted:
    """Decide the record `intent` (see the module docstring); the Admitted names who it names.

    `session` is the record's own transaction (a spent approval commits with it); when a
    request is to be made, RequestNeeded is raised for the caller to make it apart.
    """
    invocation = context.invocation.get()
    command = invocation.command if invocation else None
    why = None  # check mode changes nothing: no second person needed
    if not intent.check:
        why = intent.approval or rules.needs_approval(
            intent.name, intent.environment, intent.arguments
        )
    if _local(session):
        if intent.approval:
            raise AccessDenied(
                f"{intent.approval}, and approvals need operator accounts: add them with "
                "`invoke operators.add NAME --role admin` (the first is an admin)"
            )
        if why:
            log.warning(
                "%s would need an approval (%s); with no operator accounts it runs as the one "
                "local operator (invoke operators.add starts the two-person rule)",
                command or intent.name,
                why,
            )
        admitted = Admitted(os_user(), local=True)
        _admitted.set(admitted)
        return admitted
    operator = _acting(session)
    _check_role(operator.name, operator.role, intent.name, command)
    admitted = Admitted(operator.name)
    if why:
        admitted = _approved(sessions, session, intent, operator.name, why, invocation)
    _admitted.set(admitted)
    return admitted


def _approved(
    sessions: sessionmaker[Session],
    session: Session,
    intent: Intent,
    operator: str,
    why: str,
    invocation: Invocation | None,
) -> Admitted:
    grant = context.grant.get()
    if invocation is None:
        raise AccessDenied(f"{intent.name} needs an approval ({why}): ask from the command line")
    if grant is not None:
        row = approvals.use(
            session, grant, operator, invocation.command, invocation.arguments, intent.digest()
        )
        context.grant.set(None)  # spent: later records of this command need none of their own
        return Admitted(operator, row.decided_by or "", row.id)
    reason = str(invocation.arguments.get("reason") or "").strip()
    if not reason:
        raise AccessDenied(
            f"{invocation.command} needs an approval ({why}): add --reason saying why, and "
            "another approver grants it"
        )
    raise RequestNeeded(
        dict(
            command=invocation.command,
            arguments=invocation.arguments,
            record_digest=intent.digest(),
            record=intent.name,
            environment=intent.environment,
            why=why,
            reason=reason,
            requested_by=operator,
        )
    )


class RequestNeeded(Exception):
    """Raised by :func:`admit` inside the record's transaction, which then rolls back; the
    caller makes the request apart with :func:`request_approval` (SQLite has one writer)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        super().__init__(fields["command"])


def request_approval(sessions: sessionmaker[Session], needed: RequestNeeded) -> NoReturn:
    """Store the approval request `needed` describes, then raise ApprovalPending."""
    made = approvals.request(sessions, **needed.fields)
    number, operator = made["id"], made["requested_by"]
    raise ApprovalPending(
        number,
        f"approval {number} requested ({made['why']}); nothing ran: another approver runs "
        f"`invoke approve {number}`, then {operator} runs `invoke approvals.run {number}`",
    )
