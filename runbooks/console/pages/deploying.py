"""Deploy a ref and roll back from the Deploys page, check mode first.

A form runs the action in check mode (`invoke deploy --check`): it says what would change and
changes nothing. The real action is a second POST naming that check run (`check_run`); it is
taken only when that run is a check of the same action, environment and ref (and commit) or
release, by the same operator, ended ok, less than CHECK_FRESH old, and not acted on yet (one
real action per check: a resubmitted "roll back to the previous release" does not go back
twice).

Both call what `invoke deploy` and `invoke deploy.rollback` call (runbooks.deploy.rollout),
with the command line's defaults (every worker host, one at a time, no failure allowed), as
the signed-in operator, in a background thread (runbooks.console.background): the POST
redirects to the action's record. The deploy's own lock refuses a second one running on the
same environment (the record says who holds it). An environment whose inventory says
`approval: required` turns the real action into an approval request (the form's reason says
why), as the command line does: another approver grants it, the requester runs
`invoke approvals.run N`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from celery_app.errors import InvalidRequest
from celery_app.inputs import environment_name, record_id, shown
from runbooks.access import gate
from runbooks.access.context import signed_in_as
from runbooks.console import background, wiring
from runbooks.console.auth import Viewer
from runbooks.console.routing import read_form
from runbooks.console.wiring import Console
from runbooks.deploy import release, rollout
from runbooks.engine import history
from runbooks.errors import NotFound

CHECK_FRESH = dt.timedelta(minutes=15)
MAX_REASON = 500


@dataclass(frozen=True)
class Asked:
    """One deploy or rollback as a form asks for it, with the command line's names."""

    command: str  # deploy | deploy.rollback: the command and its record's name
    env: str
    target: str | None  # the ref (deploy) or release (rollback; None: each host's previous)
    check: bool
    check_run: int | None
    reason: str

    @property
    def key(self) -> str:
        return "ref" if self.command == "deploy" else "to"

    def typed(self, console: Console) -> dict[str, Any]:
        """The arguments as `invoke deploy|deploy.rollback` binds them (so that an approval
        request made here runs with `invoke approvals.run N`)."""
        return {
            "env": self.env,
            self.key: self.target,
            "check": self.check,
            "limit": "",
            "serial": "1",
            "max_fail": "0",
            "json": False,
            "inventory": str(console.inventory_dir or ""),
            "reason": self.reason,
        }


def asked(command: str, form: FormData) -> Asked:
    """The form's action, checked as the command checks its flags (InvalidRequest: 400)."""
    env = environment_name(str(form.get("env") or "").strip())
    target = str(form.get("ref" if command == "deploy" else "to") or "").strip()
    if command == "deploy" and not target:
        raise InvalidRequest("give the git ref to deploy (a tag, branch or commit)")
    if command == "deploy.rollback" and target and not release.RELEASE_NAME.fullmatch(target):
        raise InvalidRequest(
            f"roll back to: expected a release name <time>-<sha> (as the releases list shows "
            f"them) or nothing for each host's previous release, got {shown(target)}"
        )
    reason = str(form.get("reason") or "").strip()
    if len(reason) > MAX_REASON:
        raise InvalidRequest(f"the reason is {len(reason)} characters: at most {MAX_REASON}")
    text = str(form.get("check_run") or "").strip()
    check_run = record_id(text, "check run", "its run page") if text else None
    return Asked(command, env, target or None, check_run is None, check_run, reason)


