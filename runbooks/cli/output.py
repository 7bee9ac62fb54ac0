"""How a command's value is printed: one JSON document for scripts, or lines for people."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print `data` as one JSON document for scripts, or through `render` for people."""
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        render(data)


def print_fields(data: Mapping[str, Any]) -> None:
    """`key: value`, one line each."""
    print("\n".join(f"{k}: {v}" for k, v in data.items()))
