"""The deploy log (`invoke deploy.log`): every deploy and rollback, derived from the run history.

Each entry is a ``deploy`` or ``deploy.rollback`` history row (check mode left out): operator,
ref, release, hosts (each host's outcome and release), outcome, duration, and the commits between
the release the environment ran before and this one (short sha and subject, newest first, from
``git log`` in the repository the deploy was made from). Nothing is stored for the log itself:
a deploy records its commit's full sha in its arguments (``sha``), its hosts say which release
each runs (``release <name>``, whose suffix is the short sha), and "before" is the release of
the previous successful entry of the same environment. A rollback lists the commits it takes
out (``direction: removed``). A commit the repository does not have (a shallow clone, another
checkout) leaves the list empty with a note saying so.

The deploy notifications carry the same entry (:func:`entry_for`).
"""

from __future__ import annotations

import subprocess
import threading
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from runbooks.deploy.release import RELEASE_NAME
from runbooks.engine.history_tables import OpsRun, OpsRunHost, writing

NAMES = {"deploy": "deploy", "deploy.rollback": "rollback"}
MAX_COMMITS = 200
KEPT = 1024  # ranges whose commits are kept (a few hundred KB at most)
KNOWN: OrderedDict[tuple[str, str, str], list[str]] = OrderedDict()
_lock = threading.Lock()


def commits_between(repo: Path, old: str, new: str) -> list[str] | None:
    """``<short sha> <subject>`` of each commit in `old`..`new`, newest first (at most
    :data:`MAX_COMMITS`); None when `repo` does not know one of them.

    A range's commits never change, so a found list is kept (:data:`KNOWN`, at most
    :data:`KEPT` ranges): the log's page runs `git log` once per range, not once per view (50
    processes took ~300 ms a page). "Not known" is not kept: a fetch may bring the commit."""
    key = (str(repo), old, new)
    with _lock:
        if key in KNOWN:
            KNOWN.move_to_end(key)
            return list(KNOWN[key])
    found = _git_log(repo, old, new)
    if found is not None:
        with _lock:
            KNOWN[key] = found
            while len(KNOWN) > KEPT:
                KNOWN.popitem(last=False)
    return found


