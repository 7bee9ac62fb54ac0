"""Books over real OpenSSH: every host, one session per host, check mode, serial, unreachable."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runbooks.engine.book import inline_book
from runbooks.engine.executor import Executor, RunOptions
from runbooks.engine.inventory import load_environment
from runbooks.engine.results import RunResult
from tests.support.sshd import SSHHost, keygen, write_inventory

pytestmark = pytest.mark.ssh


def run(directory: Path, document: dict[str, Any], **options: Any) -> RunResult:
    inventory = load_environment("test", {}, directory)
    return Executor(inline_book("t", document), inventory, RunOptions(**options)).run()


WRITE_BOOK = {
    "steps": [
        {"name": "facts", "facts": {}},
        {"name": "pid", "shell": {"cmd": "echo $PPID", "read_only": True}, "register": "first"},
        {
            "name": "config",
            "file": {
                "path": "{{ root }}/app.conf",
                "content": "host={{ inventory_hostname }}\n",
                "mode": "0640",
            },
        },
        {
            "name": "touch",
            "shell": {"cmd": "touch {{ root }}/touched", "creates": "{{ root }}/touched"},
        },
        {
            "name": "pid again",
            "shell": {"cmd": "echo $PPID", "read_only": True},
            "register": "second",
        },
        {
            "name": "same session",
            "shell": {"cmd": "true", "read_only": True},
            "when": "first.stdout == second.stdout",
        },
    ]
}


def test_a_book_runs_on_every_host_through_one_session_each(
    inventory_dir: Path, sshd_hosts: list[SSHHost]
) -> None:
    result = run(inventory_dir, WRITE_BOOK)
    assert result.ok, result.to_dict()
    for host in sshd_hosts:
        assert (host.root / "app.conf").read_text() == f"host={host.name}\n"
        assert (host.root / "touched").exists()
        steps = result.hosts[host.name].steps
        # every step's process is a child of the same remote shell (its parent's pid did not
        # change), so the last step ran
        assert [s.status for s in steps] == ["ok", "ok", "changed", "changed", "ok", "ok"]
    again = run(inventory_dir, WRITE_BOOK)
    assert all(h.counts()["changed"] == 0 for h in again.hosts.values())


def test_check_mode_changes_nothing_on_disk(inventory_dir: Path, sshd_hosts: list[SSHHost]) -> None:
    result = run(inventory_dir, WRITE_BOOK, check=True)
    assert result.ok
    for host in sshd_hosts:
        assert list(host.root.iterdir()) == []
        statuses = [s.status for s in result.hosts[host.name].steps]
        assert statuses == ["ok", "ok", "changed", "skipped", "ok", "ok"]
        assert "would create" in result.hosts[host.name].steps[2].message


def test_serial_and_max_fail_percentage_stop_at_the_failing_batch(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    directory = tmp_path / "inv"
    write_inventory(directory, "test", sshd_hosts)
    (sshd_hosts[1].root / "broken").touch()
    book = {
        "serial": 1,
        "max_fail_percentage": 0,
        "steps": [
            {"shell": "test ! -e {{ root }}/broken"},
            {"shell": "touch {{ root }}/done"},
        ],
    }
    result = run(directory, book)
    assert [result.hosts[h.name].status for h in sshd_hosts] == [
        "ok",
        "failed",
        "not_run",
        "not_run",
    ]
    assert result.stopped is not None and result.stopped.startswith("batch 2:")
    assert [(h.root / "done").exists() for h in sshd_hosts] == [True, False, False, False]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never speaks SSH."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_unreachable_hosts_are_classified_by_cause(
    tmp_path: Path, sshd_hosts: list[SSHHost], silent_port: int
) -> None:
    good = sshd_hosts[0]
    stranger = keygen(tmp_path / "stranger" / "id_ed25519")
    exposed = tmp_path / "exposed" / "id_ed25519"  # the right key, but others may read it
    exposed.parent.mkdir()
    exposed.write_bytes(good.key.read_bytes())
    exposed.chmod(0o644)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    extra = {
        "nameless": {"address": "no-such-host.invalid", "timeout": 2},
        "refused": {"address": "127.0.0.1", "port": closed_port, "timeout": 2},
        "stranger": {**good.inventory_entry(), "key": str(stranger), "timeout": 5},
        "silent": {"address": "127.0.0.1", "port": silent_port, "timeout": 1},
        "exposed": {**good.inventory_entry(), "key": str(exposed), "timeout": 5},
    }
    directory = tmp_path / "inv"
    write_inventory(directory, "test", [good], extra_hosts=extra)
    result = run(directory, {"steps": [{"shell": "true"}]})
    causes = {name: (h.status, h.cause) for name, h in result.hosts.items()}
    assert causes == {
        good.name: ("ok", None),
        "nameless": ("unreachable", "unresolved"),
        "refused": ("unreachable", "refused"),
        "stranger": ("unreachable", "auth"),
        "silent": ("unreachable", "timeout"),
        "exposed": ("unreachable", "auth"),
    }
    assert "may be read by others (mode 644): chmod 600" in result.hosts["exposed"].message
    for name in extra:
        message = result.hosts[name].message
        assert "\n" not in message and "Traceback" not in message
        assert result.hosts[name].counts()["unreachable"] == 1


def test_host_keys_are_checked_strictly_by_default(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    good, other = sshd_hosts[0], sshd_hosts[1]
    empty = tmp_path / "empty_known_hosts"
    empty.touch()
    wrong = tmp_path / "wrong_known_hosts"
    other_key = other.known_hosts.read_text().split()[1:]
    wrong.write_text(f"[{good.address}]:{good.port} {' '.join(other_key)}\n")
    learned = tmp_path / "learned" / "known_hosts"
    extra = {
        "unknown": {**good.inventory_entry(), "known_hosts": str(empty)},
        "changed": {**good.inventory_entry(), "known_hosts": str(wrong)},
        "changed-accept-new": {
            **good.inventory_entry(),
            "known_hosts": str(wrong),
            "host_key_check": "accept-new",
        },
        "learns": {
            **good.inventory_entry(),
            "known_hosts": str(learned),
            "host_key_check": "accept-new",
        },
    }
    directory = tmp_path / "inv"
    write_inventory(directory, "test", [good], extra_hosts=extra)
    result = run(directory, {"steps": [{"shell": "true"}]})
    causes = {name: (h.status, h.cause) for name, h in result.hosts.items()}
    assert causes == {
        good.name: ("ok", None),
        "unknown": ("unreachable", "hostkey"),
        "changed": ("unreachable", "hostkey"),
        "changed-accept-new": ("unreachable", "hostkey"),
        "learns": ("ok", None),
    }
    assert f"[{good.address}]:{good.port}" in learned.read_text()
