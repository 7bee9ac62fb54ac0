"""`--env` from a laptop outside the environment's network: only SSH crosses into it.

The environment is a network namespace: its sshd listens on the namespace's end of a veth pair,
its Redis on the namespace's own loopback (127.0.0.1 *there*), so this process cannot open a
TCP connection to that Redis at all, as a laptop cannot reach a production Redis. With
`reach: ssh` every command below works, the Redis ones through a tunnel to the app host; with
`reach: direct` each one that talks to Redis from here stops with one line saying so.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import ROOT, clean_environ, run_invoke, run_invoke_batch
from tests.support.deploy import make_fleet
from tests.support.netns import Netns, private_network
from tests.support.services import free_port, redis_server_binary, stop_process
from tests.support.sshd import SSHHost, keygen, start_sshd

pytestmark = pytest.mark.ssh

SEED = """
import redis, sys
from celery_app.infra.keyspace import Keyspace
from celery_app.stores.sessions import SessionStore
client = redis.Redis(port=int(sys.argv[1]))
client.set("maqsafy:cache:menus:today", "x", ex=600)
SessionStore(client, Keyspace()).create("u1")
"""


@pytest.fixture
def private(tmp_path: Path) -> Iterator[tuple[Netns, SSHHost, int]]:
    """The namespace, its sshd (on the veth address) and its Redis port (its loopback only)."""
    with private_network() as net:
        port = free_port()  # free out here too: a direct connection finds nothing listening
        redis_dir = tmp_path / "redis"
        redis_dir.mkdir()
        server = subprocess.Popen(
            [*net.prefix, redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port),
             "--save", "", "--appendonly", "no", "--dir", str(redis_dir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        key = keygen(tmp_path / "client" / "id_ed25519")
        host = start_sshd(  # also on the namespace's loopback: reachable through a jump host only
            tmp_path / "hosts",
            0,
            key,
            at=(net.inside, 22),
            prefix=net.prefix,
            also=["127.0.0.1:22"],
        )
        try:
            ping = [*net.prefix, "redis-cli", "-p", str(port), "ping"]
            for _ in range(100):
                if subprocess.run(ping, capture_output=True, text=True).stdout.strip() == "PONG":
                    break
                subprocess.run(["sleep", "0.1"])
            yield net, host, port
        finally:
            host.stop()
            stop_process(server)  # type: ignore[arg-type]


def set_reach(inventory: Path, reach: str, **changes: Any) -> Path:
    """A copy of the inventory with `reach` (and top-level `changes`) in a folder of its own."""
    document = yaml.safe_load(inventory.read_text())
    document.update(reach=reach, **changes)
    folder = inventory.parent.parent / f"inventory-{reach}-{'-'.join(sorted(changes))}"
    folder.mkdir(exist_ok=True)
    (folder / inventory.name).write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def test_every_env_command_reaches_a_private_network_over_ssh(
    tmp_path: Path, private: tuple[Netns, SSHHost, int], repo: Path, deps_cache: Path
) -> None:
    net, host, port = private
    inside_url = f"redis://127.0.0.1:{port}/0"  # as the app host sees it
    with pytest.raises(OSError):  # the premise: from here, nothing answers there
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    fleet = make_fleet(
        tmp_path / "inventory",
        [host],
        inside_url,
        f"sqlite:///{tmp_path / 'environment.db'}",  # the environment's own database
        environment="private",
        deps_cache=deps_cache,
        reach="ssh",
    )
    on = ["--env", "private", "--inventory", str(fleet.inventory_dir)]
    laptop = clean_environ(
        DATABASE_URL=f"sqlite:///{tmp_path / 'laptop.db'}",  # this machine's run history
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # this machine's own: never used
        MAQSAFY_VAR_DIR=str(tmp_path / "laptop"),
        MAQSAFY_ENV_FILE=str(tmp_path / "no.env"),
    )

    def ok(*args: str, codes: tuple[int, ...] = (0,), cwd: Path = ROOT, here: bool = False) -> str:
        done = run_invoke([*args, *([] if here else on)], laptop, timeout=300, cwd=cwd)
        assert done.returncode in codes, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, (args, done.stderr)
        return done.stdout

    try:
        ok("db.migrate", here=True)
        deployed = json.loads(ok("deploy", "--ref", "v1", "--json", cwd=repo))
        assert deployed["status"] == "ok" and deployed["hosts"]["host0"]["status"] == "changed"
        subprocess.run(
            [*net.prefix, sys.executable, "-c", SEED, str(port)], cwd=ROOT, check=True, timeout=60
        )

        status = json.loads(ok("status", "--json", codes=(0, 1)))  # 1: no persistence (a warning)
        assert [w["name"] for w in status["workers"]] == ["w1@host0"]
        assert f"PONG from {inside_url}" in ok("redis.ping")
        doctor = json.loads(ok("redis.doctor", "--json", codes=(0, 1)))
        assert [d["target"] for d in doctor] == [inside_url]  # named as inside, not the tunnel

        def inside(*command: str) -> str:
            redis_cli = [*net.prefix, "redis-cli", "-p", str(port)]
            return subprocess.run([*redis_cli, *command], capture_output=True, text=True).stdout

        assert "cache keys would be deleted" in ok("cache.clear", "--check")
        assert inside("exists", "maqsafy:cache:menus:today").strip() == "1"
        assert "cache keys" in ok("cache.clear")
        assert inside("exists", "maqsafy:cache:menus:today").strip() == "0"
        queues = json.loads(ok("queue.size", "--json"))
        assert {"payments", "maintenance"} <= {q["name"] for q in queues}
        assert json.loads(ok("sessions.count", "--json"))["sessions"] == 1
        assert json.loads(ok("ratelimit.show", "topup:42", "--json"))["kind"] == "topup"
        assert json.loads(ok("failed.list", "--json"))["rows"] == []
        assert json.loads(ok("workers.restart", "--json"))["status"] == "ok"

        history = {r["name"]: r["status"] for r in json.loads(ok("history", "--json", here=True))}
        for name in ("deploy", "cache.clear", "failed.list (remote)", "workers-restart"):
            assert history.get(name) == "ok", history

        # The same environment with reach: direct: one line, no traceback, nothing recorded.
        direct = ["--env", "private", "--inventory", str(set_reach(fleet.inventory_dir /
                  "private.yml", "direct"))]  # fmt: skip
        refused = [
            ["status"], ["redis.ping"], ["redis.doctor"], ["cache.clear", "--check"],
            ["cache.clear"], ["queue.size"], ["sessions.count"], ["ratelimit.show", "topup:42"],
            ["deploy", "--ref", "HEAD"],
        ]  # fmt: skip
        for args, done in zip(
            refused, run_invoke_batch([([*a, *direct], laptop) for a in refused]), strict=True
        ):
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2 and len(lines) == 1, (args, done.stderr)
            said = f"Redis 127.0.0.1:{port} of environment 'private' is not reachable from here"
            assert said in lines[0] and "set `reach: ssh`" in lines[0], (args, lines)
        after = {r["name"] for r in json.loads(ok("history", "--json", here=True))}
        assert sum(1 for n in after if n == "cache.clear") == 1

        # A hop that fails is named: Redis as the app host sees it, or SSH to the app host.
        document = yaml.safe_load((fleet.inventory_dir / "private.yml").read_text())
        wrong_redis = set_reach(
            fleet.inventory_dir / "private.yml",
            "ssh",
            vars={**document["vars"], "redis_url": f"redis://127.0.0.1:{port + 1}/0"},
        )
        # Through a jump host: the app host's address (its namespace's 127.0.0.1) means
        # nothing from here, only from the jump host (the namespace's sshd on the veth).
        inner = tmp_path / "inner_known_hosts"
        inner.write_text(host.known_hosts.read_text().replace(net.inside, "127.0.0.1", 1))
        document["hosts"]["host0"].update(address="127.0.0.1", port=22, known_hosts=str(inner))
        jump = {k: v for k, v in host.inventory_entry().items() if k != "vars"}
        jumped = set_reach(
            fleet.inventory_dir / "private.yml", "ssh", jump=jump, hosts=document["hosts"]
        )
        document["hosts"]["host0"].update(address=net.inside, port=2)
        no_ssh = set_reach(fleet.inventory_dir / "private.yml", "ssh", hosts=document["hosts"])
        from_host, to_host, through = run_invoke_batch(
            [(["redis.ping", "--env", "private", "--inventory", str(where)], laptop)
             for where in (wrong_redis, no_ssh, jumped)]
        )  # fmt: skip
        assert from_host.returncode == 2, from_host.stderr
        assert (
            from_host.stderr.startswith(
                f"error: Redis 127.0.0.1:{port + 1} from host0 (reach: ssh): connection refused by "
            )
            and from_host.stderr.count("\n") == 1
        ), from_host.stderr
        assert to_host.returncode == 2, to_host.stderr
        assert to_host.stderr.startswith(
            f"error: SSH to the app host host0 failed (refused: nothing listens on {net.inside}:2)"
        ), to_host.stderr
        assert through.returncode == 0 and f"PONG from {inside_url}" in through.stdout, (
            through.stderr
        )
    finally:
        fleet.kill_workers()
