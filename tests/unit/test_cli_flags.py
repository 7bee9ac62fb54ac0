"""The command line's flags as Invoke builds them: `-h` is help everywhere."""

from __future__ import annotations

from typing import Any

import tasks
from runbooks.cli import failed, program


def every_task() -> list[tuple[str, Any]]:
    def walk(collection: Any, prefix: str) -> list[tuple[str, Any]]:
        found = [(prefix + name, t) for name, t in collection.tasks.items()]
        for name, sub in collection.collections.items():
            found += walk(sub, f"{prefix}{name}.")
        return found

    return walk(tasks.ns, "")


def test_no_flag_takes_dash_h_and_help_survives_a_second_read() -> None:
    named = every_task()
    assert len(named) > 40
    for name, task in named:
        first = task.get_arguments()
        again = task.get_arguments()
        assert all("h" not in arg.names for arg in first), name
        assert [a.help for a in again] == [a.help for a in first], name
    flags = {a.name: a.names for a in failed.list_failed.get_arguments()}
    assert flags["host"] == ("host", "o")  # was -h


def test_a_parse_error_reads_as_one_line() -> None:
    line = program.parse_error_line
    assert line("No idea what '--x' is!", "failed.list").startswith("failed.list: unknown flag")
    assert line("No idea what 'x' is!", None) == "no task 'x' (invoke --list shows them)"
    assert line("Flag <Argument: max_fail (m)> needed value and was not given one!", "deploy") == (
        "deploy: --max-fail needs a value (invoke --help deploy)"
    )
    assert line(
        "'queue.purge' did not receive required positional arguments: 'queue'", "queue.purge"
    ) == ("queue.purge: give QUEUE (invoke --help queue.purge)")
