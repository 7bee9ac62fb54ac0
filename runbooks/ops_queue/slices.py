"""Run one slice of a sliced run on this ops worker; take over slices whose worker died.

`invoke run BOOK --remote --slices N` sends N signed ``runbook.slice`` requests to the ops
queue (:mod:`runbooks.ops_queue.sender`); any ops workers run them. Every slice selects the
book's hosts the same way (the worker's inventory, the book's `hosts`, `--limit`, in inventory
order) and runs every N-th of them: slice 0 hosts 0, N, 2N, ...; a slice with no host (more
slices than hosts) ends at once. `serial` and `max_fail_percentage` apply within each slice.
All slices write one run (:mod:`runbooks.engine.history_slices`): its row is opened by the
first slice to arrive, each host's row is written when the host ends, and the slice that ends
last closes the run (`ok`, `failed` when a host failed, `stopped` when a slice stopped early).

A worker that dies (SIGKILL, a lost host) mid-slice:

- the hosts its slice had finished are written already: they are not run again, nor counted
  twice (a host is unique per run);
- a host that was mid-step has no row: the slice's next holder runs it again **from its first
  step**, so steps that ran before the death run a second time (books check before acting, as
  every shipped one does) and the history shows that second run;
- the slice is taken again, by whichever comes first: another slice of the run that ends
  takes over every slice whose holder's heartbeat is older than the lease
  (``MAQSAFY_OPS_SLICE_LEASE``, default 30 s; a holder renews it every quarter of that);
  or the broker: the task is acknowledged late with reject-on-worker-lost, so a pool child
  that dies is requeued at once, and the message of a worker that died whole is restored by
  kombu once it has been unacknowledged for the broker's ``visibility_timeout``
  (``MAQSAFY_VISIBILITY_TIMEOUT``, an hour by default).

A delivery of a slice that a live worker holds (a slice that outlived the visibility timeout
is delivered again) waits until that slice ends or its holder goes quiet, so it runs once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from runbooks.engine import history, history_slices, run_events
from runbooks.engine.executor import Executor, Fanout
from runbooks.engine.history_slices import Closed
from runbooks.engine.results import HostResult, RunResult, StepResult
from runbooks.errors import HistoryError
from runbooks.ops_queue.requests import SliceRef
from runbooks.service import Prepared, announce_failure

log = logging.getLogger("runbooks.ops_queue.slices")


@dataclass
class SliceRun:
    """What one slice task did: the run it wrote, the slices it ran (its own first, then those
    it took over), and the run's end when one of them closed it."""

    run_id: int
    ran: list[int] = field(default_factory=list)
    closed: Closed | None = None


def hosts_of(names: list[str], part: SliceRef) -> list[str]:
    """The hosts slice `part` runs out of the run's `names` (in inventory order)."""
    return names[part.index :: part.count]


def run_slice(
    app: Any,
    prepared: Prepared,
    arguments: Mapping[str, Any],
    operator: str,
    part: SliceRef,
    holder: str,
    lease: float,
) -> SliceRun:
    """Run slice `part` as `holder`, then any slice of its run whose holder went quiet."""
    names = [h.name for h in Executor(prepared.book, prepared.inventory, prepared.options).hosts()]
    run_id = history_slices.open_run(
        app.sessions,
        part.request,
        part.count,
        name=prepared.book.name,
        environment=prepared.inventory.environment,
        arguments=arguments,
        check=prepared.options.check,
        operator=operator,
        redactor=prepared.redactor,
    )
    done = SliceRun(run_id)
    _run_part(app, prepared, done, names, part, holder, lease, wait=True)
    for index in history_slices.stale(app.sessions, part.request, lease):
        log.warning("run %s: slice %s went quiet; %s takes it over", run_id, index + 1, holder)
        taken = SliceRef(part.request, index, part.count)
        _run_part(app, prepared, done, names, taken, holder, lease, wait=False)
    if done.closed is not None:
        run_events.writer(app, run_id, prepared.redactor).end(
            done.closed.status, done.closed.message
        )
        _announce(app, prepared, done.closed, arguments)
    return done


