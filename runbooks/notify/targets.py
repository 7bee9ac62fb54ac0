"""An inventory's webhook targets (`notify:`), read and checked with file:line:field.

    notify:
      - url: ${SLACK_OPS_WEBHOOK}          # a reference only: the URL carries a token
        events: [deploy.started, deploy.finished, deploy.failed, deploy.rolled_back, run.failed]
      - url: ${PAGER_WEBHOOK}              # no events: every event

A literal URL (or a ``${VAR:-default}``, whose default is a literal) is refused like any other
secret. Only the variable's *name* is kept: the ops worker that delivers resolves it from its
own environment (:mod:`celery_app.ops.notify`), so the URL never travels or gets recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery_app.ops.notify import EVENTS
from runbooks.engine.source import Fields
from runbooks.errors import InventoryError, SecretLiteral

_WHOLE_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]{0,127})\}")


@dataclass(frozen=True)
class NotifyTarget:
    """One webhook: the variable holding its URL and the events it wants."""

    variable: str
    events: tuple[str, ...] = EVENTS

    def wants(self, event: str) -> bool:
        return event in self.events


def parse(path: Path, top: Fields) -> tuple[NotifyTarget, ...]:
    """The `notify:` list of an inventory document (empty when absent)."""
    found = []
    for index, (line, item) in enumerate(top.items("notify")):
        where = f"notify[{index}]"
        if not isinstance(item, dict):
            raise InventoryError(path, line, where, "expected a mapping with url and events")
        entry = Fields(path, item, InventoryError, where)
        entry.only("url", "events")
        url = entry.required("url").strip()
        reference = _WHOLE_REFERENCE.fullmatch(url)
        if reference is None:
            raise SecretLiteral(
                path,
                entry.line_of("url"),
                entry.field("url"),
                "a webhook URL carries the receiver's token: a literal (or a ${VAR:-default}) "
                "is refused; write a reference like ${SLACK_OPS_WEBHOOK} and set the variable "
                "where the ops workers run",
            )
        events = entry.str_list("events") if entry.has("events") else list(EVENTS)
        unknown = [e for e in events if e not in EVENTS]
        if unknown or not events:
            raise entry.fail(
                "events",
                f"{'unknown event ' + repr(unknown[0]) if unknown else 'no event'}; expected "
                f"some of: {', '.join(EVENTS)}",
            )
        found.append(NotifyTarget(reference.group(1), tuple(dict.fromkeys(events))))
    return tuple(found)


def wanting(targets: Any, event: str) -> list[NotifyTarget]:
    return [t for t in targets if t.wants(event)]
