"""Start real OpenSSH servers for tests: one sshd per loopback address, keys generated per run.

Each host listens on its own address (127.0.0.2, 127.0.0.3, ...), has its own host key and its
own root folder (exported to sessions as ``MAQSAFY_HOST_ROOT``, and written into the inventory
as the host's ``root`` var), and accepts the current user with one generated client key.
StrictModes is off so the keys may live under pytest's temporary directories.

    hosts = start_sshd_hosts(tmp_path, 3)    # or the `sshd_hosts` fixture in tests/conftest.py
    write_inventory(tmp_path / "inv", "test", hosts)
    ...
    stop_all(hosts)

No sshd on the machine -> the tests that need one skip, saying why (fail in CI).
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.services import free_port, require, stop_process, wait_for

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
SFTP_CANDIDATES = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server")


@dataclass
class SSHHost:
    """One test sshd: where it listens, its root folder and the key that logs in."""

    name: str
    address: str
    port: int
    user: str
    key: Path
    root: Path
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file holding this host's key (the inventory checks it strictly)."""
        return self.directory / "known_hosts"

    def inventory_entry(self) -> dict[str, object]:
        return {
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "key": str(self.key),
            "known_hosts": str(self.known_hosts),
            "vars": {"root": str(self.root)},
        }

    def stop(self) -> None:
        stop_process(self.process)


def find_sshd() -> str:
    """Return the sshd binary, or skip (fail in CI) saying what to install."""
    found = shutil.which("sshd") or next((c for c in SSHD_CANDIDATES if Path(c).is_file()), None)
    require(found is not None, "OpenSSH's sshd is not installed (apt install openssh-server)")
    assert found is not None
    return found


def keygen(path: Path) -> Path:
    """Generate an ed25519 key pair at `path` (and `path`.pub); return `path`."""
    require(shutil.which("ssh-keygen") is not None, "ssh-keygen is not installed (openssh-client)")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "maqsafy-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _privsep_ready() -> None:
    # sshd running as root insists on its privilege-separation directory.
    import os

    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def start_sshd(
    base: Path,
    index: int,
    client_key: Path,
    authorized: Path | None = None,
    at: tuple[str, int] | None = None,
    prefix: Sequence[str] = (),
    also: Sequence[str] = (),
    user: str | None = None,
) -> SSHHost:
    """Start one sshd on 127.0.0.<index+2> under `base`/host<index> (or on `at`, started as
    `prefix` + sshd: `ip netns exec NS` puts it in a network namespace; `also`: more
    `ADDRESS:PORT` it listens on), letting in `user` (default the current one) with
    `client_key`."""
    binary = find_sshd()
    _privsep_ready()
    name = f"host{index}"
    directory = base / name
    root = directory / "root"
    root.mkdir(parents=True, exist_ok=True)
    address, port = at or (f"127.0.0.{index + 2}", 0)
    port = port or free_port(address)
    host_key = keygen(directory / "ssh_host_ed25519_key")
    authorized = authorized or directory / "authorized_keys"
    if not authorized.exists():
        authorized.write_text(client_key.with_suffix(".pub").read_text())
    sftp = next((c for c in SFTP_CANDIDATES if Path(c).is_file()), "internal-sftp")
    user = user or getpass.getuser()
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {address}:{port}",
                *(f"ListenAddress {more}" for more in also),
                f"HostKey {host_key}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "StrictModes no",
                "UsePAM no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                "MaxStartups 200",
                "MaxSessions 50",
                "LogLevel ERROR",
                f"SetEnv MAQSAFY_HOST_ROOT={root}",
                f"Subsystem sftp {sftp}",
                "",
            ]
        )
    )
    process = subprocess.Popen(
        [*prefix, binary, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(directory / "sshd.log", "wb"),  # noqa: SIM115 - owned by the process
    )
    host = SSHHost(name, address, port, user, client_key, root, directory, process)
    public = host_key.with_suffix(".pub").read_text().split()
    named = address if port == 22 else f"[{address}]:{port}"  # as ssh and paramiko look it up
    host.known_hosts.write_text(f"{named} {public[0]} {public[1]}\n")
    try:
        wait_for(lambda: _listening(address, port), 10, f"sshd on {address}:{port}")
    except AssertionError:
        host.stop()
        log = (directory / "sshd.log").read_text(errors="replace").strip()
        require(False, f"sshd did not start on {address}:{port}: {log[-300:]}")
    return host


def start_sshd_hosts(base: Path, count: int, user: str | None = None) -> list[SSHHost]:
    """Start `count` sshd hosts sharing one generated client key, letting in `user`."""
    client_key = keygen(base / "client" / "id_ed25519")
    hosts: list[SSHHost] = []
    try:
        for index in range(count):
            hosts.append(start_sshd(base, index, client_key, user=user))
    except BaseException:
        stop_all(hosts)
        raise
    return hosts


def stop_all(hosts: list[SSHHost]) -> None:
    for host in hosts:
        host.stop()


def write_inventory(
    directory: Path,
    environment: str,
    hosts: list[SSHHost],
    extra_hosts: dict[str, dict[str, object]] | None = None,
    vars: dict[str, object] | None = None,
    groups: dict[str, list[str]] | None = None,
) -> Path:
    """Write `directory`/<environment>.yml listing `hosts` (group `all` plus `groups`)."""
    directory.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, object]] = {h.name: h.inventory_entry() for h in hosts}
    entries.update(extra_hosts or {})
    for group, members in (groups or {}).items():
        for member in members:
            entries[member].setdefault("groups", [])
            entries[member]["groups"].append(group)  # type: ignore[union-attr]
    document = {"environment": environment, "vars": vars or {}, "hosts": entries}
    path = directory / f"{environment}.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# -- pytest fixtures (import them into a conftest.py to use them) ----------------------------


@pytest.fixture(scope="session")
def sshd_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SSHHost]]:
    """Four real sshd hosts for the whole session (127.0.0.2-5)."""
    hosts = start_sshd_hosts(tmp_path_factory.mktemp("sshd"), 4)
    yield hosts
    stop_all(hosts)


@pytest.fixture
def sshd_hosts(sshd_fleet: list[SSHHost]) -> list[SSHHost]:
    """The session's sshd hosts, each with an empty root folder for this test."""
    for host in sshd_fleet:
        assert host.process.poll() is None, f"sshd of {host.name} died; see {host.directory}"
        shutil.rmtree(host.root, ignore_errors=True)
        host.root.mkdir(parents=True)
    return sshd_fleet
