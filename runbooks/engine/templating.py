"""Jinja2 for runbooks: `when` conditions, `{{ }}` in step parameters and `template` files.

Everything renders on one :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no Python
internals, no mutating a list or dict of the variables) whose undefined values are strict: an
undefined name is an error wherever it is used (printed, compared, tested for truth), except
under ``is defined`` / ``default(...)``, and ``a.b.c is defined`` is false when ``a`` is missing
(as in Ansible). Names and attributes beginning with ``__`` are refused when a book is loaded.

Rendering follows Ansible where a book would notice: a string that is one ``{{ expression }}``
keeps the value's type (``"{{ port }}"`` is the number 6379); inside text ``none`` renders as
nothing; templates keep their trailing newline; template files trim the newline after a block
tag (``trim_blocks``, Ansible's default). One difference on purpose: booleans render as
``true``/``false`` inside text (shell- and YAML-friendly), where Ansible writes ``True``.

Filters beyond Jinja's own (``default``/``d``, ``int``, ``join``, ``lower``, ``upper``,
``replace``, ``trim``, ``length``, ...): Ansible's ``bool``, ``ternary``, ``mandatory``,
``regex_replace``, ``regex_search``, ``regex_findall``, ``to_json``, ``to_nice_json``,
``from_json``, ``to_yaml``, ``b64encode``, ``b64decode``, ``quote``, ``basename``, ``dirname``.
"""

from __future__ import annotations

import base64
import functools
import json
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError


class SyntaxProblem(ValueError):
    """A template or condition does not parse; the message says what and where."""


class TemplateProblem(ValueError):
    """Rendering failed: an undefined name, a filter given the wrong type, a refused access."""


class Undefined(TemplateProblem, LookupError):
    """A name used by a template or condition is not defined."""


class _StrictUndefined(jinja2.ChainableUndefined, jinja2.StrictUndefined):
    """Strict everywhere but attribute chains, so `a.b is defined` is false for a missing a."""

    __slots__ = ()


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


# -- Ansible's filters ----------------------------------------------------------------------


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "1", "true", "y", "t")
    return bool(value) if isinstance(value, int | float | bool) else False


def _ternary(value: Any, true_value: Any, false_value: Any, none_value: Any = None) -> Any:
    if value is None and none_value is not None:
        return none_value
    return true_value if value else false_value


def _mandatory(value: Any, msg: str | None = None) -> Any:
    if isinstance(value, jinja2.Undefined):
        raise jinja2.UndefinedError(msg or "a mandatory variable is undefined")
    return value


def _flags(ignorecase: bool, multiline: bool) -> int:
    return (re.IGNORECASE if ignorecase else 0) | (re.MULTILINE if multiline else 0)


def _regex_replace(
    value: Any,
    pattern: str,
    replacement: str = "",
    ignorecase: bool = False,
    multiline: bool = False,
    count: int = 0,
) -> str:
    flags = _flags(ignorecase, multiline)
    return re.sub(pattern, replacement, str(value), count=count, flags=flags)


def _regex_search(
    value: Any, pattern: str, ignorecase: bool = False, multiline: bool = False
) -> str | None:
    match = re.search(pattern, str(value), flags=_flags(ignorecase, multiline))
    return match.group(0) if match else None


def _regex_findall(
    value: Any, pattern: str, ignorecase: bool = False, multiline: bool = False
) -> list[Any]:
    return re.findall(pattern, str(value), flags=_flags(ignorecase, multiline))


def _to_json(value: Any, **options: Any) -> str:
    return json.dumps(value, default=str, **options)


def _to_nice_json(value: Any, indent: int = 4) -> str:
    return json.dumps(value, default=str, indent=indent, sort_keys=True)


def _to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False)


FILTERS: dict[str, Callable[..., Any]] = {
    "bool": _bool,
    "ternary": _ternary,
    "mandatory": _mandatory,
    "regex_replace": _regex_replace,
    "regex_search": _regex_search,
    "regex_findall": _regex_findall,
    "to_json": _to_json,
    "to_nice_json": _to_nice_json,
    "from_json": json.loads,
    "to_yaml": _to_yaml,
    "b64encode": lambda v: base64.b64encode(str(v).encode()).decode(),
    "b64decode": lambda v: base64.b64decode(str(v)).decode(),
    "quote": lambda v: shlex.quote(str(v)),
    "basename": lambda v: posixpath.basename(str(v)),
    "dirname": lambda v: posixpath.dirname(str(v)),
}


