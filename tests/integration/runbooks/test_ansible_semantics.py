"""Where an Ansible user's expectations hold, on real sshd hosts (docs/architecture.md's table).

Each test is a small playbook written as a book, with the behaviour ansible-playbook shows for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runbooks.engine.book import inline_book
from runbooks.engine.executor import Executor, RunOptions
from runbooks.engine.inventory import load_environment
from runbooks.engine.results import RunResult
from runbooks.errors import NotFound
from tests.support.sshd import SSHHost, write_inventory

pytestmark = pytest.mark.ssh


def run(directory: Path, document: dict[str, Any], **options: Any) -> RunResult:
    inventory = load_environment("test", {}, directory)
    return Executor(inline_book("t", document), inventory, RunOptions(**options)).run()


def one_host(tmp_path: Path, sshd_hosts: list[SSHHost]) -> Path:
    directory = tmp_path / "one"
    write_inventory(directory, "test", sshd_hosts[:1])
    return directory


def test_recap_ok_counts_changed_steps_as_ansible_does(
    inventory_dir: Path, sshd_hosts: list[SSHHost]
) -> None:
    book = {
        "steps": [
            {"shell": {"cmd": "true", "read_only": True}},
            {"shell": "touch {{ root }}/x"},
            {"shell": "true", "when": "false"},
            {"shell": "exit 4", "ignore_errors": True},
        ]
    }
    result = run(inventory_dir, book)
    expected = {
        "ok": 3,
        "changed": 1,
        "unreachable": 0,
        "failed": 0,
        "skipped": 1,
        "rescued": 0,
        "ignored": 1,
    }
    assert result.recap() == {h.name: expected for h in sshd_hosts}
    assert result.to_dict()["hosts"][sshd_hosts[0].name]["counts"] == expected


def test_a_step_skipped_by_when_registers_skipped_and_replaces_an_older_value(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    book = {
        "steps": [
            {"shell": {"cmd": "echo first", "read_only": True}, "register": "q"},
            {"shell": "echo second", "when": "false", "register": "q"},
            {"shell": "touch {{ root }}/stale", "when": "q.stdout is defined"},
            {"shell": "touch {{ root }}/skipped", "when": "q.skipped"},
        ]
    }
    result = run(one_host(tmp_path, sshd_hosts), book)
    steps = result.hosts[sshd_hosts[0].name].steps
    assert [s.status for s in steps] == ["ok", "skipped", "skipped", "changed"]
    assert not (sshd_hosts[0].root / "stale").exists()
    assert (sshd_hosts[0].root / "skipped").exists()


def test_never_tag_runs_only_when_one_of_its_tags_is_asked_for(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    directory = one_host(tmp_path, sshd_hosts)
    book = {
        "steps": [
            {"name": "main", "shell": {"cmd": "true", "read_only": True}, "tags": ["app"]},
            {
                "name": "debug",
                "shell": {"cmd": "true", "read_only": True},
                "tags": ["never", "debug"],
            },
            {"name": "always", "shell": {"cmd": "true", "read_only": True}, "tags": ["always"]},
        ]
    }
    ran = {
        asked: [
            s.step
            for s in run(directory, book, tags=frozenset(asked)).hosts[sshd_hosts[0].name].steps
        ]
        for asked in [(), ("debug",), ("app",), ("all",), ("never",)]
    }
    assert ran == {
        (): ["main", "always"],
        ("debug",): ["debug", "always"],
        ("app",): ["main", "always"],
        ("all",): ["main", "always"],
        ("never",): ["debug", "always"],
    }
    with pytest.raises(NotFound, match="tagged never"):
        run(directory, {"steps": [{"shell": "true", "tags": ["never"]}]})


def test_a_background_job_never_writes_into_the_next_step(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    book = {
        "steps": [
            {"shell": "(sleep 1; echo LATE) & echo s1", "register": "r1"},
            {"shell": "sleep 2; echo s2", "register": "r2"},
            {"shell": "touch {{ root }}/leaked", "when": '"LATE" in r2.stdout'},
        ]
    }
    result = run(one_host(tmp_path, sshd_hosts), book)
    steps = result.hosts[sshd_hosts[0].name].steps
    assert [(s.stdout, s.status) for s in steps] == [
        ("s1\n", "changed"),
        ("s2\n", "changed"),
        ("", "skipped"),
    ]
    assert not (sshd_hosts[0].root / "leaked").exists()


def test_kill_of_its_own_shell_fails_only_that_step(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    book = {
        "steps": [
            {"shell": {"cmd": "echo $$", "read_only": True}, "register": "a"},
            {"shell": "kill $$", "ignore_errors": True},
            {"shell": {"cmd": "echo $$", "read_only": True}, "register": "b"},
            {"shell": "touch {{ root }}/after", "when": "a.stdout != b.stdout"},
        ]
    }
    result = run(one_host(tmp_path, sshd_hosts), book)
    host = result.hosts[sshd_hosts[0].name]
    assert host.status == "ok", host.to_dict()
    killed = host.steps[1]
    # Ansible reports rc -15 (Python's view of the signal); a shell reports 128 + 15.
    assert (killed.status, killed.ignored, killed.rc) == ("failed", True, 143)
    assert (sshd_hosts[0].root / "after").exists()


@pytest.mark.parametrize(
    ("leftover", "rc", "stdout"),
    [
        ("exit 3", 3, ""),
        ("cd /", 0, ""),
        ("export LEFTOVER=1", 0, ""),
        ("set -e", 0, ""),
        ("exec sleep 1", 0, ""),
        ("umask 000", 0, ""),
        ("trap 'echo T' EXIT", 0, "T\n"),  # the step's own exit runs its trap
    ],
)
def test_nothing_a_step_leaves_behind_reaches_the_next(
    tmp_path: Path, sshd_hosts: list[SSHHost], leftover: str, rc: int, stdout: str
) -> None:
    probe = 'echo "$(pwd) ${LEFTOVER:-unset} $(umask)"; false; echo went-on'
    book = {
        "steps": [
            {"shell": {"cmd": probe, "read_only": True}, "register": "before"},
            {"shell": leftover, "ignore_errors": True, "register": "step"},
            {"shell": {"cmd": probe, "read_only": True}, "register": "after"},
        ]
    }
    result = run(one_host(tmp_path, sshd_hosts), book)
    steps = result.hosts[sshd_hosts[0].name].steps
    assert result.hosts[sshd_hosts[0].name].status == "ok"
    assert steps[0].stdout == steps[2].stdout and steps[2].stdout.endswith("went-on\n")
    assert (steps[1].rc, steps[1].stdout) == (rc, stdout)


def test_max_fail_percentage_without_serial_applies_to_the_whole_run(
    inventory_dir: Path, sshd_hosts: list[SSHHost]
) -> None:
    (sshd_hosts[0].root / "broken").touch()
    book = {"max_fail_percentage": 20, "steps": [{"shell": "test ! -e {{ root }}/broken"}]}
    result = run(inventory_dir, book)
    assert result.status == "stopped"
    assert result.stopped == "batch 1: 1 of 4 hosts failed (25% > max_fail_percentage 20%)"
    within = run(inventory_dir, {**book, "max_fail_percentage": 25})
    assert (within.status, within.stopped) == ("failed", None)