def verify_check(console: Console, viewer: Viewer, want: Asked, sha: str | None) -> None:
    """Refuse (InvalidRequest) the real action unless `want.check_run` is a fitting check."""
    assert want.check_run is not None
    number = want.check_run
    try:
        run = history.get_run(console.app.sessions, number)
    except NotFound:
        raise InvalidRequest(f"check run {number}: no such run; run the check first") from None
    what = f"{want.command} {want.target or 'to the previous release'} on {want.env}"
    started = dt.datetime.fromisoformat(run["started_at"])
    started = started if started.tzinfo else started.replace(tzinfo=dt.UTC)
    age = dt.datetime.now(dt.UTC) - started
    same = {k: v for k, v in recorded(console, want).items() if k != "check"}
    problem = None
    if run["name"] != want.command or not run["check"]:
        problem = f"run {number} is not a check of {want.command}"
    elif run["operator"] != viewer.name:
        problem = f"check run {number} was run by {run['operator']}: check it yourself"
    elif run["environment"] != want.env or any(
        run["arguments"].get(k) != v for k, v in same.items()
    ):
        problem = f"check run {number} checked another action, not {what}"
    elif sha is not None and run["arguments"].get("sha") != sha:
        problem = f"{want.target} names another commit than check run {number} checked"
    elif run["status"] != "ok":
        problem = f"check run {number} is {run['status']}, not ok"
    elif age > CHECK_FRESH:
        limit = CHECK_FRESH.total_seconds() / 60
        problem = (
            f"check run {number} is {age.total_seconds() / 60:.0f} min old (at most {limit:.0f})"
        )
    if problem:
        raise InvalidRequest(f"{problem}: run the check of {what} again, then act on it")


def claim(console: Console, check_run: int) -> str:
    """Spend `check_run` (one real action per check); InvalidRequest when already spent.
    Returns the key, to give it back when the action did not start."""
    key = console.app.keyspace.lock(f"console:check:{check_run}")
    taken = console.app.redis("locks").set(
        key, "spent", nx=True, ex=int(CHECK_FRESH.total_seconds())
    )
    if not taken:
        raise InvalidRequest(
            f"check run {check_run} was already acted on: run the check again to act again"
        )
    return str(key)


def deploy_request(console: Console, want: Asked) -> rollout.DeployRequest:
    """`invoke deploy`'s request with its default flags, from the console's checkout."""
    return rollout.DeployRequest(
        environment=want.env,
        ref=str(want.target),
        check=want.check,
        serial=rollout.parse_serial("1"),
        max_fail=rollout.parse_max_fail("0"),
        repo=console.repo,
        inventory_dir=console.inventory_dir,
    )


def recorded(console: Console, want: Asked) -> dict[str, Any]:
    """The arguments the action's record holds (as rollout opens it)."""
    if want.command == "deploy":
        return deploy_request(console, want).arguments()
    return rollout.rollback_arguments(want.env, want.target, None, want.check)


def work(console: Console, want: Asked) -> background.Work:
    """The call `invoke deploy` or `invoke deploy.rollback` makes, for the background thread."""

    def run(listener: Any, say: background.Say) -> object:
        if want.command == "deploy":
            request = deploy_request(console, want)
            return rollout.deploy(console.app, request, console.environ, listener, say)
        options = (None, "1", "0", want.check, console.inventory_dir)
        return rollout.rollback(
            console.app, want.env, console.environ, want.target, *options, listener, say
        )

    return run


def prepare(console: Console, viewer: Viewer, want: Asked) -> str | None:
    """Everything that refuses before the thread starts: the role, the ref, the check run;
    returns the key of the spent check (None for a check)."""
    with signed_in_as(viewer.name, want.command, want.typed(console)):
        gate.may(console.app.sessions, want.command)
    sha = release.resolve(console.repo, str(want.target)) if want.command == "deploy" else None
    if want.check_run is None:
        return None
    verify_check(console, viewer, want, sha)
    return claim(console, want.check_run)


async def act(request: Request, viewer: Viewer, command: str) -> Response:
    console = wiring.of(request)
    want = asked(command, await read_form(request))
    spent = await run_in_threadpool(prepare, console, viewer, want)
    try:
        run_id = await background.start(
            console, viewer, command, want.typed(console), work(console, want)
        )
    except BaseException:
        if spent:  # nothing was recorded: the check stays usable
            await run_in_threadpool(console.app.redis("locks").delete, spent)
        raise
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


async def deploy(request: Request, viewer: Viewer) -> Response:
    """Check, then deploy a ref of the console's checkout (`invoke deploy --env E --ref R`)."""
    return await act(request, viewer, "deploy")


async def rollback(request: Request, viewer: Viewer) -> Response:
    """Check, then roll back (`invoke deploy.rollback --env E [--to RELEASE]`)."""
    return await act(request, viewer, "deploy.rollback")
