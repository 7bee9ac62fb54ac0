"""`run BOOK --remote --slices N`: real ops workers run the slices; one run, each host once.

The hosts are real sshd servers on loopback (six inventory hosts over the session's four
servers), the broker a real redis-server, the history PostgreSQL, the workers real Celery
processes. The `ping` book's second step is `redis-cli ping` to the hosts' Redis: node-1 and
node-2 ping `fast`, the others `slow`, a redis-server the test stops (SIGSTOP) to hold those
hosts mid-step and continues (SIGCONT) to let them go; `fast` counts its PINGs, so a host run
twice shows.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from celery_app.bootstrap import Container
from celery_app.celery import make_app
from celery_app.dev.worker_process import WorkerProcess, start_worker
from celery_app.settings import load_settings
from runbooks.engine import history, history_slices
from runbooks.engine.history_tables import OpsRunSlice, writing
from runbooks.engine.run_events import RunEvents
from runbooks.ops_queue.sender import find_run
from tests.support.redis_app import app_env, invoke, migrated_app
from tests.support.services import RedisServer, create_pg_database, start_redis, wait_for
from tests.support.sshd import SSHHost, write_inventory

pytestmark = pytest.mark.ssh

KEY = "s" * 16 + "ops-signing-key-for-slice-tests00"
ENV = "slices"
HOSTS = [f"node-{i}" for i in range(1, 7)]
LEASE = 3  # seconds: MAQSAFY_OPS_SLICE_LEASE's floor, so a dead holder goes quiet fast


@dataclass
class Ops:
    env: dict[str, str]
    app: Container
    fast: RedisServer  # the Redis node-1 and node-2 ping
    slow: RedisServer  # the Redis the other hosts ping (stopped to hold them mid-step)


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory, sshd_fleet: list[SSHHost]) -> Iterator[Ops]:
    base = tmp_path_factory.mktemp("slices")
    broker = start_redis(base / "broker", password="slice-test-pw-5c1d")
    fast, slow = start_redis(base / "fast"), start_redis(base / "slow")
    url, drop = create_pg_database()
    inventory = base / "inventory"
    servers = {h.name: h.inventory_entry() for h in sshd_fleet}
    shared = list(servers.values())
    hosts = {}
    for i, name in enumerate(HOSTS):
        entry = dict(shared[i % len(shared)])
        port = (fast if i < 2 else slow).port
        entry["vars"] = {**entry["vars"], "redis_port": port}  # type: ignore[dict-item]
        hosts[name] = entry
    write_inventory(inventory, ENV, [], extra_hosts=hosts, vars={"redis_host": "127.0.0.1"})
    env = {
        **app_env(base, broker.url),
        "DATABASE_URL": url,
        "MAQSAFY_OPS_SIGNING_KEY": KEY,
        "MAQSAFY_OPS_ENVIRONMENTS": ENV,
        "MAQSAFY_OPS_INVENTORY_DIR": str(inventory),
        "MAQSAFY_OPS_SLICE_LEASE": str(LEASE),
    }
    app = migrated_app(env)
    try:
        yield Ops(env, app, fast, slow)
    finally:
        app.engine.dispose()
        slow.process.send_signal(signal.SIGCONT)
        fast.stop()
        slow.stop()
        broker.stop()
        drop()


@pytest.fixture
def workers(ops: Ops, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Two ops workers, one task at a time each."""
    started = [
        start_worker(
            f"{name}@slices",
            tmp_path / f"{name}.log",
            queues="ops",
            concurrency=1,
            env=ops.env,
            extra=("-I", "runbooks.ops_queue.runner"),
        )
        for name in ("ops1", "ops2")
    ]
    try:
        for worker in started:
            worker.wait_ready()
        yield started
    finally:
        for worker in started:
            worker.kill()


def slices_of(app: Container, request: str) -> list[OpsRunSlice]:
    with writing(app.sessions) as uow:
        return list(
            uow.session.scalars(
                select(OpsRunSlice)
                .where(OpsRunSlice.request == request)
                .order_by(OpsRunSlice.slice)
            )
        )


def hosts_once(run: dict[str, Any]) -> list[str]:
    """The run's hosts, sorted; asserting first that none is listed twice."""
    names = [h["host"] for h in run["hosts"]]
    assert len(names) == len(set(names)), names
    return sorted(names)


