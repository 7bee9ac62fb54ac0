"""The tiny safe language of `when` conditions and `{{ }}` templates; nothing is eval'd.

Conditions::

    facts.has_redis_cli and not check
    redis_port == 6379 or env in ["staging", "production"]
    ping.rc != 0
    redis_password is defined

Operands are names (dotted lookups into vars, facts and registered results), strings, numbers,
true/false/null and lists. Operators: ``== != < <= > >= in, not in, is defined, is not defined,
and, or, not`` and parentheses. A template ``{{ name.path }}`` substitutes one looked-up value;
a string that is only one template keeps the value's type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>-?\d+(?:\.\d+)?)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "defined", "true", "false", "null", "none"}
_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*$")


class SyntaxProblem(ValueError):
    """The expression does not parse; the message says where."""


class Undefined(LookupError):
    """A name is not defined in the variables."""


_MISSING = object()


def lookup(variables: Mapping[str, Any], dotted: str) -> Any:
    """Return `a.b.c` from nested mappings (or objects' attributes), or raise Undefined."""
    current: Any = variables
    for part in dotted.split("."):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif isinstance(current, list | tuple) and part.isdigit():
            index = int(part)
            current = current[index] if index < len(current) else _MISSING
        else:
            current = _MISSING
        if current is _MISSING:
            raise Undefined(dotted)
    return current


def _tokens(text: str) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise SyntaxProblem(f"unexpected {text[position:].strip()[:20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "name" and value in _KEYWORDS:
            kind = "kw"
        result.append((kind, value))
        position = match.end()
    return result


@dataclass(frozen=True)
class Condition:
    """A parsed `when` condition; evaluate with :meth:`holds`."""

    source: str
    tree: tuple[Any, ...]

    def holds(self, variables: Mapping[str, Any]) -> bool:
        return bool(_eval(self.tree, variables))


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if value is not None and token[1] != value:
            raise SyntaxProblem(f"expected {value!r}, got {token[1] or 'end'!r}")
        self.at += 1
        return token

    def parse(self) -> tuple[Any, ...]:
        tree = self.disjunction()
        if self.peek()[0] != "end":
            raise SyntaxProblem(f"unexpected {self.peek()[1]!r}")
        return tree

    def disjunction(self) -> tuple[Any, ...]:
        tree = self.conjunction()
        while self.peek() == ("kw", "or"):
            self.take()
            tree = ("or", tree, self.conjunction())
        return tree

    def conjunction(self) -> tuple[Any, ...]:
        tree = self.negation()
        while self.peek() == ("kw", "and"):
            self.take()
            tree = ("and", tree, self.negation())
        return tree

    def negation(self) -> tuple[Any, ...]:
        if self.peek() == ("kw", "not"):
            self.take()
            return ("not", self.negation())
        return self.comparison()

    def comparison(self) -> tuple[Any, ...]:
        left = self.operand()
        kind, value = self.peek()
        if kind == "op" and value in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            return ("cmp", value, left, self.operand())
        if (kind, value) == ("kw", "in"):
            self.take()
            return ("in", left, self.operand())
        if (kind, value) == ("kw", "not") and self.peek(1) == ("kw", "in"):
            self.take()
            self.take()
            return ("not", ("in", left, self.operand()))
        if (kind, value) == ("kw", "is"):
            self.take()
            negate = self.peek() == ("kw", "not")
            if negate:
                self.take()
            self.take("defined")
            if left[0] != "name":
                raise SyntaxProblem("only a name can be tested with `is defined`")
            tree = ("defined", left[1])
            return ("not", tree) if negate else tree
        return left

    def operand(self) -> tuple[Any, ...]:
        kind, value = self.take()
        if kind == "num":
            return ("lit", float(value) if "." in value else int(value))
        if kind == "str":
            return ("lit", re.sub(r"\\(.)", r"\1", value[1:-1]))
        if kind == "name":
            return ("name", value)
        if kind == "kw" and value in ("true", "false", "null", "none"):
            return ("lit", {"true": True, "false": False}.get(value))
        if value == "(":
            tree = self.disjunction()
            self.take(")")
            return tree
        if value == "[":
            items: list[tuple[Any, ...]] = []
            while self.peek()[1] != "]":
                items.append(self.operand())
                if self.peek()[1] == ",":
                    self.take()
                elif self.peek()[1] != "]":
                    raise SyntaxProblem(f"expected ',' or ']', got {self.peek()[1] or 'end'!r}")
            self.take("]")
            return ("list", items)
        raise SyntaxProblem(f"unexpected {value or 'end'!r}")


def parse_condition(text: str) -> Condition:
    """Parse `text`; raise SyntaxProblem saying what is wrong."""
    if not text.strip():
        raise SyntaxProblem("empty condition")
    return Condition(text, _Parser(text).parse())


def _eval(tree: tuple[Any, ...], variables: Mapping[str, Any]) -> Any:
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "name":
        return lookup(variables, tree[1])
    if kind == "list":
        return [_eval(item, variables) for item in tree[1]]
    if kind == "not":
        return not _eval(tree[1], variables)
    if kind == "and":
        return _eval(tree[1], variables) and _eval(tree[2], variables)
    if kind == "or":
        return _eval(tree[1], variables) or _eval(tree[2], variables)
    if kind == "defined":
        try:
            lookup(variables, tree[1])
        except Undefined:
            return False
        return True
    if kind == "in":
        container = _eval(tree[2], variables)
        try:
            return _eval(tree[1], variables) in container
        except TypeError:
            return False
    left, right = _eval(tree[2], variables), _eval(tree[3], variables)
    op = tree[1]
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    try:
        return {
            "<": lambda: left < right,
            "<=": lambda: left <= right,
            ">": lambda: left > right,
            ">=": lambda: left >= right,
        }[op]()
    except TypeError:
        raise Undefined(f"cannot compare {left!r} {op} {right!r}") from None


def check_template(text: str) -> None:
    """Raise SyntaxProblem when a `{{ }}` in `text` is not one dotted name."""
    for match in _TEMPLATE.finditer(text):
        if not _NAME.match(match.group(1)):
            raise SyntaxProblem(
                f"template {match.group(0)!r} must name one variable, like {{{{ a.b }}}}"
            )
    if "{{" in _TEMPLATE.sub("", text):
        raise SyntaxProblem("unclosed '{{' in template")


def render(value: Any, variables: Mapping[str, Any]) -> Any:
    """Substitute `{{ name }}` in every string of `value` (recursively); raise Undefined."""
    if isinstance(value, str):
        whole = _TEMPLATE.fullmatch(value.strip())
        if whole and value.strip() == value:
            return lookup(variables, whole.group(1))
        return _TEMPLATE.sub(lambda m: _text(lookup(variables, m.group(1))), value)
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_templates(value: Any) -> None:
    """check_template over every string inside `value`."""
    if isinstance(value, str):
        check_template(value)
    elif isinstance(value, dict):
        for item in value.values():
            check_templates(item)
    elif isinstance(value, list):
        for item in value:
            check_templates(item)
