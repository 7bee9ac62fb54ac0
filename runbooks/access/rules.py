"""The commands the tool itself holds dangerous: each needs a second person's approval.

Besides these, a book or an inventory environment may declare `approval: required` (the book
for every run, the environment for deploy and rollback); their callers pass that to the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery_app.infra.keyspace import MONEY_QUEUES

REMOTE = " (remote)"  # a command run on a host of --env records itself under this suffix


def needs_approval(name: str, environment: str, arguments: Mapping[str, Any]) -> str | None:
    """Why the record `name` needs approval, or None."""
    command = name.removesuffix(REMOTE)
    if (
        command == "queue.purge"
        and arguments.get("force")
        and arguments.get("queue") in (MONEY_QUEUES)
    ):
        return f"purging money queue {arguments.get('queue')!r}"
    if command == "failed.flush":
        return "flushing failed tasks"
    if command == "cache.clear" and environment == "production":
        return "clearing production's cache"
    return None
