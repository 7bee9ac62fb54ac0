"""`when` conditions and `{{ }}` in step parameters, on the sandboxed Jinja2 of
:mod:`runbooks.engine.templating`; nothing is evaluated as Python.

Conditions are Jinja expressions, as in Ansible::

    facts.has_redis_cli and not check
    redis_port == 6379 or env in ["staging", "production"]
    ping.rc != 0
    redis_password is defined
    (disk_free | int) > 1024 and inventory_hostname in groups.workers

A parameter string may hold templates (``"redis://{{ host }}:{{ port | default(6379) }}"``);
one that is a single ``{{ expression }}`` keeps the value's type. Syntax is checked when the
book is loaded; an undefined name fails the step (the executor says file:line:field).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runbooks.engine.templating import (
    SyntaxProblem,
    TemplateProblem,
    Undefined,
    check,
    check_condition,
    render_text,
    truth,
)

__all__ = [
    "Condition",
    "SyntaxProblem",
    "TemplateProblem",
    "Undefined",
    "check_templates",
    "parse_condition",
    "render",
]


@dataclass(frozen=True)
class Condition:
    """A parsed `when` condition; evaluate with :meth:`holds`."""

    source: str

    def holds(self, variables: Mapping[str, Any]) -> bool:
        return truth(self.source, variables)


def parse_condition(text: str) -> Condition:
    """Check `text` parses as one expression; raise SyntaxProblem saying what is wrong."""
    check_condition(text)
    return Condition(text)


def render(value: Any, variables: Mapping[str, Any]) -> Any:
    """Render every string inside `value` (recursively); raise TemplateProblem/Undefined."""
    if isinstance(value, str):
        return render_text(value, variables)
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    return value


def check_templates(value: Any) -> None:
    """Raise SyntaxProblem when a string inside `value` is not a valid template."""
    if isinstance(value, str):
        check(value)
    elif isinstance(value, dict):
        for item in value.values():
            check_templates(item)
    elif isinstance(value, list):
        for item in value:
            check_templates(item)