def _git_log(repo: Path, old: str, new: str) -> list[str] | None:
    done = subprocess.run(
        ["git", "-C", str(repo), "log", f"-n{MAX_COMMITS}", "--format=%h %s", f"{old}..{new}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return None
    return [line for line in done.stdout.splitlines() if line.strip()]


def _sha_of(release: str) -> str:
    return release.rsplit("-", 1)[1] if RELEASE_NAME.fullmatch(release) else ""


def _release_of(run: dict[str, Any], hosts: list[dict[str, Any]]) -> str:
    """The release this entry put live: hosts' ``release X`` matching the deployed sha (deploy),
    else the release most hosts run (rollback); "" when none switched."""
    names = [
        h["message"][len("release ") :]
        for h in hosts
        if h["message"].startswith("release ") and RELEASE_NAME.fullmatch(h["message"][8:])
    ]
    sha = str(run["arguments"].get("sha") or "")
    if run["action"] == "deploy" and sha:
        names = [n for n in names if sha.startswith(_sha_of(n))]
    return Counter(names).most_common(1)[0][0] if names else ""


Row = tuple[dict[str, Any], list[dict[str, Any]]]  # a run's fields and its hosts
CHUNK = 200  # deploy rows read at a time, newest first, until the page's entries are known


def _rows(
    sessions: sessionmaker[Session],
    environment: str | None,
    before: int | None = None,
    newest: int | None = None,
) -> list[Row]:
    """Deploy and rollback rows oldest first: all, or the `newest` of those below `before`."""
    import json

    with writing(sessions) as uow:
        # the columns an entry uses, not whole rows: every deploy ever is read (for each
        # entry's previous release), and building ORM objects for them cost more than the query
        query = select(
            OpsRun.id,
            OpsRun.name,
            OpsRun.environment,
            OpsRun.operator,
            OpsRun.arguments,
            OpsRun.status,
            OpsRun.message,
            OpsRun.started_at,
            OpsRun.duration,
        ).where(OpsRun.kind == "command", OpsRun.name.in_(NAMES), OpsRun.check_mode.is_(False))
        if environment:
            query = query.where(OpsRun.environment == environment)
        if before is not None:
            query = query.where(OpsRun.id < before)
        if newest is None:
            runs = list(uow.session.execute(query.order_by(OpsRun.id)).all())
        else:
            runs = list(uow.session.execute(query.order_by(OpsRun.id.desc()).limit(newest)))
            runs.reverse()
        ids = [r.id for r in runs]
        hosts: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            for h in uow.session.execute(
                select(OpsRunHost.run_id, OpsRunHost.host, OpsRunHost.status, OpsRunHost.message)
                .where(OpsRunHost.run_id.in_(ids[start : start + 500]))
                .order_by(OpsRunHost.id)
            ):
                hosts[h.run_id].append({"host": h.host, "status": h.status, "message": h.message})
        out = []
        for r in runs:
            try:
                arguments = json.loads(r.arguments or "{}")
            except ValueError:
                arguments = {}
            out.append(
                (
                    {
                        "run_id": r.id,
                        "action": NAMES[r.name],
                        "environment": r.environment,
                        "operator": r.operator,
                        "arguments": arguments if isinstance(arguments, dict) else {},
                        "status": r.status,
                        "message": r.message,
                        "started_at": r.started_at.isoformat() if r.started_at else None,
                        "duration": r.duration,
                    },
                    hosts[r.id],
                )
            )
        return out


def deploy_log(
    sessions: sessionmaker[Session],
    environment: str | None = None,
    repo: Path = Path("."),
    limit: int = 50,
    run_id: int | None = None,
) -> list[dict[str, Any]]:
    """Every deploy and rollback (of `environment`, else all), newest first, at most `limit`
    (only run `run_id`, when given). `git log` runs only for the entries returned."""
    rows = (
        _rows(sessions, environment)
        if run_id is not None
        else _window(sessions, environment, limit)
    )
    live: dict[str, str] = {}  # environment -> the release its last successful entry put live
    entries = []
    for run, hosts in rows:
        release = _release_of(run, hosts)
        previous = live.get(run["environment"], "")
        if run["status"] == "ok" and release:
            live[run["environment"]] = release
        entries.append(
            {
                "run_id": run["run_id"],
                "action": run["action"],
                "environment": run["environment"],
                "operator": run["operator"],
                "ref": run["arguments"].get("ref") or run["arguments"].get("to") or "",
                "sha": str(run["arguments"].get("sha") or "") or _sha_of(release),
                "release": release,
                "previous": previous,
                "hosts": [
                    {"host": h["host"], "status": h["status"], "release": h["message"][8:]}
                    for h in hosts
                ],
                "outcome": run["status"],
                "message": run["message"],
                "started_at": run["started_at"],
                "duration": run["duration"],
                "direction": "added" if run["action"] == "deploy" else "removed",
            }
        )
    chosen = [e for e in reversed(entries) if run_id is None or e["run_id"] == run_id][:limit]
    for entry in chosen:
        entry["commits"], entry["commits_note"] = _commits(entry, repo)
    return chosen


def _window(sessions: sessionmaker[Session], environment: str | None, limit: int) -> list[Row]:
    """The newest rows, oldest first, reaching back far enough that each of the newest `limit`
    has its previous release in them: read :data:`CHUNK` at a time until every environment
    among those `limit` has an older successful entry that switched a release (or the history
    ends). The page then costs the same after 1,000 deploys as after 10."""
    rows: list[Row] = []
    while True:
        before = rows[0][0]["run_id"] if rows else None
        chunk = _rows(sessions, environment, before, CHUNK)
        rows = chunk + rows
        if len(chunk) < CHUNK or _reaches_back(rows, limit):
            return rows


def _reaches_back(rows: list[Row], limit: int) -> bool:
    """Whether, for each environment among the newest `limit` rows, an older successful row
    of it that switched a release is in `rows` (oldest first)."""
    first = max(0, len(rows) - limit)
    oldest: dict[str, int] = {}  # environment -> index of its oldest row among the newest
    for index in range(len(rows) - 1, first - 1, -1):
        oldest[rows[index][0]["environment"]] = index
    for env, index in oldest.items():
        if not any(
            run["environment"] == env and run["status"] == "ok" and _release_of(run, hosts)
            for run, hosts in rows[:index]
        ):
            return False
    return True


def _commits(entry: dict[str, Any], repo: Path) -> tuple[list[str], str]:
    """The entry's commits (brought in by a deploy, taken out by a rollback) and a note."""
    sha, previous = entry["sha"], entry["previous"]
    if not sha:
        return [], "no release was switched"
    if not previous:
        return [], "no earlier deploy in the log"
    old = _sha_of(previous)
    if sha.startswith(old):
        return [], "same commit as before"
    found = (
        commits_between(repo, old, sha)
        if entry["direction"] == "added"
        else commits_between(repo, sha, old)
    )
    return (found, "") if found is not None else ([], f"{old}..{sha[:7]} is not in {repo}")


def entry_for(sessions: sessionmaker[Session], run_id: int, repo: Path) -> dict[str, Any] | None:
    """The log entry of deploy or rollback run `run_id` (what its notification carries)."""
    with writing(sessions) as uow:
        run = uow.session.get(OpsRun, run_id)
        environment = run.environment if run is not None else None
    if environment is None:
        return None
    found = deploy_log(sessions, environment, repo, 1, run_id=run_id)
    return found[0] if found else None


def lines(entries: list[dict[str, Any]]) -> list[str]:
    """What people read: one line per entry, then its commits indented."""
    out = []
    for e in entries:
        took = f"{e['duration']:.0f}s" if e["duration"] is not None else "running"
        hosts = ", ".join(h["host"] for h in e["hosts"]) or "-"
        out.append(
            f"#{e['run_id']} {(e['started_at'] or '')[:19]} {e['action']} {e['environment']} "
            f"{e['outcome']} {e['release'] or '-'} (ref {e['ref'] or '-'}) by {e['operator']} "
            f"in {took} on {hosts}"
        )
        sign = "+" if e["direction"] == "added" else "-"
        out += [f"    {sign} {c}" for c in e["commits"]]
        if e["commits_note"]:
            out.append(f"    ({e['commits_note']})")
    return out or ["no deploy recorded yet"]
