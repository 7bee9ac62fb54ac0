"""Books: the shipped ones validate; malformed ones give file:line:field; serial batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbooks.engine.book import Book, inline_book, load_book
from runbooks.engine.book_files import book_path, list_books
from runbooks.errors import BookError, ExpressionError, NotFound


def test_shipped_books_validate() -> None:
    names = [p.stem for p in list_books()]
    assert {"facts", "ping"} <= set(names)
    for path in list_books():
        book = load_book(path)
        assert book.description and book.steps


@pytest.mark.parametrize(
    ("text", "line", "field", "error"),
    [
        ("steps:\n  - name: a\n    shel: echo\n", 3, "steps[0].shel", BookError),
        ("steps:\n  - shell: echo\n    command: [ls]\n", 2, "steps[0]", BookError),
        ("steps:\n  - shell: {cmd: echo, colour: red}\n", 2, "steps[0].shell.colour", BookError),
        ("steps:\n  - command: {argv: []}\n", 2, "steps[0].command.argv", BookError),
        (
            "steps:\n  - shell: echo\n    when: __import__('os')\n",
            3,
            "steps[0].when",
            ExpressionError,
        ),
        ("steps:\n  - shell: echo\n    retries: many\n", 3, "steps[0].retries", BookError),
        ("steps:\n  - shell: 'echo {{ a b }}'\n", 2, "steps[0].shell", ExpressionError),
        ("serial: 0\nsteps:\n  - shell: echo\n", 1, "serial", BookError),
        ("serial: 150%\nsteps:\n  - shell: echo\n", 1, "serial", BookError),
        ("max_fail_percentage: -1\nsteps:\n  - shell: echo\n", 1, "max_fail_percentage", BookError),
        ("steps: []\n", 1, "steps", BookError),
        ("steps:\n  - file: {path: /x, mode: rwx}\n", 2, "steps[0].file.mode", BookError),
        (
            "steps:\n  - shell: echo\n    rescue:\n      - nope: 1\n",
            4,
            "steps[0].rescue[0].nope",
            BookError,
        ),
        ("hosts: all\nsteps:\n  - shell: echo\nfoo: 1\n", 4, "foo", BookError),
        ("steps:\n  - shell: echo\n   bad: indent\n", 3, "", BookError),
    ],
)
def test_malformed_book_names_file_line_field(
    tmp_path: Path, text: str, line: int, field: str, error: type[Exception]
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(error) as caught:
        load_book(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: {field}"), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("serial", "hosts", "sizes"),
    [
        (None, 5, [5]),
        (2, 5, [2, 2, 1]),
        ("40%", 5, [2, 2, 1]),
        ("10%", 5, [1, 1, 1, 1, 1]),
        ("100%", 3, [3]),
    ],
)
def test_batches(serial: int | str | None, hosts: int, sizes: list[int]) -> None:
    book = Book("b", Path("b.yml"), (), serial=serial)
    names = [f"h{i}" for i in range(hosts)]
    batches = book.batches(names)
    assert [len(b) for b in batches] == sizes
    assert [n for b in batches for n in b] == names


def test_inline_book_uses_the_same_schema() -> None:
    book = inline_book("restart", {"steps": [{"shell": "true", "tags": ["x"]}]})
    assert book.steps[0].action == "shell" and book.tags == {"x"}
    with pytest.raises(BookError):
        inline_book("bad", {"steps": [{"shell": "true", "oops": 1}]})


def test_unknown_book_lists_the_known_ones() -> None:
    with pytest.raises(NotFound, match=r"known: .*facts"):
        book_path("nope")