def _environment(**options: Any) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=_StrictUndefined,
        keep_trailing_newline=True,
        finalize=_finalize,
        autoescape=False,
        **options,
    )
    env.filters.update(FILTERS)
    env.globals["null"] = None  # the `when` language always knew `null`
    return env


ENV = _environment()
_WHOLE = re.compile(r"\{\{((?:(?!\{\{|\}\}).)*)\}\}", re.DOTALL)


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _refuse_internals(tree: nodes.Node) -> None:
    for node in tree.find_all((nodes.Name, nodes.Getattr)):
        name = node.name if isinstance(node, nodes.Name) else getattr(node, "attr", "")
        if str(name).startswith("__"):
            raise SyntaxProblem(f"{name!r}: names beginning with __ are refused (sandbox)")


def _syntax(exc: jinja2.TemplateSyntaxError, prefix: str = "") -> SyntaxProblem:
    where = f"line {exc.lineno}: " if prefix == "file" and exc.lineno else ""
    return SyntaxProblem(f"{where}{exc.message}")


@functools.lru_cache(maxsize=4096)
def _expression(source: str) -> Any:
    try:
        _refuse_internals(ENV.parse(f"{{{{ ({source}) }}}}"))
        return ENV.compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax(exc) from None


@functools.lru_cache(maxsize=4096)
def _template(source: str) -> jinja2.Template:
    try:
        _refuse_internals(ENV.parse(source))
        return ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax(exc) from None


def _problem(exc: Exception) -> TemplateProblem:
    if isinstance(exc, jinja2.UndefinedError):
        return Undefined(exc.message or "undefined")
    if isinstance(exc, SecurityError):
        return TemplateProblem(f"refused by the sandbox: {exc}")
    return TemplateProblem(f"{type(exc).__name__}: {exc}")


def evaluate(source: str, variables: Mapping[str, Any]) -> Any:
    """The value of the Jinja expression `source`; raise TemplateProblem (Undefined too)."""
    compiled = _expression(source)
    try:
        value = compiled(variables)
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
    except Exception as exc:
        raise _problem(exc) from None
    return value


def truth(source: str, variables: Mapping[str, Any]) -> bool:
    value = evaluate(source, variables)
    try:
        return bool(value)
    except Exception as exc:
        raise _problem(exc) from None


def check_condition(source: str) -> None:
    """Raise SyntaxProblem unless `source` is one expression (no `{{ }}` around it)."""
    if not source.strip():
        raise SyntaxProblem("empty condition")
    if is_template(source):
        raise SyntaxProblem("a condition is an expression: write `x == 1`, not `{{ x == 1 }}`")
    _expression(source)


def check(text: str) -> None:
    """Raise SyntaxProblem when the template `text` does not parse."""
    if is_template(text):
        whole = _WHOLE.fullmatch(text)
        if whole:
            _expression(whole.group(1))
        else:
            _template(text)


def render_text(text: str, variables: Mapping[str, Any]) -> Any:
    """`text` rendered; a string that is one `{{ expression }}` keeps the value's type."""
    if not is_template(text):
        return text
    whole = _WHOLE.fullmatch(text)
    if whole:
        return evaluate(whole.group(1), variables)
    template = _template(text)
    try:
        return template.render(variables)
    except Exception as exc:
        raise _problem(exc) from None


# -- template files -------------------------------------------------------------------------

_FILES = ENV.overlay(trim_blocks=True)


def check_file(path: Path) -> jinja2.Template:
    """The template file `path` read and compiled; TemplateProblem names the file and line."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise TemplateProblem(f"cannot read template {path}: {why}") from None
    try:
        _refuse_internals(_FILES.parse(source))
        return _FILES.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"{path}:{exc.lineno}: {exc.message}") from None
    except SyntaxProblem as exc:
        raise TemplateProblem(f"{path}: {exc}") from None


def render_file(path: Path, variables: Mapping[str, Any]) -> str:
    """Render the template file `path`; errors name the file and the line."""
    template = check_file(path)
    try:
        return template.render(variables)
    except Exception as exc:
        problem = _problem(exc)
        line = _template_line(exc)
        raise type(problem)(f"{path}{f':{line}' if line else ''}: {problem}") from None


def _template_line(exc: BaseException) -> int | None:
    """The template line Jinja's rewritten traceback points at (its frames say <template>)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