def _run_part(
    app: Any,
    prepared: Prepared,
    done: SliceRun,
    names: list[str],
    part: SliceRef,
    holder: str,
    lease: float,
    wait: bool,
) -> None:
    while True:
        state = history_slices.claim(app.sessions, part.request, part.index, holder, lease)
        if state == "claimed":
            break
        if state == "done" or not wait:
            return
        time.sleep(lease / 4)  # a live holder has it: wait for its end, or its silence
    with heartbeat(app.sessions, part, holder, lease / 4):
        written = history_slices.recorded(app.sessions, done.run_id)
        todo = [n for n in hosts_of(names, part) if n not in written]
        stopped = _execute(app, prepared, done.run_id, todo) if todo else ""
        closed = history_slices.finish_slice(
            app.sessions, part.request, part.index, holder, stopped, prepared.redactor
        )
    done.ran.append(part.index)
    done.closed = closed or done.closed


def _execute(app: Any, prepared: Prepared, run_id: int, todo: list[str]) -> str:
    """Run the book on `todo`, writing each host as it ends; why it stopped early ('' if not)."""
    writer = HostWriter(app.sessions, run_id, prepared)
    events = run_events.writer(app, run_id, prepared.redactor)
    options = replace(prepared.options, limit=",".join(todo))
    executor = Executor(prepared.book, prepared.inventory, options, Fanout(writer, events))
    result = RunResult(
        prepared.book.name, prepared.inventory.environment, options.check, run_id=run_id
    )
    try:
        executor.run(result)
    finally:  # hosts a stopped batch never ran, and any the writer could not write
        for host in result.hosts.values():
            if host.host not in writer.written:
                history_slices.record_host(app.sessions, run_id, host, prepared.redactor)
    return result.stopped or ""


class HostWriter:
    """The executor's listener that writes each host's outcome the moment the host ends."""

    def __init__(self, sessions: Any, run_id: int, prepared: Prepared) -> None:
        self.sessions, self.run_id, self.redactor = sessions, run_id, prepared.redactor
        self.written: set[str] = set()
        self._lock = threading.Lock()

    def batch(self, index: int, hosts: list[str]) -> None:
        pass

    def step(self, result: StepResult) -> None:
        pass

    def host(self, result: HostResult) -> None:
        try:
            if not history_slices.record_host(self.sessions, self.run_id, result, self.redactor):
                log.warning("run %s: host %s was written already", self.run_id, result.host)
        except HistoryError as exc:  # tried again when the slice ends
            log.warning("run %s: host %s not written yet: %s", self.run_id, result.host, exc)
            return
        with self._lock:
            self.written.add(result.host)


@contextmanager
def heartbeat(sessions: Any, part: SliceRef, holder: str, every: float) -> Iterator[None]:
    """Renew `holder`'s claim on the slice every `every` seconds while the block runs."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(every):
            try:
                if not history_slices.beat(sessions, part.request, part.index, holder):
                    log.warning("slice %s is no longer held by %s", part.index + 1, holder)
            except HistoryError as exc:
                log.warning("slice %s heartbeat not written: %s", part.index + 1, exc)

    beating = threading.Thread(target=renew, name="slice-heartbeat", daemon=True)
    beating.start()
    try:
        yield
    finally:
        stop.set()
        beating.join()


def _announce(app: Any, prepared: Prepared, closed: Closed, arguments: Mapping[str, Any]) -> None:
    """The closed run's `run.failed` notification, as a run here would send it."""
    if closed.status == "ok":
        return
    run = history.get_run(app.sessions, closed.run_id)
    result = RunResult(
        prepared.book.name,
        prepared.inventory.environment,
        prepared.options.check,
        hosts={h["host"]: _host(h) for h in run["hosts"]},
        stopped=closed.message or None,
        run_id=closed.run_id,
        arguments=dict(arguments),
    )
    announce_failure(app, prepared, result)


def _host(row: Mapping[str, Any]) -> HostResult:
    return HostResult(row["host"], row["status"], cause=row["cause"], message=row["message"])
