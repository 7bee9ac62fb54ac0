"""Deploy, roll back and list releases: phases composed from the engine's runs.

    preflight  Redis answers PONG, the database answers (from the laptop); the lock is taken;
               each host has disk to spare and its shared .env (all hosts at once)
    build      `git archive REF` -> one tarball with its .venv, on the laptop, once; the
               dependency layer (deps-<hash>.tar.gz) only when a host lacks it, cached here
    ship       SFTP upload and unpack on every host at once (nothing live changes yet): the
               dependency layer where it is missing, then the release
    migrate    once per environment, on the first host, with the release's own code
    cache      the cache role cleared safely (celery_app.stores.cache: cache keys only)
    rollout    per `serial` batch: switch `current`, restart the workers gracefully, health gate;
               a batch whose failed share exceeds --max-fail stops the rest

Each phase is a recorded engine run (``deploy.preflight`` ...), and the deploy as a whole is
one more history row (``deploy``) saying which host runs which release. That row is opened
(`running`) once the input is valid and before the preflight, the lock, the build or any
upload: when it cannot be written, nothing is deployed. The row's arguments hold the commit's
full sha (the deploy log, :mod:`runbooks.deploy.log`, lists the commits between releases from
it), and the environment's webhooks hear of the start and the end (:mod:`runbooks.deploy.announce`).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery_app.inputs import shown
from runbooks.deploy import announce, release
from runbooks.deploy.context import (
    DeployContext,
    close_record,
    lock_key,
    mark_failed,
    open_record,
    redactor_for,
)
from runbooks.deploy.lock import DEFAULT_TTL, DeployLock, force_unlock
from runbooks.deploy.request import (
    DeployError,
    DeployReport,
    DeployRequest,
    Say,
    failures,
    host_releases,
    parse_max_fail,
    parse_serial,
    quiet,
)
from runbooks.engine import history
from runbooks.engine.executor import Listener

# What the command line and tests use, from one place.
__all__ = [
    "DeployError", "DeployReport", "DeployRequest", "deploy", "lock_key", "parse_max_fail",
    "parse_serial", "quiet", "redactor_for", "releases", "rollback", "rollback_arguments",
    "unlock",
]  # fmt: skip


def deploy(
    app: Any,
    request: DeployRequest,
    environ: Mapping[str, str],
    listener: Listener | None = None,
    say: Say = quiet,
) -> DeployReport:
    """Deploy `request.ref` to the environment's worker hosts; see the module docstring."""
    serial = parse_serial(request.serial)
    max_fail = parse_max_fail(request.max_fail)
    sha = release.resolve(request.repo, request.ref)
    ctx = DeployContext(
        app,
        request.environment,
        environ,
        request.inventory_dir,
        request.limit,
        request.check,
        listener,
        say,
    )
    report = DeployReport("deploy", request.environment, sha[:7], request.check)
    started = report.started_at
    open_record(ctx, "deploy", {**request.arguments(), "sha": sha}, report)  # no row, no deploy
    announce.started(ctx, report, request.owner or history.operator_name(), request.ref, sha)
    locked: DeployLock | None = None
    try:
        ctx.preflight_services()
        lock = ctx.lock(sha[:7], request.lock_ttl, request.owner)
        if request.check:
            holder = lock.current()
            if holder is not None:
                report.warnings.append(holder.describe(request.environment))
        else:
            lock.acquire()
            locked = lock
        _deploy_phases(ctx, request, sha, serial, max_fail, started, report)
    except BaseException as exc:
        mark_failed(report, exc)
        raise
    finally:
        if locked is not None:
            locked.release()
        close_record(ctx, "deploy", report)
        announce.ended(ctx, report, request.repo)
    return report


