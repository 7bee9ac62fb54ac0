"""The executor on local hosts (no SSH): when, tags, retries, rescue, register, serial, stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runbooks.engine.book import inline_book
from runbooks.engine.executor import Executor, RunOptions
from runbooks.engine.inventory import load_inventory
from runbooks.engine.results import RunResult
from runbooks.errors import NotFound


def local_inventory(tmp_path: Path, count: int, failing: tuple[int, ...] = ()) -> Path:
    hosts = {}
    for index in range(count):
        root = tmp_path / f"h{index}"
        root.mkdir(parents=True)
        hosts[f"h{index}"] = {
            "connection": "local",
            "groups": ["odd" if index % 2 else "even"],
            "vars": {"root": str(root), "broken": index in failing},
        }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump({"environment": "test", "hosts": hosts}))
    return path


def run(
    tmp_path: Path,
    document: dict[str, Any],
    count: int = 3,
    failing: tuple[int, ...] = (),
    **opts: Any,
) -> RunResult:
    inventory = load_inventory(local_inventory(tmp_path, count, failing), {})
    book = inline_book("t", document)
    return Executor(book, inventory, RunOptions(**opts)).run()


def statuses(result: RunResult, host: str) -> list[str]:
    return [s.status for s in result.hosts[host].steps]


def test_when_register_and_facts(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        {
            "steps": [
                {"facts": {}},
                {
                    "shell": {"cmd": "echo {{ inventory_hostname }}", "read_only": True},
                    "register": "me",
                },
                {"shell": "touch {{ root }}/even", "when": "me.stdout in ['h0', 'h2']"},
                {"shell": "touch {{ root }}/facts", "when": "facts.hostname is defined"},
            ]
        },
    )
    assert result.ok
    assert statuses(result, "h1") == ["ok", "ok", "skipped", "changed"]
    assert (tmp_path / "h0" / "even").exists() and not (tmp_path / "h1" / "even").exists()
    assert all((tmp_path / f"h{i}" / "facts").exists() for i in range(3))


def test_tags_and_skip_tags(tmp_path: Path) -> None:
    doc = {
        "steps": [
            {"name": "a", "shell": "true", "tags": ["deploy"]},
            {"name": "b", "shell": "true", "tags": ["always"]},
            {"name": "c", "shell": "true"},
        ]
    }
    only = run(tmp_path / "1", doc, 1, tags=frozenset({"deploy"}))
    assert [s.step for s in only.hosts["h0"].steps] == ["a", "b"]
    skipped = run(tmp_path / "2", doc, 1, skip_tags=frozenset({"deploy"}))
    assert [s.step for s in skipped.hosts["h0"].steps] == ["b", "c"]
    with pytest.raises(NotFound, match="no step"):
        run(tmp_path / "3", doc, 1, tags=frozenset({"nope"}), skip_tags=frozenset({"always"}))


def test_retries_until_success(tmp_path: Path) -> None:
    # Each attempt appends a line; the third attempt finds two and succeeds.
    cmd = "echo x >> {{ root }}/n; [ $(wc -l < {{ root }}/n) -ge 3 ]"
    result = run(tmp_path, {"steps": [{"shell": cmd, "retries": 5, "delay": 0}]}, 1)
    step = result.hosts["h0"].steps[0]
    assert (step.status, step.attempts) == ("changed", 3)


def test_rescue_and_ignore_errors(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        {
            "steps": [
                {"name": "fails", "shell": "exit 1", "rescue": [{"shell": "touch {{ root }}/r"}]},
                {"name": "ignored", "shell": "exit 2", "ignore_errors": True},
                {"name": "last", "shell": "true"},
            ]
        },
        1,
    )
    host = result.hosts["h0"]
    assert host.status == "ok" and (tmp_path / "h0" / "r").exists()
    # Ansible's counting: the rescue step and `last` are ok and changed, the ignored failure
    # ok and ignored, the rescued failure only rescued.
    assert host.counts() == {
        "ok": 3,
        "changed": 2,
        "skipped": 0,
        "failed": 0,
        "unreachable": 0,
        "rescued": 1,
        "ignored": 1,
    }
    unrescued = run(
        tmp_path / "again",
        {"steps": [{"shell": "exit 1", "rescue": [{"shell": "exit 1"}]}, {"shell": "true"}]},
        1,
    )
    assert unrescued.hosts["h0"].status == "failed"
    assert len(unrescued.hosts["h0"].steps) == 2  # the step and its rescue; nothing after


def test_undefined_variable_fails_the_step_not_the_run(tmp_path: Path) -> None:
    result = run(tmp_path, {"steps": [{"shell": "echo {{ nope }}"}]}, 2)
    assert [h.status for h in result.hosts.values()] == ["failed", "failed"]
    # located at the book's file:line:field (an inline book's file is <name>)
    assert "<t>:3: steps[0].shell.cmd: 'nope' is undefined" in result.hosts["h0"].message


def test_serial_and_max_fail_percentage_stop_after_the_failing_batch(tmp_path: Path) -> None:
    doc = {
        "serial": 2,
        "max_fail_percentage": 0,
        "steps": [{"shell": "test {{ broken }} = false && touch {{ root }}/ran"}],
    }
    result = run(tmp_path, doc, 6, failing=(3,))
    assert [result.hosts[f"h{i}"].status for i in range(6)] == [
        "ok",
        "ok",
        "ok",
        "failed",
        "not_run",
        "not_run",
    ]
    assert result.stopped and "batch 2" in result.stopped
    assert not (tmp_path / "h4" / "ran").exists()


def test_max_fail_percentage_tolerates_failures_up_to_the_limit(tmp_path: Path) -> None:
    doc = {
        "serial": "50%",
        "max_fail_percentage": 50,
        "steps": [{"shell": "test {{ broken }} = false"}],
    }
    result = run(tmp_path, doc, 4, failing=(0,))
    assert result.stopped is None
    assert [h.status for h in result.hosts.values()] == ["failed", "ok", "ok", "ok"]


def test_without_a_limit_a_batch_where_every_host_failed_stops(tmp_path: Path) -> None:
    doc = {"serial": 1, "steps": [{"shell": "test {{ broken }} = false"}]}
    result = run(tmp_path, doc, 3, failing=(1,))
    assert [h.status for h in result.hosts.values()] == ["ok", "failed", "not_run"]


def test_limit_and_group_pattern(tmp_path: Path) -> None:
    result = run(tmp_path, {"hosts": "even", "steps": [{"shell": "true"}]}, 5, limit="h0,h1,h4")
    assert list(result.hosts) == ["h0", "h4"]
    with pytest.raises(NotFound, match="no host"):
        run(tmp_path / "none", {"hosts": "even", "steps": [{"shell": "true"}]}, 3, limit="h1")
