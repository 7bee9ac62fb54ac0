"""Load YAML safely with line numbers, and read typed fields that fail with file:line:field.

`load_yaml` uses a :class:`yaml.SafeLoader` subclass whose mappings remember the line of each
key, so a validator can say *where* a value is wrong. :class:`Fields` is that validator's
toolkit: typed getters over one mapping that raise the caller's :class:`LocatedError` subclass.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from runbooks.errors import LocatedError


class MarkedDict(dict[Any, Any]):
    """A YAML mapping that remembers its own line and each key's line (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class MarkedList(list[Any]):
    """A YAML sequence that remembers its own line and each item's line (1-based)."""

    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> MarkedDict:
    loader.flatten_mapping(node)
    result = MarkedDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | float | bool) or key is None:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain string", key_node.start_mark
            )
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> MarkedList:
    result = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(path: Path, error: type[LocatedError], text: str | None = None) -> MarkedDict:
    """Parse `path` (or `text`) as one YAML mapping; raise `error` naming file and line."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise error(path, None, "", "file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise error(path, None, "", f"cannot read: {exc}") from None
    try:
        document = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise error(path, line, "", f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise error(path, None, "", f"not valid YAML: {exc}") from None
    if not isinstance(document, MarkedDict):
        raise error(path, 1, "", "expected a mapping at the top of the file")
    return document


class Fields:
    """Typed reads of one mapping; every failure names file, line and dotted field."""

    def __init__(
        self, path: Path | str, data: Any, error: type[LocatedError], prefix: str = ""
    ) -> None:
        self.path = path
        self.error = error
        self.prefix = prefix
        if not isinstance(data, dict):
            raise error(path, getattr(data, "line", None), prefix or "", "expected a mapping")
        self.data: dict[Any, Any] = data

    @property
    def line(self) -> int | None:
        return getattr(self.data, "line", None)

    def line_of(self, key: Any) -> int | None:
        lines = getattr(self.data, "key_lines", None) or {}
        return lines.get(key, self.line)

    def field(self, key: Any) -> str:
        return f"{self.prefix}.{key}" if self.prefix else str(key)

    def fail(self, key: Any, problem: str) -> LocatedError:
        """Return (for `raise`) the error for `key`."""
        return self.error(self.path, self.line_of(key), self.field(key), problem)

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(key, f"unknown key; expected one of: {', '.join(allowed)}")

    def has(self, key: str) -> bool:
        return key in self.data

    def names(self) -> Iterator[Any]:
        return iter(self.data)

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def text(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.error(self.path, self.line, self.field(key), "required")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(key, f"expected a string, got {type(value).__name__}")
        return str(value)

    def required(self, key: str) -> str:
        value = self.text(key, required=True)
        assert value is not None
        if not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def integer(
        self, key: str, default: int | None = None, low: int = 0, high: int = 10**9
    ) -> int | None:
        if key not in self.data or self.data[key] is None:
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected a whole number from {low} to {high}, got {value!r}")
        if not low <= value <= high:
            raise self.fail(key, f"expected a whole number from {low} to {high}, got {value}")
        return value

    def number(self, key: str, default: float, low: float = 0, high: float = 86_400) -> float:
        if key not in self.data or self.data[key] is None:
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number from {low} to {high}, got {value!r}")
        if not low <= value <= high:
            raise self.fail(key, f"expected a number from {low} to {high}, got {value}")
        return float(value)

    def flag(self, key: str, default: bool = False) -> bool:
        if key not in self.data or self.data[key] is None:
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def str_list(self, key: str) -> list[str]:
        """A list of strings; a single string or a comma-separated one is accepted too."""
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in value
        ):
            raise self.fail(key, "expected a list of strings")
        return [str(v) for v in value]

    def mapping(self, key: str) -> Fields:
        value = self.data.get(key)
        if value is None:
            value = MarkedDict()
            value.line = self.line_of(key) or 0
            value.key_lines = {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return Fields(self.path, value, self.error, self.field(key))

    def items(self, key: str) -> list[tuple[int | None, Any]]:
        """The items of a list field with their lines."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        lines = getattr(value, "item_lines", None) or [self.line_of(key)] * len(value)
        return list(zip(lines, value, strict=True))


APPROVAL_VALUES = ("required", "none")


def approval_required(top: Fields) -> bool:
    """`approval: required` (or `none`, the default) at the top of a book or an inventory."""
    value = top.raw("approval")
    if value is None:
        return False
    if value not in APPROVAL_VALUES:
        raise top.fail("approval", f"expected {' or '.join(APPROVAL_VALUES)}, got {value!r}")
    return bool(value == "required")
