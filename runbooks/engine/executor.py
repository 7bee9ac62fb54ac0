"""Run a book on an environment's hosts: batches per `serial`, hosts of a batch in parallel.

Each host gets one target (one connection, one shell session) for all its steps, and runs its
steps in order on its own thread (hosts do not wait for each other between steps: Ansible's
"free" strategy). After each batch the share of failed hosts (failed or unreachable) is
compared with the book's `max_fail_percentage`: above it, the run stops (reason in
`RunResult.stopped`, also after the last or only batch) and the remaining hosts are reported
`not_run`. Without `max_fail_percentage`, a batch in which every host failed stops the run, as
Ansible does.

Variables a step sees, later ones winning: the book's `vars`, the inventory's (environment,
groups, host), `--extra` vars, then `inventory_hostname`, `environment`, `check`, `facts` and
each registered result; and Ansible's `groups` (group -> host names), `group_names` (this
host's), `hostvars` (host -> its inventory and book vars: not other hosts' facts or registered
results, since hosts run freely) and `vars` (all of this host's variables). A template or
condition that fails (an undefined name) fails the step with FILE:LINE: FIELD.

Handlers run once per host after its steps, in the order the book defines them, when a step
that reported `changed` notified them; a failed host runs none unless `force_handlers`. A step
with `become` runs its scripts through :class:`runbooks.connectors.become.BecomeTarget`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from runbooks.actions.base import Outcome, StepContext
from runbooks.connectors.become import Become, BecomeTarget
from runbooks.connectors.targets import Target, open_target
from runbooks.engine.book import Book, Step
from runbooks.engine.expressions import TemplateProblem, render
from runbooks.engine.inventory import Host, Inventory
from runbooks.engine.results import HostResult, RunResult, StepResult
from runbooks.engine.tags import select_steps
from runbooks.engine.variables import HostVars, Vars
from runbooks.errors import ExpressionError, HostUnreachable, NotFound, StepError

log = logging.getLogger("runbooks.run")


@dataclass(frozen=True)
class RunOptions:
    """The operator's choices for one run."""

    check: bool = False
    limit: str | None = None
    tags: frozenset[str] = frozenset()
    skip_tags: frozenset[str] = frozenset()
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    forks: int = 64
    diff: bool = False


class Listener(Protocol):
    """Live progress: called from the hosts' threads as things happen."""

    def batch(self, index: int, hosts: list[str]) -> None: ...

    def step(self, result: StepResult) -> None: ...

    def host(self, result: HostResult) -> None: ...


class Fanout:
    """One listener that calls each of `listeners` in turn (the CLI's progress, the run's live
    events, a sliced run's host writer); None entries are left out."""

    def __init__(self, *listeners: Listener | None) -> None:
        self.listeners = [item for item in listeners if item is not None]

    def batch(self, index: int, hosts: list[str]) -> None:
        for item in self.listeners:
            item.batch(index, hosts)

    def step(self, result: StepResult) -> None:
        for item in self.listeners:
            item.step(result)

    def host(self, result: HostResult) -> None:
        for item in self.listeners:
            item.host(result)


class _Quiet:
    def batch(self, index: int, hosts: list[str]) -> None:
        pass

    def step(self, result: StepResult) -> None:
        pass

    def host(self, result: HostResult) -> None:
        pass


@dataclass
class _HostRun:
    """What one host's run accumulates beside its variables."""

    notified: set[str] = field(default_factory=set)  # handler names a changed step notified
    modes: dict[str, str] = field(default_factory=dict)  # become: user -> nopass | pass


