"""Where books live: the shipped ones under runbooks/books, or a .yml path an operator names."""

from __future__ import annotations

import re
from pathlib import Path

from celery_app.inputs import shown
from celery_app.settings import PROJECT_ROOT
from runbooks.errors import NotFound

BOOKS_DIR = PROJECT_ROOT / "runbooks" / "books"


def book_path(name: str, directory: Path | None = None) -> Path:
    """The file of book `name` (a name under runbooks/books, or a path to a .yml file)."""
    candidate = Path(name)
    if candidate.suffix in (".yml", ".yaml") and _is_file(candidate):
        return candidate
    directory = directory or BOOKS_DIR
    for suffix in (".yml", ".yaml"):
        path = directory / f"{name}{suffix}"
        if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) and _is_file(path):
            return path
    known = ", ".join(p.stem for p in list_books(directory)) or "none"
    raise NotFound(f"no runbook {shown(name)} (known: {known}; `invoke runbooks` lists them)")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system is no book
        return False


def list_books(directory: Path | None = None) -> list[Path]:
    directory = directory or BOOKS_DIR
    return sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
