"""A deploy's environment: inventory, vars, redactor, the actions its phases run, its lock
and its own history row; the batch roll (switch, restart, gate)."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import text

from celery_app.errors import MaqsafyError
from celery_app.inputs import shown
from runbooks import actions
from runbooks.actions import Action, Actions
from runbooks.actions.base import Outcome, StepContext
from runbooks.deploy import hostside, layout
from runbooks.deploy.gate import Gate
from runbooks.deploy.lock import DeployLock
from runbooks.deploy.request import (
    HISTORY_STATUS,
    HOSTS,
    DeployError,
    DeployReport,
    Say,
    failures,
    host_releases,
)
from runbooks.engine import history
from runbooks.engine.executor import Listener
from runbooks.engine.inventory import load_environment
from runbooks.engine.redact import Redactor, for_settings
from runbooks.engine.results import RunResult
from runbooks.service import run_steps


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


class DeployContext:
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
        report.hosts = host_releases(rolled, before, self.hosts, targets)
        if not rolled.ok:
            report.status = "failed"
            left = any(h.status == "not_run" for h in rolled.hosts.values())
            report.message = (
                rolled.stopped if left and rolled.stopped else f"failed on {failures(rolled)}"
            )
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


def redactor_for(
    app: Any, environment: str, environ: Mapping[str, str], inventory_dir: Path | None = None
) -> Redactor:
    """The redactor for an environment's deploy output (settings' and inventory's secrets)."""
    return for_settings(app.settings, load_environment(environment, environ, inventory_dir).secrets)


def open_record(
    ctx: DeployContext, name: str, arguments: Mapping[str, Any], report: DeployReport
) -> None:
    """Open the deploy's own history row (`running`): before any lock, build or upload.

    An environment whose inventory says `approval: required` needs an approval for it."""
    why = None
    if ctx.inventory.approval:
        why = (
            f"environment {ctx.environment} requires approval for deploy and rollback "
            f"({ctx.inventory.path})"
        )
    report.run_id = history.start_run(
        ctx.app.sessions,
        "command",
        name,
        ctx.environment,
        arguments,
        ctx.check,
        ctx.redactor,
        started_at=report.started_at,
        approval=why,
    )


def mark_failed(report: DeployReport, exc: BaseException) -> None:
    """An exception ends the deploy `failed`: a refusal says why, anything else interrupted it."""
    report.status = "failed"
    if not report.message:
        report.message = (
            str(exc)
            if isinstance(exc, MaqsafyError)
            else f"interrupted: {type(exc).__name__}: {exc}"
        )


def close_record(ctx: DeployContext, name: str, report: DeployReport) -> None:
    """Close the row with the outcome, which host runs which release, and the recap."""
    report.redact(ctx.redactor)
    assert report.run_id is not None
    with history.closing(report.run_id, name):
        history.finish_command(
            ctx.app.sessions,
            report.run_id,
            status=report.status,
            message=report.message,
            hosts={
                h: (HISTORY_STATUS.get(v["status"], v["status"]), f"release {v['release']}")
                for h, v in report.hosts.items()
            },
            output=report.output(),
            started_at=report.started_at,
            redactor=ctx.redactor,
        )
