"""The health gate after each batch: the batch's workers answer on the new release.

Asked over the environment's broker from the laptop with Celery remote control (the queries
``invoke workers.status`` makes, addressed to the environment's nodes): every node of the host
answers and reports the release (``MAQSAFY_RELEASE``) and its queues; every queue the workers
should consume has a consumer somewhere; and no task failed since the deploy began (failed
tasks are SQL rows).

While it waits it also looks at the host: a node whose process exited, or whose log says it
cannot reach its broker, fails the gate at once with that log line (no point waiting out the
timeout for a cause already known); at the timeout the message carries each node's last line.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as BrokerError

from celery_app.errors import MaqsafyError, ServiceUnavailable
from celery_app.ops import failed_tasks
from runbooks.actions.base import Outcome, StepContext
from runbooks.deploy.hostside import node_names, worker_state


@dataclass
class Gate:
    """What the gate checks against: the broker, the database, when the deploy began."""

    celery: Celery
    container: Any
    started: dt.datetime
    timeout: float = 60.0
    failed_budget: int = 0
    all_nodes: Sequence[str] = ()

    def _ask(self, method: str, nodes: Sequence[str]) -> dict[str, Any]:
        # Addressed to known nodes with a reply count, so it returns as soon as all answered
        # instead of waiting out the timeout as a broadcast must.
        inspect = self.celery.control.inspect(
            timeout=1.0, destination=list(nodes), limit=len(nodes)
        )
        try:
            return inspect._request(method) or {}
        except (OSError, BrokerError) as exc:
            raise ServiceUnavailable(f"broker did not answer: {exc} (is Redis up?)") from exc

    def problems(self, expected: Sequence[str], release: str, queues: Sequence[str]) -> list[str]:
        everyone = sorted(set(self.all_nodes) | set(expected))
        consuming = {
            node: sorted(q["name"] for q in found)
            for node, found in self._ask("active_queues", everyone).items()
        }
        running = self._ask("release", expected)
        found = []
        for node in expected:
            got = str((running.get(node) or {}).get("release", ""))
            if node not in running or node not in consuming:
                found.append(f"{node} does not answer")
            elif got != release:
                found.append(f"{node} runs {got}, not {release}")
            elif not set(queues) <= set(consuming[node]):
                found.append(f"{node} consumes {','.join(consuming[node]) or 'nothing'}")
        consumed = {q for names in consuming.values() for q in names}
        found += [f"queue {q} has no consumer" for q in queues if q not in consumed]
        return found

    def failed_since(self) -> int:
        return failed_tasks.count_failed(self.container.uow, since=self.started)

    def probe(self, ctx: StepContext, release: str) -> list[str]:
        """What is wrong with this host's workers on `release` now, asked once ([] = healthy)."""
        queues = [q for q in str(ctx.vars.get("worker_queues", "")).split(",") if q]
        try:
            return self.problems(node_names(ctx), release, queues)
        except MaqsafyError as exc:
            return [str(exc)]

    def __call__(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        release = str(params["release"])
        expected = node_names(ctx)
        if ctx.check:
            return Outcome("skipped", f"check mode: would wait for {', '.join(expected)}")
        deadline = time.monotonic() + self.timeout
        problems: list[str] = ["not asked yet"]
        data: dict[str, Any] = {"release": release, "nodes": expected}
        state: dict[str, dict[str, str]] = {}
        while time.monotonic() < deadline:
            problems = self.probe(ctx, release)
            if not problems:
                break
            state = worker_state(ctx)
            known = _known_causes(ctx.host, state)
            if known:
                return Outcome("failed", "; ".join(known), data)
            time.sleep(0.5)
        if problems:
            last = [
                f"{node}@{ctx.host}'s log: {row['last']}"
                for node, row in state.items()
                if row.get("last")
            ]
            waited = f"after {self.timeout:.0f}s: " + "; ".join(problems + last)
            return Outcome("failed", waited, data)
        failed = self.failed_since()
        data["failed_since_start"] = failed
        if failed > self.failed_budget:
            return Outcome("failed", f"{failed} task(s) failed since the deploy began", data)
        return Outcome("ok", f"{', '.join(expected)} answer on {release}", data)


def _known_causes(host: str, state: dict[str, dict[str, str]]) -> list[str]:
    """Nodes that will not come up by waiting: exited, or cannot reach their broker."""
    causes = []
    for node, row in state.items():
        if row.get("alive") == "no":
            causes.append(f"{node}@{host} exited: {row.get('last') or 'its log is empty'}")
        elif row.get("broker"):
            causes.append(f"{node}@{host} cannot reach its broker: {row['broker']}")
    return causes
