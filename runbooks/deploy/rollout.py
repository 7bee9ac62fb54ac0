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
upload: when it cannot be written, nothing is deployed.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from celery_app.errors import MaqsafyError
from celery_app.inputs import natural, percentage, shown
from runbooks import actions
from runbooks.actions import Action, Actions
from runbooks.actions.base import Outcome, StepContext
from runbooks.deploy import hostside, layout, release
from runbooks.deploy.gate import Gate
from runbooks.deploy.lock import DEFAULT_TTL, DeployLock, force_unlock
from runbooks.engine import history
from runbooks.engine.executor import Listener
from runbooks.engine.inventory import load_environment
from runbooks.engine.redact import Redactor, for_settings
from runbooks.engine.results import RunResult
from runbooks.errors import RunbookError
from runbooks.service import run_steps

HOSTS = "workers"
Say = Callable[[str], None]


class DeployError(RunbookError):
    """A deploy could not start or stopped before any host switched (bad input, preflight)."""


def _quiet(_: str) -> None:
    pass


def deploy_actions() -> dict[str, Action]:
    """The built-in actions and a deploy's host-side ones (the roll adds its own per batch)."""
    mapping = actions.builtins()
    for name, fn, read_only in (
        ("deploy.preflight", hostside.preflight, True),
        ("deploy.deps", hostside.ship_deps, False),
        ("deploy.ship", hostside.ship, False),
        ("deploy.migrate", hostside.migrate, False),
        ("deploy.releases", hostside.list_releases, True),
    ):
        mapping = actions.with_python(mapping, name, fn, read_only=read_only)
    return mapping


MAX_SERIAL = 100_000  # as a book's `serial`


def parse_serial(value: str | int | None) -> int | str | None:
    """`--serial 2` (1 to 100000) or `--serial 25%` (None or 0: every host at once); else
    DeployError, before anything is built."""
    if value is None or value == 0:
        return None
    text_value = str(value).strip()
    if text_value.endswith("%"):
        if percentage(text_value, "--serial", DeployError) == 0:
            raise DeployError(f"--serial: a share must be above 0%, got {shown(text_value)}")
        return text_value
    count = natural(text_value, MAX_SERIAL)
    if count is None:
        got = shown(text_value) if text_value else "an empty value"
        raise DeployError(
            f"--serial: expected a host count from 1 to {MAX_SERIAL} (0: all at once) or a share "
            f"like 25%, got {got}"
        )
    return count or None


def parse_max_fail(value: str | float | None) -> float | None:
    """`--max-fail 25` or `25%`: a percentage from 0 to 100 (None: the engine's default)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100:
        return float(value)
    return percentage(str(value), "--max-fail", DeployError)


@dataclass(frozen=True)
class DeployRequest:
    """What the operator asked for (`invoke deploy ...`)."""

    environment: str = "local"
    ref: str = "HEAD"
    check: bool = False
    limit: str | None = None
    serial: int | str | None = 1
    max_fail: float | None = 0.0
    repo: Path = Path(".")
    inventory_dir: Path | None = None
    build_dir: Path | None = None
    lock_ttl: float = DEFAULT_TTL
    gate_timeout: float = 60.0
    owner: str | None = None
    deps_cache: Path | None = None  # where the dependency layer's tarball is kept (by hash)

    def arguments(self) -> dict[str, Any]:
        return {
            "env": self.environment,
            "ref": self.ref,
            "check": self.check,
            "limit": self.limit,
            "serial": self.serial,
            "max_fail": self.max_fail,
        }


@dataclass
class DeployReport:
    """A deploy's (or rollback's) outcome: the phases' runs and which host runs which release."""

    action: str
    environment: str
    release: str
    check: bool
    status: str = "ok"
    message: str = ""
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    run_id: int | None = None
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "started_at": self.started_at.isoformat()}

    def lines(self) -> list[str]:
        """The recap people read: which host runs which release, then the outcome."""
        mode = " (check mode)" if self.check else ""
        out = [f"RECAP {self.action} {self.release or '-'} on {self.environment}{mode}"]
        width = max([16, *(len(h) for h in self.hosts)])
        for host, row in self.hosts.items():
            note = f"  {row['message']}" if row["message"] else ""
            out.append(f"{host:<{width}} {row['status']:<11} runs {row['release']}{note}")
        out += [f"warning: {w}" for w in self.warnings]
        out.append(f"{self.action} {self.status}" + (f": {self.message}" if self.message else ""))
        return out

    def redact(self, redactor: Redactor) -> None:
        self.message = redactor.text(self.message)
        self.warnings = [redactor.text(w) for w in self.warnings]
        for row in self.hosts.values():
            row["message"] = redactor.text(row["message"])


