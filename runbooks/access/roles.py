"""Roles, lowest first: each allows what the ones below it allow.

viewer    read-only commands (and the few that record a read: deploy.releases,
          failed.list/show --env)
operator  every command that changes state; asks for approvals
approver  approves or denies another operator's request
admin     adds and disables operator accounts
"""

from __future__ import annotations

from celery_app.inputs import shown
from runbooks.errors import AccessDenied

ROLES = ("viewer", "operator", "approver", "admin")

# Commands that open a history record but change nothing: a viewer may run them.
READ_ONLY_COMMANDS = frozenset({"deploy.releases", "failed.list", "failed.show"})
# Records that need more than the operator role, by record name.
NEEDS = {
    "approvals.approve": "approver",
    "approvals.deny": "approver",
    "operators.add": "admin",
    "operators.disable": "admin",
}


def parse_role(text: str) -> str:
    """A role name as typed (--role); AccessDenied naming the choices otherwise."""
    if text not in ROLES:
        raise AccessDenied(f"unknown role {shown(text)}; expected one of: {', '.join(ROLES)}")
    return text


def allows(role: str, needed: str) -> bool:
    """Whether `role` may do what `needed` may (unknown roles may do nothing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def needed_role(name: str, command: str | None) -> str:
    """The role a record named `name` needs, opened by the command `command` (None: not from
    the command line)."""
    if name in NEEDS:
        return NEEDS[name]
    if command in READ_ONLY_COMMANDS:
        return "viewer"
    return "operator"
