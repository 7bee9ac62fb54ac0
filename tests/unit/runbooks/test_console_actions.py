"""The console's deploy-side forms, without services: what a form may ask for, and that the
arguments it gives the access gate are the command line's own (an approval requested from the
console runs with `invoke approvals.run N`, which binds the command's arguments again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from invoke import Context
from starlette.datastructures import FormData

from celery_app.errors import InvalidRequest
from runbooks.access import context
from runbooks.cli import deploy as deploy_cli
from runbooks.cli import workers as workers_cli
from runbooks.console.pages import deploying, workers
from runbooks.console.wiring import Console

V1 = "20261202T010203Z-61c3a7a"


def bound(task: Any, **given: Any) -> dict[str, Any]:
    """The arguments the command line records for `task` called with `given`."""
    with context.invoking(task.name, task.body, (Context(),), given):
        invocation = context.invocation.get()
        assert invocation is not None
        return dict(invocation.arguments)


class Wired:
    """The two fields of a Console the forms read."""

    inventory_dir = Path("/srv/inventory")
    repo = Path(".")


CONSOLE: Console = Wired()  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("command", "fields", "cli", "flags"),
    [
        ("deploy", {"env": "test", "ref": "v2"}, deploy_cli.deploy, {"ref": "v2"}),
        ("deploy.rollback", {"env": "test", "to": V1}, deploy_cli.rollback, {"to": V1}),
        ("deploy.rollback", {"env": "test"}, deploy_cli.rollback, {}),
    ],
)
def test_a_deploy_form_names_what_the_command_line_would(
    command: str, fields: dict[str, str], cli: Any, flags: dict[str, Any]
) -> None:
    for check_run, check in (("", True), ("12", False)):
        form = FormData({**fields, "check_run": check_run, "reason": "release day"})
        asked = deploying.asked(command, form)
        assert (asked.check, asked.check_run) == (check, int(check_run) if check_run else None)
        expected = bound(
            cli, env="test", check=check, inventory="/srv/inventory", reason="release day", **flags
        )
        assert asked.typed(CONSOLE) == expected


def test_the_restart_form_names_what_the_command_line_would() -> None:
    given = {"env": "test", "limit": "host1", "inventory": "/srv/inventory"}
    assert workers.restart_arguments("test", "host1", Path("/srv/inventory")) == bound(
        workers_cli.restart, **given
    )


@pytest.mark.parametrize(
    ("command", "fields", "says"),
    [
        ("deploy", {"env": "test", "ref": ""}, "give the git ref"),
        ("deploy", {"env": "../etc", "ref": "v1"}, "expected a name like staging"),
        ("deploy", {"ref": "v1"}, "expected a name like staging"),
        ("deploy.rollback", {"env": "test", "to": "v1"}, "expected a release name"),
        ("deploy", {"env": "test", "ref": "v1", "check_run": "-3"}, "bad check run id"),
        ("deploy", {"env": "test", "ref": "v1", "reason": "x" * 501}, "at most 500"),
    ],
)
def test_a_bad_form_is_refused_saying_what_is_wrong(
    command: str, fields: dict[str, str], says: str
) -> None:
    with pytest.raises(InvalidRequest, match=says):
        deploying.asked(command, FormData(fields))
