"""Findings: what a health check concluded, as values (level, message, causes, next check).

The doctor, the status screen and the security audit all report findings; the worst level of a
report gives the command's exit status, so cron and monitoring can use it: 0 ok, 1 warn,
2 critical.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Level = Literal["ok", "warn", "critical"]
LEVELS: tuple[Level, ...] = ("ok", "warn", "critical")
EXIT_CODES: dict[Level, int] = {"ok": 0, "warn": 1, "critical": 2}


@dataclass(frozen=True)
class Finding:
    """One check's conclusion; `causes` and `next_check` say what to look at when it is not ok."""

    check: str
    level: Level
    message: str
    causes: tuple[str, ...] = ()
    next_check: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["causes"] = list(self.causes)
        return found


def worst(findings: Iterable[Finding]) -> Level:
    """Return the most severe level among `findings` ("ok" when there are none)."""
    levels = [LEVELS.index(f.level) for f in findings]
    return LEVELS[max(levels, default=0)]


def exit_code(findings: Iterable[Finding]) -> int:
    return EXIT_CODES[worst(findings)]


MARKS: dict[Level, str] = {"ok": "ok  ", "warn": "WARN", "critical": "CRIT"}


def render_lines(findings: Iterable[Finding]) -> list[str]:
    """Lines for people: one per finding, then its causes and the next check when not ok."""
    lines: list[str] = []
    for finding in findings:
        lines.append(f"[{MARKS[finding.level]}] {finding.check}: {finding.message}")
        if finding.level != "ok":
            lines.extend(f"         - {cause}" for cause in finding.causes)
            if finding.next_check:
                lines.append(f"         next: {finding.next_check}")
    return lines