def _deploy_phases(
    ctx: DeployContext,
    request: DeployRequest,
    sha: str,
    serial: int | str | None,
    max_fail: float | None,
    started: dt.datetime,
    report: DeployReport,
) -> None:
    ctx.provision_local()
    deps = release.deps_digest()
    checks = {"deps": deps, "local": ctx.environment == "local"}
    pre = ctx.run("preflight", [{"name": "disk and settings", "deploy.preflight": checks}], report)
    before = {n: h.steps[0].data.get("current", "") for n, h in pre.hosts.items() if h.steps}
    if not pre.ok:
        report.status, report.message = "failed", f"preflight failed: {failures(pre)}"
        report.hosts = host_releases(pre, before, ctx.hosts, {})
        return
    known = [
        r
        for h in pre.hosts.values()
        for r in h.steps[0].data.get("releases", [])
        if r.endswith(f"-{sha[:7]}")
    ]
    ctx.say(f"== build {request.ref} ({sha[:7]})")
    build_dir = request.build_dir or Path(tempfile.mkdtemp(prefix="maqsafy-release-"))
    built = release.build(
        request.repo, sha, build_dir, deps=deps, name=max(known) if known else None
    )
    report.release = built.name
    report.phases["build"] = {"release": built.name, "revision": built.revision, "deps": deps}
    layer = ""
    lacking = [n for n, h in pre.hosts.items() if h.steps and not h.steps[0].data.get("deps")]
    if lacking and not request.check:  # built once, only when some host lacks it
        cache = request.deps_cache or Path(ctx.app.settings.var_dir) / "deploy-cache"
        layer = str(release.build_deps(cache)[1])
    wanted = dict.fromkeys(ctx.hosts, built.name)
    try:
        shipped = ctx.run(
            "ship",
            [
                {"name": "dependency layer", "deploy.deps": {"deps": deps, "tarball": layer}},
                {
                    "name": "upload and unpack",
                    "deploy.ship": {"release": built.name, "tarball": str(built.tarball)},
                },
            ],
            report,
        )
    finally:
        built.tarball.unlink(missing_ok=True)
    if not shipped.ok:
        report.status = "failed"
        report.message = f"upload failed, no host switched: {failures(shipped)}"
        report.hosts = host_releases(shipped, before, ctx.hosts, wanted)
        return
    if not request.check or built.name in known:
        migrated = ctx.run(
            "migrate",
            [{"name": "migrate the database", "deploy.migrate": {"release": built.name}}],
            report,
            limit=ctx.hosts[0],
        )
        if not migrated.ok:
            report.status = "failed"
            report.message = f"migration failed, no host switched: {failures(migrated)}"
            report.hosts = host_releases(migrated, before, ctx.hosts, wanted)
            return
    if any(before.get(h) != built.name for h in ctx.hosts):  # nothing to roll: keep the cache
        _clear_cache(ctx, report)
    ctx.roll("rollout", wanted, before, report, started, (serial, max_fail, request.gate_timeout))


def _clear_cache(ctx: DeployContext, report: DeployReport) -> None:
    from celery_app.stores import cache

    ctx.say("== cache")
    cleared = cache.clear_for(ctx.env_app, check=ctx.check)
    report.phases["cache"] = {"method": cleared.method, "matched": cleared.matched}