class _Context:
    """What one deploy or rollback carries between its phases."""

    def __init__(
        self,
        app: Any,
        environment: str,
        environ: Mapping[str, str],
        inventory_dir: Path | None,
        limit: str | None,
        check: bool,
        listener: Listener | None,
        say: Say,
    ) -> None:
        self.app = app
        self.environment = environment
        self.environ = environ
        self.inventory_dir = inventory_dir
        self.limit = limit
        self.check = check
        self.listener = listener
        self.say = say
        self.inventory = load_environment(environment, environ, inventory_dir)
        self.redactor: Redactor = for_settings(app.settings, self.inventory.secrets)
        self.hosts = [h.name for h in self.inventory.select(HOSTS, limit)]
        if not self.hosts:
            raise DeployError(
                f"no host of {environment!r} is in group {HOSTS!r}"
                + (f" and --limit {shown(limit)}" if limit else "")
            )
        self.vars = layout.defaults(environment, app.settings.var_dir)

    def provision_local(self) -> None:
        """On `local`, write shared/.env once from this process's settings (absolute paths)."""
        if self.environment != "local" or self.check:
            return
        shared = Path(str(self.vars["app_dir"])) / "shared"
        env_file = shared / ".env"
        if env_file.exists():
            return
        shared.mkdir(parents=True, exist_ok=True)
        kept = {
            k: v
            for k, v in self.environ.items()
            if re.match(r"(REDIS|DATABASE|CACHE|SESSION|QUEUE)_", k)
            or (k.startswith("MAQSAFY_") and k not in ("MAQSAFY_ENV_FILE", "MAQSAFY_RELEASE"))
        }
        kept["MAQSAFY_VAR_DIR"] = str(Path(self.app.settings.var_dir).absolute())
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(kept.items())))

    @functools.cached_property
    def env_app(self) -> Any:
        """The app on the environment's Redis (built when first needed: releases needs none)."""
        if self.environment == "local":
            return self.app
        from runbooks.reach.redis import environment_app

        return environment_app(self.environment, self.environ, self.inventory_dir)

    def run(
        self,
        phase: str,
        steps: list[dict[str, Any]],
        report: DeployReport,
        limit: str | None = None,
        serial: int | str | None = None,
        max_fail: float | None = None,
        extra: Actions | None = None,
    ) -> RunResult:
        self.say(f"== {phase}")
        result, _ = run_steps(
            self.app,
            f"deploy.{phase}",
            steps,
            environment=self.environment,
            environ=self.environ,
            limit=limit or self.limit,
            check=self.check,
            hosts=HOSTS,
            serial=serial,
            max_fail_percentage=max_fail,
            listener=self.listener,
            inventory_dir=self.inventory_dir,
            vars=self.vars,
            actions={**deploy_actions(), **(extra or {})},
        )
        report.phases[phase] = {
            "run_id": result.run_id,
            "status": result.status,
            "seconds": round(result.duration, 2),
        }
        return result

    def preflight_services(self) -> None:
        """Redis answers PONG and the database answers, or DeployError naming which."""
        try:
            if not self.env_app.redis("broker").ping():
                raise DeployError("preflight: Redis did not answer PONG")
        except DeployError:
            raise
        except Exception as exc:
            raise DeployError(f"preflight: Redis did not answer PONG: {exc}") from exc
        try:
            with self.app.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            raise DeployError(f"preflight: the database did not answer: {exc}") from exc

    def lock(self, release_name: str, ttl: float, owner: str | None) -> DeployLock:
        return DeployLock(
            self.env_app.redis("locks"),
            lock_key(self.env_app, self.environment),
            self.environment,
            owner or history.operator_name(),
            release_name,
            ttl,
        )

    def node_names(self) -> list[str]:
        """Every worker node of the selected hosts (`w1@host0` ...), as the gate asks them."""
        names = []
        for host in self.inventory.select(HOSTS, self.limit):
            chosen = {**self.vars, **self.inventory.host_vars(host)}.get("worker_nodes", "w1")
            names += [f"{n}@{host.name}" for n in str(chosen).replace(",", " ").split()]
        return names

    def roll(
        self,
        phase: str,
        targets: Mapping[str, str],
        before: Mapping[str, str],
        report: DeployReport,
        started: dt.datetime,
        options: tuple[int | str | None, float | None, float],
    ) -> None:
        """Per batch: switch each host to its target release, restart its workers, gate."""
        from celery_app.celery import make_app

        serial, max_fail, gate_timeout = options
        gate = Gate(make_app(self.env_app.settings), self.app, started, gate_timeout)
        gate.all_nodes = self.node_names()

        def to_target(fn: Callable[[StepContext, dict[str, Any]], Outcome]) -> Any:
            return lambda c, p: fn(c, {**p, "release": targets[c.host]})

        def restart(c: StepContext, p: dict[str, Any]) -> Outcome:
            release_name = targets[c.host]
            probe = functools.partial(gate.probe, release=release_name)
            return hostside.restart(c, {**p, "release": release_name, "probe": probe})

        batch = actions.with_python({}, "deploy.switch", to_target(hostside.switch))
        batch = actions.with_python(batch, "deploy.restart", restart)
        batch = actions.with_python(batch, "deploy.gate", to_target(gate), read_only=True)
        rolled = self.run(
            phase,
            [
                {"name": "switch current", "deploy.switch": {"shipping": phase == "rollout"}},
                {"name": "restart workers", "deploy.restart": {}},
                {"name": "health gate", "deploy.gate": {}},
            ],
            report,
            serial=serial,
            max_fail=max_fail,
            extra=batch,
        )
        report.hosts = _host_releases(rolled, before, self.hosts, targets)
        if not rolled.ok:
            report.status = "failed"
            report.message = rolled.stopped or f"failed on {_failures(rolled)}"
            gated = [
                name
                for name, host in rolled.hosts.items()
                if any(s.action == "deploy.gate" and s.status == "failed" for s in host.steps)
            ]
            if gated:
                report.message += "; " + self.after_gate(phase, gated, targets)

    def after_gate(self, phase: str, hosts: list[str], targets: Mapping[str, str]) -> str:
        """What to do after a failed health gate (the release stays current on those hosts)."""
        env = "" if self.environment == "local" else f" --env {self.environment}"
        names = sorted({targets[h] for h in hosts})
        where = f"{', '.join(names)} is current on {', '.join(hosts)} but not healthy"
        if phase == "rollback":
            return f"{where}: fix the cause and run the same rollback again"
        return (
            f"{where}: fix the cause (the worker's log, the host's shared/.env) and run the same "
            f"deploy again (it restarts the workers that are not healthy), or go back with "
            f"invoke deploy.rollback{env}"
        )


