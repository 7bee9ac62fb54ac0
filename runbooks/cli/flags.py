"""Flags: the `task` decorator, help texts shared by several commands, and the parsers of values
typed on the command line (each refusal one `error:` line, exit 2)."""

from __future__ import annotations

from typing import Any

from invoke import Task
from invoke import task as invoke_task

from celery_app.inputs import shown
from runbooks.cli.errors import operator_errors, refuse

JSON_HELP = {"json": "print one JSON document"}
REASON_HELP = {"reason": "why: kept with the approval request when this needs a second person"}
INVENTORY_HELP = "with --env: the inventory folder (default ./inventory)"
# --env/--inventory of a command that works on an environment's Redis
ON_REDIS_HELP = {
    "env": "an inventory environment whose Redis to use (default: this machine's REDIS_*); "
    "reached as its inventory's `reach` says (ssh: tunnelled through an app host)",
    "inventory": INVENTORY_HELP,
}


def pick(helps: dict[str, str], *names: str) -> dict[str, str]:
    """The help texts of `names` only (a command with some of a family's flags)."""
    return {name: helps[name] for name in names}


class OpsTask(Task):
    """A task whose flags never take `-h` as their short form: `invoke TASK -h` is help.

    Invoke gives each flag its first free letter, so `--host` and `--hours` took `-h`. Its
    flags can be read more than once (Invoke's get_arguments uses up the help texts).
    """

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        return super().arg_opts(name, default, {*taken_names, "h"})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the body with the access gate told which command this is and its arguments (an
        approval request keeps them, to run exactly them later)."""
        from runbooks.access.context import invoking
        from runbooks.cli.program import command_name

        with invoking(command_name(self), self.body, args, kwargs):
            return super().__call__(*args, **kwargs)

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> Any:
        kept = dict(self.help)
        try:
            return super().get_arguments(ignore_unknown_help)
        finally:
            self.help = kept


def task(*args: Any, **kwargs: Any) -> Any:
    """Invoke's @task, making OpsTask tasks."""
    return invoke_task(*args, klass=OpsTask, **kwargs)


def whole(text: str, flag: str, low: int, high: int = 2**63 - 1) -> int:
    """Parse a whole-number flag (declared `str`, so Invoke never parses it): else exit 2."""
    from celery_app.inputs import whole_number

    with operator_errors():
        return whole_number(text, flag, low, high)


def run_id(text: str, flag: str = "") -> int:
    """Parse a run id as `invoke history` shows it; anything else: one line, exit 2."""
    from celery_app.inputs import record_id

    with operator_errors():
        return record_id(text, "run", "`invoke history`", flag)


def node_list(nodes: str) -> list[str]:
    """Parse --nodes: worker node names, comma-separated."""
    from celery_app.inputs import node_names

    with operator_errors():
        return node_names(nodes)


def redis_role(role: str) -> str | None:
    """Parse --role: a Redis role, or None when not given."""
    from celery_app.settings import ROLES

    if role and role not in ROLES:
        refuse(f"unknown Redis role {shown(role)}; expected one of: {', '.join(ROLES)}")
    return role or None