class Executor:
    """Run `book` on hosts of `inventory`; `run()` returns a :class:`RunResult`."""

    def __init__(
        self,
        book: Book,
        inventory: Inventory,
        options: RunOptions | None = None,
        listener: Listener | None = None,
        connect: Callable[[Host], Target] = open_target,
    ) -> None:
        self.book = book
        self.inventory = inventory
        self.options = options or RunOptions()
        self.listener: Listener = listener or _Quiet()
        self.connect = connect
        self.steps = select_steps(book, self.options.tags, self.options.skip_tags)
        self.hostvars = HostVars(inventory, self._base)
        self.groups = {g: list(names) for g, names in inventory.groups.items()}

    def hosts(self) -> list[Host]:
        """The hosts this run targets; NotFound when the book's pattern and --limit share none."""
        chosen = self.inventory.select(self.book.hosts, self.options.limit)
        if not chosen:
            raise NotFound(
                f"no host of {self.inventory.environment!r} is in both the book's hosts "
                f"({self.book.hosts}) and --limit ({self.options.limit})"
            )
        return chosen

    def run(self, result: RunResult | None = None) -> RunResult:
        result = result or RunResult(self.book.name, self.inventory.environment, self.options.check)
        hosts = {h.name: h for h in self.hosts()}
        batches = self.book.batches(list(hosts))
        for number, names in enumerate(batches, start=1):
            if result.stopped:
                for name in names:
                    result.hosts[name] = HostResult(
                        name, "not_run", message="not run: the run stopped earlier", batch=number
                    )
                continue
            self.listener.batch(number, names)
            workers = max(1, min(self.options.forks, len(names)))
            with ThreadPoolExecutor(workers, thread_name_prefix="runbook") as pool:
                done = list(pool.map(lambda n, b=number: self._host(hosts[n], b), names))
            for host_result in done:
                result.hosts[host_result.host] = host_result
            failed = sum(1 for h in done if h.failed)
            share = 100.0 * failed / len(names)
            limit = self.book.max_fail_percentage
            more = number < len(batches)
            if limit is not None and share > limit:
                result.stopped = (
                    f"batch {number}: {failed} of {len(names)} hosts failed "
                    f"({share:.0f}% > max_fail_percentage {limit:g}%)"
                )
            elif more and limit is None and failed == len(names):
                result.stopped = f"batch {number}: every host failed"
        result.ended_at = dt.datetime.now(dt.UTC)
        return result

    # -- one host -------------------------------------------------------------------------

    def _base(self, host: Host) -> dict[str, Any]:
        return {**self.book.vars, **self.inventory.host_vars(host), **self.options.extra_vars}

    def _variables(self, host: Host) -> dict[str, Any]:
        variables = self._base(host)
        variables.update(
            inventory_hostname=host.name,
            environment=self.inventory.environment,
            check=self.options.check,
            facts={},
            groups=self.groups,
            group_names=list(host.groups),
            hostvars=self.hostvars,
        )
        variables["vars"] = Vars(variables)
        return variables

    def _host(self, host: Host, batch: int) -> HostResult:
        started = time.monotonic()
        result = HostResult(host.name, batch=batch)
        try:
            self._host_steps(host, result)
        except HostUnreachable as exc:
            result.status, result.cause, result.message = "unreachable", exc.cause, str(exc)
        except Exception as exc:  # a bug in an action must not take the other hosts down
            log.exception("host %s: unexpected error", host.name)
            result.status, result.message = "failed", f"internal error: {type(exc).__name__}: {exc}"
        result.duration = time.monotonic() - started
        log.info("host %s: %s %s", host.name, result.status, result.message)
        self.listener.host(result)
        return result

    def _host_steps(self, host: Host, result: HostResult) -> None:
        variables = self._variables(host)
        target = self.connect(host)
        run = _HostRun()
        position = 0
        try:
            for position, step in enumerate(self.steps, start=1):
                outcome = self._step(step, position, target, host, variables, result, run)
                if outcome.status == "failed" and not (outcome.rescued or outcome.ignored):
                    result.status = "failed"
                    result.message = f"{outcome.step}: {outcome.message}"
                    break
            if result.status == "failed" and not self.book.force_handlers:
                return
            for handler in self.book.handlers:
                if handler.name not in run.notified:
                    continue
                position += 1
                outcome = self._step(
                    handler, position, target, host, variables, result, run, handler=True
                )
                if outcome.status == "failed" and not (outcome.rescued or outcome.ignored):
                    result.status = "failed"
                    result.message = result.message or f"{outcome.step}: {outcome.message}"
                    return
        finally:
            target.close()

    def _step(
        self,
        step: Step,
        position: int,
        target: Target,
        host: Host,
        variables: dict[str, Any],
        result: HostResult,
        run: _HostRun,
        rescue: bool = False,
        handler: bool = False,
    ) -> StepResult:
        outcome = self._execute(step, position, target, host, variables, run)
        outcome.rescue = rescue
        outcome.handler = handler
        if outcome.status == "failed" and step.ignore_errors:
            outcome.ignored = True
        if outcome.status == "changed":
            run.notified.update(step.notify)
        result.steps.append(outcome)
        log.info(
            "host %s step %s [%s]: %s %s",
            host.name,
            outcome.step,
            step.action,
            outcome.status,
            outcome.message,
        )
        self.listener.step(outcome)
        if outcome.status == "failed" and step.rescue and not outcome.ignored:
            rescued = True
            for item in step.rescue:
                after = self._step(
                    item, position, target, host, variables, result, run, True, handler
                )
                if after.status == "failed" and not after.ignored:
                    rescued = False
                    break
            outcome.rescued = rescued
        return outcome

    def _render(self, step: Step, key: str, value: Any, variables: dict[str, Any]) -> Any:
        """`value` rendered; a failure is an ExpressionError naming FILE:LINE: FIELD."""
        try:
            return render(value, variables)
        except TemplateProblem as exc:
            field_name = f"{step.where}.{key}" if step.where else key
            line = step.lines.get(key, step.line)
            raise ExpressionError(self.book.path, line, field_name, str(exc)) from None

    def _become(self, step: Step, variables: dict[str, Any]) -> Become | None:
        wanted = self.book.become if step.become is None else step.become
        if not wanted:
            return None
        user = step.become_user or self.book.become_user or "root"
        password = variables.get("become_password")
        return Become(user, None if password in (None, "") else str(password))

    def _execute(
        self,
        step: Step,
        position: int,
        target: Target,
        host: Host,
        variables: dict[str, Any],
        run: _HostRun,
    ) -> StepResult:
        started = time.monotonic()
        record = StepResult(
            host.name,
            step.name,
            step.action,
            "ok",
            position=position,
            started_at=dt.datetime.now(dt.UTC),
        )
        try:
            record.step = str(self._render(step, "name", step.name, variables))
            for condition in step.when:
                try:
                    holds = condition.holds(variables)
                except TemplateProblem as exc:
                    line = step.lines.get("when", step.line)
                    where = f"{step.where}.when" if step.where else "when"
                    raise ExpressionError(
                        self.book.path, line, where, f"{exc} in {condition.source!r}"
                    ) from None
                if not holds:
                    record.status, record.message = "skipped", f"when: {condition.source}"
                    if step.register:  # as Ansible does: the name says the step was skipped
                        variables[step.register] = {
                            "status": "skipped",
                            "skipped": True,
                            "changed": False,
                            "failed": False,
                            "message": record.message,
                            "skip_reason": "Conditional result was False",
                        }
                    return record
            params = {
                key: self._render(step, f"{step.action}.{key}", value, variables)
                for key, value in step.params.items()
            }
        except ExpressionError as exc:
            record.status, record.message = "failed", str(exc)
            return record
        action = step.impl
        assert action is not None  # resolved when the book was loaded
        become = self._become(step, variables)
        if become is not None:
            try:
                target = BecomeTarget(target, become, run.modes)
            except StepError as exc:
                record.status, record.message = "failed", str(exc)
                return record
        context = StepContext(
            target=target,
            host=host.name,
            check=self.options.check,
            vars=variables,
            timeout=step.timeout,
            book_dir=self.book.path.parent,
            diff=self.options.diff or self.options.check,
            become=None if become is None else become.user,
        )
        outcome = Outcome("failed", "not run")
        for attempt in range(1, step.retries + 2):
            record.attempts = attempt
            try:
                outcome = action.run(context, params)
            except StepError as exc:
                outcome = Outcome("failed", str(exc))
            except OSError as exc:
                outcome = Outcome("failed", f"{type(exc).__name__}: {exc}")
            if outcome.status != "failed" or attempt > step.retries:
                break
            time.sleep(step.delay)
        record.status, record.message, record.data = outcome.status, outcome.message, outcome.data
        record.rc, record.stdout, record.stderr = outcome.rc, outcome.stdout, outcome.stderr
        record.duration = time.monotonic() - started
        if outcome.facts:
            variables["facts"] = {**variables.get("facts", {}), **outcome.facts}
        if step.register:
            variables[step.register] = {
                "status": outcome.status,
                "skipped": False,
                "failed": outcome.status == "failed",
                "changed": outcome.status == "changed",
                "message": outcome.message,
                "rc": outcome.rc,
                "stdout": outcome.stdout.strip(),
                "stderr": outcome.stderr.strip(),
                "data": outcome.data,
            }
        return record