def lock_key(env_app: Any, environment: str) -> str:
    return str(env_app.keyspace.lock(f"deploy:{environment}"))


def _failures(result: RunResult) -> str:
    return "; ".join(f"{name}: {h.message or h.status}" for name, h in result.failed.items())


def _host_releases(
    result: RunResult, before: Mapping[str, str], hosts: list[str], wanted: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """Host -> status, the release its `current` names now, message (the recap's last column).

    A host whose run changed something reports `changed`; one already as wanted reports `ok`.
    """
    out = {}
    for host in hosts:
        got = result.hosts.get(host)
        status = got.status if got else "not_run"
        if status == "ok" and got and any(s.status == "changed" for s in got.steps):
            status = "changed"
        switched = bool(got) and any(
            s.action == "deploy.switch" and s.status in ("ok", "changed") and not result.check
            for s in got.steps  # type: ignore[union-attr]
        )
        out[host] = {
            "status": status,
            "release": wanted[host] if switched else before.get(host, "") or "none",
            "message": got.message if got else "",
        }
    return out


_HISTORY_STATUS = {"not_run": "skipped", "changed": "ok"}


def redactor_for(
    app: Any, environment: str, environ: Mapping[str, str], inventory_dir: Path | None = None
) -> Redactor:
    """The redactor for an environment's deploy output (settings' and inventory's secrets)."""
    return for_settings(app.settings, load_environment(environment, environ, inventory_dir).secrets)


def _open(ctx: _Context, name: str, arguments: Mapping[str, Any], report: DeployReport) -> None:
    """Open the deploy's own history row (`running`): before any lock, build or upload."""
    report.run_id = history.start_run(
        ctx.app.sessions,
        "command",
        name,
        ctx.environment,
        arguments,
        ctx.check,
        ctx.redactor,
        started_at=report.started_at,
    )


def _failed(report: DeployReport, exc: BaseException) -> None:
    """An exception ends the deploy `failed`: a refusal says why, anything else interrupted it."""
    report.status = "failed"
    if not report.message:
        report.message = (
            str(exc)
            if isinstance(exc, MaqsafyError)
            else f"interrupted: {type(exc).__name__}: {exc}"
        )


def _close(ctx: _Context, name: str, report: DeployReport) -> None:
    """Close the row with the outcome and which host runs which release."""
    report.redact(ctx.redactor)
    assert report.run_id is not None
    with history.closing(report.run_id, name):
        history.finish_command(
            ctx.app.sessions,
            report.run_id,
            status=report.status,
            message=report.message,
            hosts={
                h: (_HISTORY_STATUS.get(v["status"], v["status"]), f"release {v['release']}")
                for h, v in report.hosts.items()
            },
            started_at=report.started_at,
            redactor=ctx.redactor,
        )


def deploy(
    app: Any,
    request: DeployRequest,
    environ: Mapping[str, str],
    listener: Listener | None = None,
    say: Say = _quiet,
) -> DeployReport:
    """Deploy `request.ref` to the environment's worker hosts; see the module docstring."""
    serial = parse_serial(request.serial)
    max_fail = parse_max_fail(request.max_fail)
    sha = release.resolve(request.repo, request.ref)
    ctx = _Context(
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
    _open(ctx, "deploy", request.arguments(), report)  # no row, no deploy
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
        _failed(report, exc)
        raise
    finally:
        if locked is not None:
            locked.release()
        _close(ctx, "deploy", report)
    return report


def _deploy_phases(
    ctx: _Context,
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
        report.status, report.message = "failed", f"preflight failed: {_failures(pre)}"
        report.hosts = _host_releases(pre, before, ctx.hosts, {})
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
        report.message = f"upload failed, no host switched: {_failures(shipped)}"
        report.hosts = _host_releases(shipped, before, ctx.hosts, wanted)
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
            report.message = f"migration failed, no host switched: {_failures(migrated)}"
            report.hosts = _host_releases(migrated, before, ctx.hosts, wanted)
            return
    if any(before.get(h) != built.name for h in ctx.hosts):  # nothing to roll: keep the cache
        _clear_cache(ctx, report)
    ctx.roll("rollout", wanted, before, report, started, (serial, max_fail, request.gate_timeout))


def _clear_cache(ctx: _Context, report: DeployReport) -> None:
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
    say: Say = _quiet,
    gate_timeout: float = 60.0,
    lock_ttl: float = DEFAULT_TTL,
) -> DeployReport:
    """Switch each host back (to `to`, else the release before its current) and restart."""
    parsed_serial, parsed_fail = parse_serial(serial), parse_max_fail(max_fail)
    if to is not None and not release.RELEASE_NAME.fullmatch(to):
        raise DeployError(
            "--to: expected a release name <time>-<sha> (see deploy.releases), got "
            f"{shown(to) if to else 'an empty value'}"
        )
    ctx = _Context(app, environment, environ, inventory_dir, limit, check, listener, say)
    report = DeployReport("rollback", environment, to or "", check)
    started = report.started_at
    arguments = {"env": environment, "to": to, "limit": limit, "check": check}
    _open(ctx, "deploy.rollback", arguments, report)  # no row, no rollback
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
                else f"cannot read releases: {_failures(seen)}"
            )
            report.hosts = _host_releases(seen, before, ctx.hosts, targets)
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
        _failed(report, exc)
        raise
    finally:
        if locked is not None:
            locked.release()
        _close(ctx, "deploy.rollback", report)
    return report


def releases(
    app: Any,
    environment: str,
    environ: Mapping[str, str],
    limit: str | None = None,
    inventory_dir: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Each host's releases (oldest first), the current one and its workers' releases."""
    ctx = _Context(app, environment, environ, inventory_dir, limit, False, None, _quiet)
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
    ctx = _Context(app, environment, environ, inventory_dir, None, False, None, _quiet)
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
