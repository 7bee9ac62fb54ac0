"""Results are values: a step's outcome, a host's steps, a run's hosts and its recap.

`RunResult.to_dict()` is the `--json` document (redact it before it leaves); `recap()` gives
Ansible's PLAY RECAP counters per host.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

COUNTERS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")


@dataclass
class StepResult:
    """What one step did on one host."""

    host: str
    step: str
    action: str
    status: str  # ok | changed | skipped | failed
    message: str = ""
    position: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    attempts: int = 1
    duration: float = 0.0
    rescued: bool = False
    ignored: bool = False
    rescue: bool = False  # this step ran as another step's rescue
    handler: bool = False  # a handler a changed step notified
    started_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "step": self.step,
            "action": self.action,
            "status": self.status,
            "message": self.message,
            "rc": self.rc,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "data": self.data,
            "attempts": self.attempts,
            "duration": round(self.duration, 4),
            "rescued": self.rescued,
            "ignored": self.ignored,
            "rescue": self.rescue,
            "handler": self.handler,
        }


@dataclass
class HostResult:
    """One host's run: its steps, or why it could not be reached or was not run."""

    host: str
    status: str = "ok"  # ok | failed | unreachable | not_run
    steps: list[StepResult] = field(default_factory=list)
    cause: str | None = None  # unreachable: unresolved | refused | auth | timeout | ...
    message: str = ""
    duration: float = 0.0
    batch: int = 0

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "unreachable")

    def counts(self) -> dict[str, int]:
        """Ansible's PLAY RECAP counters: `ok` counts every step that did not fail (changed
        ones too); an ignored failure counts as `ok` and `ignored`; a rescued failure only as
        `rescued` (its rescue steps count for themselves)."""
        counts = dict.fromkeys(COUNTERS, 0)
        for step in self.steps:
            if step.rescued:
                counts["rescued"] += 1
            elif step.ignored:
                counts["ok"] += 1
                counts["ignored"] += 1
            elif step.status == "changed":
                counts["ok"] += 1
                counts["changed"] += 1
            else:
                counts[step.status] += 1
        if self.status == "unreachable":
            counts["unreachable"] = 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "cause": self.cause,
            "message": self.message,
            "batch": self.batch,
            "duration": round(self.duration, 4),
            "counts": self.counts(),
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass
class RunResult:
    """A whole run: per-host results in inventory order, and why it stopped early, if it did."""

    book: str
    environment: str
    check: bool = False
    hosts: dict[str, HostResult] = field(default_factory=dict)
    stopped: str | None = None
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    ended_at: dt.datetime | None = None
    run_id: int | None = None
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> dict[str, HostResult]:
        return {n: h for n, h in self.hosts.items() if h.status == "ok"}

    @property
    def failed(self) -> dict[str, HostResult]:
        return {n: h for n, h in self.hosts.items() if h.failed}

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "stopped" if self.stopped else "failed"

    @property
    def duration(self) -> float:
        end = self.ended_at or dt.datetime.now(dt.UTC)
        return (end - self.started_at).total_seconds()

    def recap(self) -> dict[str, dict[str, int]]:
        return {name: host.counts() for name, host in self.hosts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "book": self.book,
            "environment": self.environment,
            "check": self.check,
            "status": self.status,
            "stopped": self.stopped,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "duration": round(self.duration, 3),
            "arguments": self.arguments,
            "recap": self.recap(),
            "hosts": {name: host.to_dict() for name, host in self.hosts.items()},
        }
