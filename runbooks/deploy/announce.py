"""A deploy's and a rollback's notifications: started, then finished, failed or rolled back.

The end's payload is the deploy log's entry for the run (:mod:`runbooks.deploy.log`): operator,
ref, release, hosts, outcome, duration and the commits between the previous release and this
one. Check mode notifies nothing. Queuing never fails a deploy (:func:`runbooks.notify.notify`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runbooks.deploy.context import DeployContext
from runbooks.deploy.log import entry_for
from runbooks.deploy.request import DeployReport
from runbooks.notify import notify


def _notify(ctx: DeployContext, event: str, payload: dict[str, Any]) -> None:
    if ctx.check or not ctx.inventory.notify:
        return
    notify(
        ctx.inventory,
        event,
        payload,
        environ=ctx.environ,
        settings=ctx.app.settings,
        redactor=ctx.redactor,
    )


def started(ctx: DeployContext, report: DeployReport, operator: str, ref: str, sha: str) -> None:
    what = f"{report.action} {ref} ({sha[:7]})" if sha else f"{report.action} to {ref}"
    _notify(
        ctx,
        "deploy.started",
        {
            "summary": f"{what} on {ctx.environment} started by {operator}",
            "operator": operator,
            "action": report.action,
            "ref": ref,
            "sha": sha,
            "hosts": list(ctx.hosts),
            "run_id": report.run_id,
        },
    )


def ended(ctx: DeployContext, report: DeployReport, repo: Path) -> None:
    """deploy.finished / deploy.rolled_back when ok, else deploy.failed; with the log entry."""
    if ctx.check or not ctx.inventory.notify:
        return
    entry: dict[str, Any] = {}
    if report.run_id is not None:
        try:
            entry = entry_for(ctx.app.sessions, report.run_id, repo) or {}
        except Exception:  # a history that cannot be read: notify without the commits
            entry = {}
    if report.ok:
        event = "deploy.finished" if report.action == "deploy" else "deploy.rolled_back"
    else:
        event = "deploy.failed"
    duration = entry.get("duration")
    took = f" in {duration:.0f} s" if isinstance(duration, int | float) else ""
    release = entry.get("release") or report.release or "-"
    _notify(
        ctx,
        event,
        {
            "summary": f"{report.action} {release} on {ctx.environment}: {report.status}{took}"
            + (f" ({report.message})" if report.message and not report.ok else ""),
            "operator": entry.get("operator", ""),
            "action": report.action,
            "ref": entry.get("ref", ""),
            "release": release,
            "previous": entry.get("previous", ""),
            "outcome": report.status,
            "message": report.message,
            "duration_seconds": round(duration, 1) if isinstance(duration, int | float) else None,
            "hosts": [f"{h}: {v['status']}, runs {v['release']}" for h, v in report.hosts.items()],
            "commits": entry.get("commits", []),
            "commits_note": entry.get("commits_note", ""),
            "run_id": report.run_id,
        },
    )
