"""The `when` language and templates: table-driven, and nothing reaches Python's eval."""

from __future__ import annotations

import pytest

from runbooks.engine.expressions import SyntaxProblem, Undefined, parse_condition, render

VARS = {
    "env": "staging",
    "port": 6379,
    "facts": {"has_redis_cli": True, "os": "Debian", "disk": 10},
    "ping": {"rc": 0, "stdout": "PONG"},
    "empty": "",
    "hosts": ["a", "b"],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("facts.has_redis_cli", True),
        ("not facts.has_redis_cli", False),
        ("port == 6379", True),
        ("port != 6379 or env == 'staging'", True),
        ("port > 100 and facts.disk <= 10", True),
        ('env in ["staging", "production"]', True),
        ("env not in ['production']", True),
        ("'a' in hosts", True),
        ("ping.rc == 0 and ping.stdout == 'PONG'", True),
        ("missing is defined", False),
        ("missing is not defined", True),
        ("facts.os is defined", True),
        ("(port == 1 or port == 6379) and not empty", True),
        ("hosts.1 == 'b'", True),
        ("null == null", True),
        ("port >= 7000", False),
    ],
)
def test_conditions(text: str, expected: bool) -> None:
    assert parse_condition(text).holds(VARS) is expected


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('id')",
        "port ==",
        "(port == 1",
        "env in [1 2]",
        "a is nothing",
        "1 is defined",
        "port; rm -rf /",
        "",
    ],
)
def test_malformed_conditions_are_refused(text: str) -> None:
    with pytest.raises(SyntaxProblem):
        parse_condition(text)


def test_undefined_name_raises() -> None:
    with pytest.raises(Undefined):
        parse_condition("nope == 1").holds(VARS)


def test_render_keeps_the_type_of_a_whole_template_and_substitutes_inside_text() -> None:
    assert render("{{ port }}", VARS) == 6379
    assert render("redis://h:{{ port }}/0", VARS) == "redis://h:6379/0"
    assert render({"a": ["{{ facts.os }}", 1]}, VARS) == {"a": ["Debian", 1]}
    with pytest.raises(Undefined):
        render("{{ nope }}", VARS)
