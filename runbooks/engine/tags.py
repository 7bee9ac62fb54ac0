"""Which steps a run takes, by `--tags`/`--skip-tags`, as Ansible chooses them."""

from __future__ import annotations

from runbooks.engine.book import Book, Step
from runbooks.errors import NotFound


def select_steps(book: Book, tags: frozenset[str], skip_tags: frozenset[str]) -> list[Step]:
    """The steps `--tags`/`--skip-tags` leave, as Ansible chooses them: with no `--tags` every
    step but those tagged `never`; with `--tags` the steps sharing one of them (`all` is every
    step but `never` ones), plus those tagged `always`; a `never` step runs only when one of its
    other tags (or `never`) is asked for. `--skip-tags` removes steps after that, `always` too."""
    chosen = []
    for step in book.steps:
        if not _wanted(step.tags, tags):
            continue
        if step.tags & skip_tags:
            continue
        chosen.append(step)
    if not chosen:
        raise NotFound(
            f"no step of {book.name} is left by --tags/--skip-tags "
            f"(the book's tags: {', '.join(sorted(book.tags)) or 'none'}; "
            "steps tagged never run only when one of their tags is asked for)"
        )
    return chosen


def _wanted(tags: frozenset[str], asked: frozenset[str]) -> bool:
    if "never" in tags:
        return bool(tags & asked)
    if not asked or "all" in asked or "always" in tags:
        return True
    return bool(tags & asked)
