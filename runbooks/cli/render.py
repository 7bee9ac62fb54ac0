"""What people see: live progress lines while hosts run, a recap per host, history tables.

Every line goes through the run's :class:`Redactor` before it is printed.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from runbooks.engine.redact import Redactor
from runbooks.engine.results import COUNTERS, HostResult, RunResult, StepResult

_MARK = {"ok": "ok", "changed": "changed", "skipped": "skipped", "failed": "FAILED"}


class ConsoleProgress:
    """A :class:`runbooks.engine.executor.Listener` printing one line per step and per host."""

    def __init__(self, redactor: Redactor, stream: TextIO | None = None) -> None:
        self.redactor = redactor
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()

    def _print(self, line: str) -> None:
        with self.lock:
            print(self.redactor.text(line), file=self.stream, flush=True)

    def batch(self, index: int, hosts: list[str]) -> None:
        shown = ", ".join(hosts[:8]) + (f" (+{len(hosts) - 8})" if len(hosts) > 8 else "")
        self._print(f"== batch {index}: {shown}")

    def step(self, result: StepResult) -> None:
        status = _MARK.get(result.status, result.status)
        if result.rescued:
            status = "rescued"
        elif result.ignored:
            status = "failed (ignored)"
        prefix = "  rescue: " if result.rescue else ""
        if result.handler:
            prefix = "handler: " + prefix.strip()
        tries = f" after {result.attempts} attempts" if result.attempts > 1 else ""
        message = f" - {result.message}" if result.message else ""
        self._print(
            f"{result.host:<16} {status:<8} {prefix}{result.step} "
            f"({result.duration:.2f}s{tries}){message}"
        )
        diff = result.data.get("diff") if isinstance(result.data, dict) else None
        if diff:  # one block, masked as every line is
            self._print(str(diff).rstrip("\n"))

    def host(self, result: HostResult) -> None:
        if result.status == "unreachable":
            self._print(f"{result.host:<16} UNREACHABLE {result.message}")


def recap_lines(result: RunResult) -> list[str]:
    """Ansible's PLAY RECAP: one line of counters per host, then the run's outcome."""
    width = max([16, *(len(name) for name in result.hosts)])
    lines = [
        f"RECAP {result.book} on {result.environment}" + (" (check mode)" if result.check else "")
    ]
    for name, host in result.hosts.items():
        counts = host.counts()
        cells = "  ".join(f"{key}={counts[key]}" for key in COUNTERS)
        suffix = ""
        if host.status == "unreachable":
            suffix = f"  [{host.cause}]"
        elif host.status == "not_run":
            suffix = "  [not run]"
        lines.append(f"{name:<{width}}  {cells}{suffix}")
    if result.stopped:
        lines.append(f"stopped: {result.stopped}")
    failed = len(result.failed)
    run = f"run {result.run_id}: " if result.run_id is not None else ""
    lines.append(
        f"{run}{result.status}, {len(result.hosts)} hosts, {failed} failed, {result.duration:.2f}s"
    )
    return lines


def print_recap(result: RunResult, redactor: Redactor, out: Callable[[str], None] = print) -> None:
    for line in recap_lines(result):
        out(redactor.text(line))


def print_books(books: list[dict[str, Any]]) -> None:
    width = max([8, *(len(b["name"]) for b in books)])
    for book in books:
        if book["error"]:
            print(f"{book['name']:<{width}}  (invalid) {book['error']}")
        else:
            tags = f" [tags: {', '.join(book['tags'])}]" if book["tags"] else ""
            print(f"{book['name']:<{width}}  {book['description']}{tags}")


def print_history(runs: list[dict[str, Any]]) -> None:
    if not runs:
        print("no runs recorded yet")
        return
    for run in runs:
        duration = f"{run['duration']:.2f}s" if run["duration"] is not None else "-"
        check = " (check)" if run["check"] else ""
        print(
            f"{run['id']:>5}  {(run['started_at'] or '')[:19]}  {run['status']:<8} "
            f"{run['kind']:<8} {run['name']}{check} on {run['environment'] or '-'} "
            f"by {by(run)} ({duration})"
        )


def by(run: dict[str, Any]) -> str:
    """Who ran it, and who approved it (approval N) when someone did."""
    if not run.get("approved_by"):
        return str(run["operator"])
    return f"{run['operator']}, approved by {run['approved_by']} (approval {run['approval_id']})"


def print_run(run: dict[str, Any]) -> None:
    print(
        f"run {run['id']}: {run['kind']} {run['name']} on {run['environment'] or '-'} "
        f"by {by(run)}, version {run['version']}"
    )
    print(f"  started {run['started_at']}, ended {run['ended_at']}, status {run['status']}")
    if run["message"]:
        print(f"  {run['message']}")
    print(f"  arguments: {run['arguments']}")
    for host in run["hosts"]:
        cause = f" [{host['cause']}]" if host["cause"] else ""
        print(
            f"  {host['host']:<16} {host['status']}{cause} ok={host['ok']} "
            f"changed={host['changed']} skipped={host['skipped']} failed={host['failed']} "
            f"rescued={host['rescued']} {host['message']}"
        )
    for step in run["steps"]:
        rc = f" rc={step['rc']}" if step["rc"] is not None else ""
        print(
            f"    {step['host']:<14} #{step['position']} {step['status']:<8} {step['step']}"
            f"{rc} ({step['duration']:.2f}s) {step['message']}"
        )
