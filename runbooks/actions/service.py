"""`service`: a systemd unit started, stopped, restarted or reloaded, enabled or not.

A fact plus a plan, as pyinfra's ``systemd.service`` does: one script reads the unit's
``is-active`` and ``is-enabled`` states (:func:`read_state`), :func:`plan` turns what the step
asks and what the host has into the `systemctl` commands still needed, and only those run.
``started``/``stopped``/``enabled`` are idempotent (a second run reports ``ok``);
``restarted``/``reloaded`` always act, as in Ansible. In check mode the state is read and the
step says what it would run, and as whom. A host without systemd running (no
``/run/systemd/system``, e.g. a container) fails the step saying so; nothing is guessed.

    - service: {name: redis-server, state: started, enabled: true}
      become: true
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from runbooks.actions.base import Action, Outcome, StepContext, first_line
from runbooks.engine.source import Fields

STATES = ("started", "stopped", "restarted", "reloaded")
_UNIT = re.compile(r"[A-Za-z0-9:_.@\\-]{1,255}")
_RUNNING = ("active", "activating", "reloading", "deactivating")
_ENABLED = ("enabled", "enabled-runtime", "alias", "static", "indirect", "generated")

_FACT = (
    "command -v systemctl >/dev/null 2>&1 || { echo nosystemctl; exit 0; }\n"
    "[ -d /run/systemd/system ] || { echo nosystemd; exit 0; }\n"
    'echo "active=$(systemctl is-active -- {unit} 2>/dev/null | head -n1)"\n'
    'echo "enabled=$(systemctl is-enabled -- {unit} 2>/dev/null | head -n1)"\n'
)


@dataclass(frozen=True)
class UnitState:
    """What systemctl says of a unit (empty strings when it says nothing)."""

    active: str
    enabled: str


def read_state(stdout: str, host: str) -> UnitState:
    """Parse the fact script's output; raise OSError when systemd cannot be asked."""
    words = stdout.split()
    if "nosystemctl" in words:
        raise OSError(f"service: systemctl is not installed on {host} (the action needs systemd)")
    if "nosystemd" in words:
        raise OSError(
            f"service: systemd is not running on {host} (no /run/systemd/system: a container or "
            "another init); manage the service with a shell step there"
        )
    values = dict(line.partition("=")[::2] for line in stdout.splitlines() if "=" in line)
    return UnitState(values.get("active", "").strip(), values.get("enabled", "").strip())


def plan(state: str | None, enabled: bool | None, have: UnitState) -> list[str]:
    """The systemctl verbs still needed, in order (`enable`/`disable` first, as Ansible)."""
    verbs: list[str] = []
    if enabled is True and have.enabled not in _ENABLED:
        verbs.append("enable")
    elif enabled is False and have.enabled in ("enabled", "enabled-runtime"):
        verbs.append("disable")
    running = have.active in _RUNNING
    if state == "started" and not running:
        verbs.append("start")
    elif state == "stopped" and running:
        verbs.append("stop")
    elif state == "restarted":
        verbs.append("restart")
    elif state == "reloaded":
        verbs.append("reload" if running else "start")
    return verbs


class Service(Action):
    """Bring a systemd unit to the asked state, reading its state first."""

    name = "service"
    shorthand = "name"

    def validate(self, params: Fields) -> dict[str, Any]:
        params.only("name", "state", "enabled")
        unit = params.required("name")
        if "{{" not in unit and not _UNIT.fullmatch(unit):
            raise params.fail("name", "expected a systemd unit name like redis-server.service")
        state = params.text("state")
        if state is not None and state not in STATES:
            raise params.fail("state", f"expected one of: {', '.join(STATES)}")
        enabled = params.raw("enabled")
        if enabled is not None:
            enabled = params.flag("enabled")
        if state is None and enabled is None:
            raise params.fail("name", "say what you want: state (started, ...) or enabled")
        return {"name": unit, "state": state, "enabled": enabled}

    def run(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        unit = str(params["name"])
        if not _UNIT.fullmatch(unit):
            return Outcome("failed", f"service: {unit!r} is not a systemd unit name")
        fact = ctx.target.run(_FACT.replace("{unit}", shlex.quote(unit)), timeout=ctx.timeout)
        if fact.rc != 0:
            return Outcome("failed", f"service: cannot read {unit}: {first_line(fact.stderr)}")
        try:
            have = read_state(fact.stdout, ctx.host)
        except OSError as exc:
            return Outcome("failed", str(exc))
        verbs = plan(params.get("state"), params.get("enabled"), have)
        data = {"unit": unit, "active": have.active, "enabled": have.enabled, "verbs": verbs}
        if not verbs:
            return Outcome("ok", f"{unit} is {have.active or 'unknown'}, {have.enabled}", data)
        commands = [f"systemctl {verb} -- {shlex.quote(unit)}" for verb in verbs]
        as_user = f" as {ctx.become} (sudo)" if ctx.become else ""
        if ctx.check:
            message = f"check mode: would run {'; '.join(commands)}{as_user}"
            return Outcome("changed", message, {**data, "check": True})
        done = ctx.target.run(" && ".join(commands), timeout=ctx.timeout)
        if done.rc != 0:
            why = first_line(done.stderr) or first_line(done.stdout) or "no output"
            return Outcome("failed", f"exit {done.rc}: {why}", data, rc=done.rc)
        return Outcome("changed", f"{unit}: {', '.join(verbs)}", data, rc=0)


ACTIONS = (Service(),)
