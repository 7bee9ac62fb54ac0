"""A network namespace standing in for an environment's private network.

`ip netns add` makes the namespace and a veth pair joins it to this machine: the namespace's
end has ``10.<a>.<b>.2``, ours ``.1`` (a /30), so only what listens on the veth address is
reachable from here. A process started with :meth:`Netns.prefix` runs inside; a server bound to
the namespace's loopback (127.0.0.1 there) is reachable from inside only.

    with private_network() as net:
        subprocess.Popen([*net.prefix, "redis-server", "--bind", "127.0.0.1", ...])

Leaving the block kills every process still inside (only processes this test started live
there) and deletes the namespace, whose deletion takes the veth pair with it. Where namespaces
are not permitted (no root, no `ip`, a container without CAP_SYS_ADMIN) the test is skipped
(in CI: failed) with one line saying so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.services import require


@dataclass(frozen=True)
class Netns:
    name: str
    inside: str  # the namespace's veth address
    outside: str  # this machine's veth address

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def pids(self) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in done.stdout.split()]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@contextlib.contextmanager
def private_network() -> Iterator[Netns]:
    """A fresh namespace joined to this machine by a veth pair; cleaned up whatever happens."""
    require(shutil.which("ip") is not None, "network namespaces: `ip` is missing (iproute2)")
    tag = f"{os.getpid() % 100000}"
    name, ours, theirs = f"mq-reach-{tag}", f"mqr{tag}a", f"mqr{tag}b"
    subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    net = Netns(name, f"{subnet}.2", f"{subnet}.1")
    _ip("netns", "del", name)  # a namespace left by a killed run of this very pid
    made = _ip("netns", "add", name)
    require(
        made.returncode == 0,
        f"network namespaces are not permitted here (ip netns add: {made.stderr.strip()})",
    )
    try:
        for args in (
            ("link", "add", ours, "type", "veth", "peer", "name", theirs),
            ("link", "set", theirs, "netns", name),
            ("addr", "add", f"{net.outside}/30", "dev", ours),
            ("link", "set", ours, "up"),
            ("netns", "exec", name, "ip", "addr", "add", f"{net.inside}/30", "dev", theirs),
            ("netns", "exec", name, "ip", "link", "set", theirs, "up"),
            ("netns", "exec", name, "ip", "link", "set", "lo", "up"),
        ):
            done = _ip(*args)
            require(done.returncode == 0, f"network namespace set-up: ip {' '.join(args)}: "
                    f"{done.stderr.strip()}")  # fmt: skip
        yield net
    finally:
        for _ in range(50):  # workers a deploy started there fork; kill until none is left
            pids = net.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        _ip("netns", "del", name)
        _ip("link", "del", ours)  # gone with the namespace already, unless it failed midway
