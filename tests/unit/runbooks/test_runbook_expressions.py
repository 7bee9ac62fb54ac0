"""`when` conditions and templates (sandboxed Jinja2): table-driven, nothing reaches Python."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbooks.engine.expressions import (
    SyntaxProblem,
    TemplateProblem,
    Undefined,
    check_templates,
    parse_condition,
    render,
)
from runbooks.engine.templating import render_file

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
        ("missing.deeper is defined", False),
        ("missing | default(0) == 0", True),
        ("(facts.disk | int) > 5 and env | upper == 'STAGING'", True),
        ("'yes' | bool and not ('off' | bool)", True),
        ("hosts | join(',') == 'a,b'", True),
        # Jinja accepts a test on any value (the old language refused it): a literal is defined
        ("1 is defined", True),
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
        "port | nosuchfilter",
        "port; rm -rf /",
        "{{ port == 1 }}",
        "().__class__",
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


def test_filters_and_names_in_text() -> None:
    variables = {**VARS, "path": "/srv/app/releases/2026", "pw": "a b'c"}
    assert render("{{ path | basename }}", variables) == "2026"
    assert render("{{ env | regex_replace('^st', 'ST') }}", variables) == "STaging"
    assert render("{{ hosts | to_json }}", variables) == '["a", "b"]'
    assert render("{{ 'x' | b64encode }}", variables) == "eA=="
    assert render("echo {{ pw | quote }}", variables) == "echo 'a b'\"'\"'c'"
    assert render("{{ nope | default('d') }}-{{ port + 1 }}", variables) == "d-6380"
    assert render("{% for h in hosts %}{{ h }};{% endfor %}", variables) == "a;b;"
    assert render("on={{ facts.has_redis_cli }} none={{ null }}", variables) == "on=true none="


def test_undefined_and_refused_access_fail_at_render() -> None:
    with pytest.raises(Undefined, match="nope"):
        render("x {{ nope }}", VARS)
    with pytest.raises(Undefined, match="nope"):
        render("{{ facts.nope }}", VARS)
    with pytest.raises(TemplateProblem):
        render("{{ hosts.append(1) }}", VARS)  # the immutable sandbox: no mutating the vars
    with pytest.raises(SyntaxProblem):
        check_templates({"a": ["{{ port | nosuchfilter }}"]})
    with pytest.raises(SyntaxProblem):
        check_templates("{{ ''.__class__ }}")


def test_a_template_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "app.conf.j2"
    path.write_text(
        "port={{ port }}\n{% if env == 'staging' %}\nstaging\n{% endif %}\nx={{ nope }}\n"
    )
    with pytest.raises(Undefined, match=r"app.conf.j2:5: .*nope"):
        render_file(path, VARS)
    path.write_text("port={{ port }}\n{% if true %}\nyes\n{% endif %}\n")
    assert render_file(path, VARS) == "port=6379\nyes\n"
    path.write_text("a\n{{ port ==  }}\n")
    with pytest.raises(TemplateProblem, match=r"app.conf.j2:2: "):
        render_file(path, VARS)