def rollback(
    app: Any,
    environment: str,
    environ: Mapping[str, str],
    to: str | None = None,
    limit: str | None = None,
    serial: str | int | None = 1,
    max_fail: str | float | None = 0.0,
    check: bool = False,
    inventory_dir: Path | None = None,
    listener: Listener | None = None,
    say: Say = quiet,
    gate_timeout: float = 60.0,
    lock_ttl: float = DEFAULT_TTL,
    repo: Path | None = None,
) -> DeployReport:
    """Switch each host back (to `to`, else the release before its current) and restart."""
    parsed_serial, parsed_fail = parse_serial(serial), parse_max_fail(max_fail)
    if to is not None and not release.RELEASE_NAME.fullmatch(to):
        raise DeployError(
            "--to: expected a release name <time>-<sha> (see deploy.releases), got "
            f"{shown(to) if to else 'an empty value'}"
        )
    ctx = DeployContext(app, environment, environ, inventory_dir, limit, check, listener, say)
    report = DeployReport("rollback", environment, to or "", check)
    started = report.started_at
    arguments = rollback_arguments(environment, to, limit, check)
    open_record(ctx, "deploy.rollback", arguments, report)  # no row, no rollback
    announce.started(ctx, report, history.operator_name(), to or "the previous release", "")
    locked: DeployLock | None = None
    try:
        ctx.preflight_services()
        lock = ctx.lock(f"rollback {to or 'previous'}", lock_ttl, None)
        if not check:
            lock.acquire()
            locked = lock
        seen = ctx.run("releases", [{"name": "releases", "deploy.releases": {}}], report)
        targets: dict[str, str] = {}
        before: dict[str, str] = {}
        for name, host in seen.hosts.items():
            data = host.steps[0].data if host.steps else {}
            before[name] = data.get("current", "")
            older = [r for r in data.get("releases", []) if r < before[name]]
            chosen = to or (older[-1] if older else "")
            if chosen:
                targets[name] = chosen
        missing = [h for h in ctx.hosts if h not in targets]
        if missing or not seen.ok:
            report.status = "failed"
            report.message = (
                f"no release to roll back to on {', '.join(missing)}"
                if missing
                else f"cannot read releases: {failures(seen)}"
            )
            report.hosts = host_releases(seen, before, ctx.hosts, targets)
            return report
        report.release = ", ".join(sorted(set(targets.values())))
        first = ctx.hosts[0]
        probe = ctx.run(
            "revision",
            [
                {
                    "name": "database revision",
                    "deploy.migrate": {"release": targets[first], "apply": False},
                }
            ],
            report,
            limit=first,
        )
        data = probe.hosts[first].steps[0].data if probe.hosts[first].steps else {}
        if data and data.get("before") != data.get("head"):
            report.warnings.append(
                f"{targets[first]}'s migrations end at {data.get('head')} but the database is at "
                f"{data.get('before')}: the old code may not understand the new schema "
                "(downgrade with db.migrate --revision, or roll forward)"
            )

        ctx.roll(
            "rollback", targets, before, report, started, (parsed_serial, parsed_fail, gate_timeout)
        )
    except BaseException as exc:
        mark_failed(report, exc)
        raise
    finally:
        if locked is not None:
            locked.release()
        close_record(ctx, "deploy.rollback", report)
        announce.ended(ctx, report, repo or Path.cwd())
    return report


def rollback_arguments(
    environment: str, to: str | None, limit: str | None, check: bool
) -> dict[str, Any]:
    """What a rollback's history row records as its arguments."""
    return {"env": environment, "to": to, "limit": limit, "check": check}


def releases(
    app: Any,
    environment: str,
    environ: Mapping[str, str],
    limit: str | None = None,
    inventory_dir: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Each host's releases (oldest first), the current one and its workers' releases."""
    ctx = DeployContext(app, environment, environ, inventory_dir, limit, False, None, quiet)
    report = DeployReport("releases", environment, "", False)
    seen = ctx.run("releases", [{"name": "releases", "deploy.releases": {}}], report)
    out: dict[str, dict[str, Any]] = {}
    for name in ctx.hosts:
        host = seen.hosts.get(name)
        data = host.steps[0].data if host and host.steps else {}
        out[name] = {
            "status": host.status if host else "not_run",
            "message": host.message if host else "",
            "current": data.get("current", ""),
            "releases": data.get("releases", []),
            "workers": data.get("workers", {}),
        }
    return out


def unlock(
    app: Any, environment: str, environ: Mapping[str, str], inventory_dir: Path | None = None
) -> str:
    """Force the environment's deploy lock open; recorded. Return what was held (or 'free')."""
    ctx = DeployContext(app, environment, environ, inventory_dir, None, False, None, quiet)
    with history.recording(
        app.sessions, "deploy.unlock", environment=environment, redactor=ctx.redactor
    ) as record:
        holder = force_unlock(ctx.env_app.redis("locks"), lock_key(ctx.env_app, environment))
        record.message = (
            f"removed the lock: {holder.describe(environment)}"
            if holder
            else f"{environment} was not locked"
        )
    return record.message