def test_a_sliced_run_is_one_run_with_every_host_once(
    ops: Ops, workers: list[WorkerProcess]
) -> None:
    done = invoke(
        ops.env, "run", "ping", "--env", ENV, "--remote", "--slices", "3", "--wait", "50", "--json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    assert (run["name"], run["environment"], run["status"]) == ("ping", ENV, "ok")
    assert run["arguments"]["slices"] == 3 and run["arguments"]["remote"] is True
    assert hosts_once(run) == HOSTS
    assert all(h["ok"] == 2 and h["failed"] == 0 for h in run["hosts"])
    steps = sorted((s["host"], s["position"]) for s in run["steps"])
    assert steps == sorted((h, p) for h in HOSTS for p in (1, 2))  # each step once per host
    parts = slices_of(ops.app, run["arguments"]["request"])
    assert [p.slice for p in parts] == [0, 1, 2] and all(p.done_at for p in parts)
    nodes = {w.name for w in workers}
    assert all(p.attempts == 1 and str(p.holder).split(":")[0] in nodes for p in parts)
    assert [r["id"] for r in history.list_runs(ops.app.sessions, 5)].count(run["id"]) == 1
    # every slice wrote its progress to the run's one event stream; the last to end, the end
    events = RunEvents.for_app(ops.app)
    wait_for(lambda: events.read(run["id"])[-1].kind == "end", 10, "the run's end event")
    seen = events.read(run["id"])
    assert sorted(e.data["host"] for e in seen if e.kind == "host") == HOSTS
    assert len([e for e in seen if e.kind == "step"]) == 2 * len(HOSTS)
    assert [e.data["status"] for e in seen if e.kind == "end"] == ["ok"]

    # more slices than hosts: the extra slices hold no host and end at once; one run
    few = invoke(
        ops.env, "run", "ping", "--env", ENV, "--limit", "node-1,node-2", "--remote",
        "--slices", "3", "--wait", "50", "--json",
    )  # fmt: skip
    assert few.returncode == 0, few.stdout + few.stderr
    assert hosts_once(json.loads(few.stdout)) == ["node-1", "node-2"]

    # --slices 1 is today's remote run: one runbook.run task, no slice rows
    one = invoke(ops.env, "run", "ping", "--env", ENV, "--remote", "--slices", "1", "--wait", "50",
                 "--json")  # fmt: skip
    assert one.returncode == 0, one.stdout + one.stderr
    plain = json.loads(one.stdout)
    assert "slices" not in plain["arguments"] and hosts_once(plain) == HOSTS
    assert slices_of(ops.app, plain["arguments"]["request"]) == []


def test_a_slice_whose_worker_is_killed_is_taken_over_and_counted_once(
    ops: Ops, workers: list[WorkerProcess]
) -> None:
    ops.fast.client().config_resetstat()
    ops.slow.process.send_signal(signal.SIGSTOP)  # node-3..6's `redis-cli ping` wait from now on
    try:
        sent = invoke(ops.env, "run", "ping", "--env", ENV, "--remote", "--slices", "2", "--json")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        request = json.loads(sent.stdout)["request"]

        def both_held_and_fast_hosts_done() -> bool:
            parts = slices_of(ops.app, request)
            holders = {str(p.holder).split(":")[0] for p in parts if p.holder}
            if len(parts) != 2 or len(holders) != 2:
                return False
            return {"node-1", "node-2"} <= history_slices.recorded(
                ops.app.sessions, parts[0].run_id
            )

        # slice 1 (node-1, -3, -5) and slice 2 (node-2, -4, -6) each on one worker; node-1 and
        # node-2 written, the four others mid-step
        wait_for(both_held_and_fast_hosts_done, 30, "each worker holding one slice")
        first = slices_of(ops.app, request)[0]
        victim = next(w for w in workers if str(first.holder).startswith(w.name + ":"))
        survivor = next(w for w in workers if w is not victim)
        victim.kill()  # SIGKILL, main process and pool child, while its hosts are mid-step
        unacked = ops.app.redis("broker").hlen("unacked")
        assert unacked >= 1  # acked late: the broker still holds the dead worker's slice

        def quiet() -> bool:
            beat = slices_of(ops.app, request)[0].heartbeat_at
            assert beat is not None
            beat = beat if beat.tzinfo else beat.replace(tzinfo=dt.UTC)
            return dt.datetime.now(dt.UTC) - beat > dt.timedelta(seconds=LEASE + 0.5)

        wait_for(quiet, 20, "the killed worker's slice to go quiet", every=0.25)
    finally:
        ops.slow.process.send_signal(signal.SIGCONT)

    def ended() -> bool:
        found = find_run(ops.app.sessions, request)
        return found is not None and found["status"] != "running"

    wait_for(ended, 40, "the sliced run to end")
    found = find_run(ops.app.sessions, request)
    assert found is not None
    run = history.get_run(ops.app.sessions, int(found["id"]))
    assert run["status"] == "ok", run
    assert hosts_once(run) == HOSTS
    steps = sorted((s["host"], s["position"]) for s in run["steps"])
    assert steps == sorted((h, p) for h in HOSTS for p in (1, 2))
    parts = slices_of(ops.app, request)
    assert all(p.done_at for p in parts)
    assert str(parts[0].holder).startswith(survivor.name + ":") and parts[0].attempts == 2
    pings = ops.fast.client().info("commandstats")["cmdstat_ping"]["calls"]
    assert pings == 2  # node-1, finished before its worker died, was not run again

    # kombu restores the dead worker's message once it is older than the visibility timeout
    # (an hour here): age it, restore it the way the sweep does; its second delivery runs nothing
    broker = ops.app.redis("broker")
    for tag in broker.zrange("unacked_index", 0, -1):
        broker.zadd("unacked_index", {tag: 0})
    celery = make_app(load_settings(ops.env))
    with celery.connection_for_write() as conn:
        conn.default_channel.qos.restore_visible(num=10, interval=1)
    again = f"'run_id': {run['id']}, 'slices': []"
    wait_for(lambda: again in survivor.log_text(), 20, "the restored slice to be delivered")
    assert history.get_run(ops.app.sessions, run["id"]) == run
