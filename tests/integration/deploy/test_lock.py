"""The deploy lock: one deploy per environment, named owner, forced unlock, expiry after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runbooks.deploy import rollout
from runbooks.deploy.lock import DeployLock, DeployLocked
from runbooks.engine import history
from tests.support.deploy import Fleet
from tests.support.money import MoneyEnv
from tests.support.services import RedisServer, wait_for

pytestmark = pytest.mark.ssh

HOLD = """
import sys, time, redis
from runbooks.deploy.lock import DeployLock
lock = DeployLock(redis.Redis.from_url(sys.argv[1]), sys.argv[2], "test", "alice", "v9", ttl=2)
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def hold_lock(redis_url: str, key: str) -> subprocess.Popen[str]:
    """A deploy process (alice's) holding the lock with its heartbeat, until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, redis_url, key],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_deploy_is_refused_naming_the_owner_and_a_killed_one_expires(
    money: MoneyEnv, fleet: Fleet, repo: Path, redis_server: RedisServer
) -> None:
    key = rollout.lock_key(money.container, "test")
    client = redis_server.client()
    alice = hold_lock(redis_server.url, key)
    try:
        lowest = [client.pttl(key)]

        def renewed() -> bool:  # the TTL went down, then back up: the heartbeat renewed it
            ttl = int(client.pttl(key))
            lowest[0] = min(lowest[0], ttl)
            return ttl > lowest[0] + 200

        wait_for(renewed, 5, "the lock's TTL to be renewed by its heartbeat")
        request = rollout.DeployRequest(
            environment="test", ref="v1", repo=repo, inventory_dir=fleet.inventory_dir
        )
        with pytest.raises(DeployLocked, match=r"test is being deployed by alice .* since "):
            rollout.deploy(money.container, request, {})
        assert not any(h.root.joinpath("srv/maqsafy/releases").exists() for h in fleet.hosts)
        alice.send_signal(signal.SIGKILL)  # the laptop dies: no release, no heartbeat
        alice.wait()
        wait_for(lambda: client.exists(key) == 0, 10, "the dead deploy's lock to expire")
        mine = DeployLock(client, key, "test", "bob")
        mine.acquire()
        mine.release()
        assert client.exists(key) == 0
    finally:
        if alice.poll() is None:
            os.kill(alice.pid, signal.SIGKILL)
            alice.wait()


def test_unlock_forces_a_held_lock_open_and_is_recorded(
    money: MoneyEnv, fleet: Fleet, redis_server: RedisServer
) -> None:
    key = rollout.lock_key(money.container, "test")
    alice = hold_lock(redis_server.url, key)
    try:
        message = rollout.unlock(money.container, "test", {}, fleet.inventory_dir)
        assert "deployed by alice" in message
        assert redis_server.client().exists(key) == 0
        run = history.list_runs(money.container.sessions, 1)[0]
        assert run["name"] == "deploy.unlock" and "alice" in run["message"]
        # alice's heartbeat finds the lock is no longer hers and does not take it back
        wait_for(lambda: redis_server.client().exists(key) == 0, 3, "the lock to stay open")
        assert rollout.unlock(money.container, "test", {}, fleet.inventory_dir).endswith(
            "was not locked"
        )
    finally:
        alice.kill()
        alice.wait()


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--serial", "abc"], "error: --serial: expected a host count from 1 to 100000"),
        (["--serial", "99999999999999999999"], "error: --serial: expected a host count from 1"),
        (["--max-fail", "150"], "error: --max-fail: expected a percentage from 0 to 100"),
        (["--ref", "no-such-ref"], "error: --ref: 'no-such-ref' is not a commit"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    money: MoneyEnv, fleet: Fleet, flags: list[str], says: str
) -> None:
    project = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [str(project / ".venv/bin/invoke"), "deploy", "--env", "test",
         "--inventory", str(fleet.inventory_dir), *flags],
        cwd=project,
        env={**os.environ, **money.env},
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(says)
    assert not any(h.root.joinpath("srv/maqsafy/releases").exists() for h in fleet.hosts)
