"""Actions against this machine's shell session: state in -> change or no-op out; check mode."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runbooks.actions.base import Outcome, StepContext
from runbooks.connectors.targets import LocalTarget
from runbooks.engine.book import inline_book
from runbooks.errors import StepError


@pytest.fixture
def target() -> Iterator[LocalTarget]:
    local = LocalTarget()
    yield local
    local.close()


def act(target: LocalTarget, step: dict[str, Any], check: bool = False) -> Outcome:
    """Validate `step` as a book would, then run its action."""
    parsed = inline_book("t", {"steps": [step]}).steps[0]
    action = parsed.impl  # resolved by the loader from the built-in actions
    assert action is not None and action.name == parsed.action
    ctx = StepContext(target=target, host="local", check=check, vars={}, timeout=10)
    return action.run(ctx, dict(parsed.params))


def test_session_keeps_outputs_exact_and_isolates_steps(target: LocalTarget) -> None:
    first = target.run("printf 'a\\n\\nb'; printf 'e' >&2; cd /; X=1; exit 7")
    assert (first.rc, first.stdout, first.stderr) == (7, "a\n\nb", "e")
    second = target.run('pwd; echo "${X:-unset}"; cat', cwd=str(Path.cwd()))
    assert second.stdout == f"{Path.cwd()}\nunset\n"  # cat reads /dev/null, not the protocol
    assert target.run("if then").rc != 0
    assert target.run("echo $A", env={"A": "it's"}).stdout == "it's\n"


def test_a_step_that_hangs_times_out_and_the_next_one_gets_a_new_session(
    target: LocalTarget,
) -> None:
    with pytest.raises(StepError, match="timed out"):
        target.run("sleep 30", timeout=0.3)
    assert target.run("echo again").stdout == "again\n"


def test_command_quotes_every_argument(target: LocalTarget, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("x")
    outcome = act(target, {"command": ["echo", f"; rm {victim}", "$HOME", "`id`"]})
    assert outcome.status == "changed"
    assert outcome.stdout == f"; rm {victim} $HOME `id`\n"
    assert victim.exists()


@pytest.mark.parametrize(
    ("step", "status", "message"),
    [
        ({"shell": "exit 3"}, "failed", "exit 3"),
        ({"shell": {"cmd": "echo nope", "expect": "PONG"}}, "failed", "expected 'PONG'"),
        ({"shell": {"cmd": "echo PONG", "expect": "PONG", "read_only": True}}, "ok", "PONG"),
        ({"shell": {"cmd": "exit 1", "creates": "/"}}, "ok", "exists"),
        ({"shell": {"cmd": "exit 1", "removes": "/no/such/path"}}, "ok", "does not exist"),
        ({"shell": "true"}, "changed", ""),
    ],
)
def test_shell_outcomes(
    target: LocalTarget, step: dict[str, Any], status: str, message: str
) -> None:
    outcome = act(target, step)
    assert outcome.status == status
    assert message in outcome.message


def test_shell_in_check_mode_runs_nothing_unless_read_only(
    target: LocalTarget, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    outcome = act(target, {"shell": f"touch {marker}"}, check=True)
    assert outcome.status == "skipped" and "would run" in outcome.message
    assert not marker.exists()
    read = act(target, {"shell": {"cmd": "echo PONG", "read_only": True}}, check=True)
    assert read.status == "ok" and read.stdout == "PONG\n"


def test_file_converges_and_second_run_is_a_no_op(target: LocalTarget, tmp_path: Path) -> None:
    path = tmp_path / "conf" / "app.conf"
    directory = {"file": {"path": str(path.parent), "state": "directory", "mode": "0750"}}
    wanted = {"file": {"path": str(path), "content": "x=1\n", "mode": "0640"}}
    assert act(target, directory, check=True).status == "changed"
    assert not path.parent.exists()
    assert act(target, directory).status == "changed"
    assert act(target, directory).status == "ok"
    assert act(target, wanted, check=True).status == "changed"
    assert not path.exists()
    assert act(target, wanted).status == "changed"
    assert path.read_text() == "x=1\n" and (path.stat().st_mode & 0o777) == 0o640
    assert act(target, wanted).status == "ok"
    path.write_text("x=2\n")
    os.chmod(path, 0o600)
    again = act(target, wanted)
    assert again.status == "changed" and path.read_text() == "x=1\n"
    assert (path.stat().st_mode & 0o777) == 0o640
    gone = {"file": {"path": str(path), "state": "absent"}}
    assert act(target, gone, check=True).status == "changed" and path.exists()
    assert act(target, gone).status == "changed" and not path.exists()
    assert act(target, gone).status == "ok"


def test_upload_copies_a_local_file_when_it_differs(target: LocalTarget, tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(bytes(range(256)) * 300)
    dest = tmp_path / "dest.bin"
    step = {"upload": {"src": str(source), "dest": str(dest), "mode": "0600"}}
    assert act(target, step).status == "changed"
    assert dest.read_bytes() == source.read_bytes()
    assert act(target, step).status == "ok"


def test_facts_are_typed(target: LocalTarget) -> None:
    outcome = act(target, {"facts": {}})
    assert outcome.status == "ok" and outcome.facts is not None
    facts = outcome.facts
    assert facts["hostname"] and facts["os"] and isinstance(facts["uptime_seconds"], int)
    assert isinstance(facts["has_redis_cli"], bool) and isinstance(facts["disk_free_bytes"], int)
