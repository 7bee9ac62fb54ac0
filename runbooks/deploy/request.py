"""What an operator asked a deploy for, and what it reports back (the recap per host)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery_app.inputs import natural, percentage, shown
from runbooks.deploy.lock import DEFAULT_TTL
from runbooks.engine.redact import Redactor
from runbooks.engine.results import RunResult
from runbooks.errors import RunbookError

HOSTS = "workers"
Say = Callable[[str], None]


class DeployError(RunbookError):
    """A deploy could not start or stopped before any host switched (bad input, preflight)."""


def quiet(_: str) -> None:
    pass


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

    def output(self) -> str:
        """What its history row keeps as output: each phase (with its own run), the recap."""
        phases = [
            f"{name}: run {p['run_id']} {p['status']} in {p['seconds']} s"
            if "run_id" in p
            else f"{name}: " + ", ".join(f"{k} {v}" for k, v in p.items())
            for name, p in self.phases.items()
        ]
        return "\n".join(phases + self.lines())

    def redact(self, redactor: Redactor) -> None:
        self.message = redactor.text(self.message)
        self.warnings = [redactor.text(w) for w in self.warnings]
        for row in self.hosts.values():
            row["message"] = redactor.text(row["message"])


def failures(result: RunResult) -> str:
    return "; ".join(f"{name}: {h.message or h.status}" for name, h in result.failed.items())


def host_releases(
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


HISTORY_STATUS = {"not_run": "skipped", "changed": "ok"}
