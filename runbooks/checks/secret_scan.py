"""Find real-looking secrets in the repository, inventories and docs (the page: placeholders only).

A value counts as a placeholder when it is a reference or obviously fake: ``${VAR}``,
``<redis-password>``, ``null``, ``changeme``, a mask of stars, an empty value. Everything else
that sits where a secret goes (a password in a URL, ``REDIS_PASSWORD=...``, ``password: ...``,
``requirepass ...`` where Redis reads it: a redis.conf line, ``--requirepass``, ``CONFIG SET``;
not prose such as "no requirepass (its default user ...)") or looks like a key (``AKIA...``, a
PEM private key) is reported with its file and line, the value itself masked. Python files
count a quoted literal assigned to such a name (``PASSWORD = "..."``, ``"token": "..."``). In
``tests/``, whose passwords are throwaway values for servers the tests start and stop, only
keys and high-entropy values (a real credential pasted into a test) count.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "var", "__pycache__", ".mypy_cache"}
TEST_DIRS = {"tests"}
TEXT_SUFFIXES = {
    ".md", ".txt", ".rst", ".yml", ".yaml", ".ini", ".toml", ".cfg", ".conf", ".json",
    ".env", ".example", ".sh", ".py",
}  # fmt: skip
TEXT_NAMES = {"Dockerfile", "Makefile", ".env", "docker-compose.yml", "alembic.ini"}
PLACEHOLDERS = {
    "", "null", "none", "nil", "changeme", "change-me", "change_me", "example", "placeholder",
    "redacted", "secret", "password", "xxx", "xxxx", "...", "true", "false", "dummy", "todo",
}  # fmt: skip

URL_SECRET = re.compile(
    r"\b(?:rediss?|postgres(?:ql)?(?:\+\w+)?|amqps?|mysql)://[^:/\s@'\"]*:([^@\s'\"]+)@"
)
ASSIGNMENT = re.compile(
    r"(?i)\b[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY)[A-Z0-9_]*\s*[=:]\s*(['\"]?)([^\s'\"#`,;|)\]]*)\1"
)
# Where requirepass takes a value: a redis.conf line, `--requirepass V`, `CONFIG SET requirepass V`;
# prose ("Redis has no requirepass (its default user ...)") holds none.
REQUIREPASS = re.compile(r"(?i)(?:^\s*|`|--|\bconfig\s+set\s+)requirepass\s+(['\"]?)([^\s'\"`]+)\1")
# A whole quoted literal assigned to a secret's name in Python (PASSWORD = "<value>" or
# "token": "<value>"; not a prefix that code completes, as in "tok_" + secrets.token_hex()).
PY_ASSIGNMENT = re.compile(
    r"(?i)\b[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|SIGNING_KEY)[A-Z0-9_]*['\"]?"
    r"\s*(?::\s*[\w\[\], |]+\s*)?[=:]\s*(['\"])([^'\"]*)\1(?=\s*(?:[,)}\]#]|$))"
)
REFERENCE = re.compile(r"\$\{[^}]*\}")
AWS_KEY = re.compile(r"\bAKIA[0-9A-Z]{16}\b")
PRIVATE_KEY = re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----")


@dataclass(frozen=True)
class Leak:
    """A real-looking secret: where it is and what kind; the value is never kept."""

    path: str
    line: int
    kind: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_placeholder(value: str) -> bool:
    """True for references (${VAR}, $VAR, {var}), <placeholders>, masks and obvious fakes."""
    text = value.strip().strip("'\"")
    lowered = text.lower()
    return (
        lowered in PLACEHOLDERS
        or text.startswith(("$", "<", "{", "%(", "*"))
        or set(text) <= {"*", "x", "X", "."}
        or lowered.startswith(("your", "example", "<"))
        or re.fullmatch(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+", text) is not None  # names a variable
    )


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    counts = [value.count(c) for c in set(value)]
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts)


def high_entropy(value: str) -> bool:
    """A value that looks generated (a key or token), not a made-up throwaway word."""
    return len(value) >= 20 and entropy(value) >= 4.0


def scan_text(path: str, text: str) -> list[Leak]:
    """Leaks in one file's text (see the module docstring for what counts where)."""
    leaks: list[Leak] = []
    python = path.endswith(".py")
    in_tests = bool(TEST_DIRS.intersection(Path(path).parts[:-1]))
    assignments = (
        ((PY_ASSIGNMENT, "secret value"),)
        if python
        else ((ASSIGNMENT, "secret value"), (REQUIREPASS, "requirepass value"))
    )

    def real(value: str) -> bool:
        return not is_placeholder(value) and (not in_tests or high_entropy(value))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = REFERENCE.sub("${}", raw)  # ${VAR:?message} holds no secret, whatever it says
        for match in URL_SECRET.finditer(line):
            if real(match.group(1)):
                leaks.append(Leak(path, number, "password in a URL"))
        if AWS_KEY.search(line):
            leaks.append(Leak(path, number, "AWS access key id"))
        if PRIVATE_KEY.search(line):
            leaks.append(Leak(path, number, "private key"))
        for pattern, kind in assignments:
            for match in pattern.finditer(line):
                value = match.group(2)
                if real(value) and not URL_SECRET.search(value):
                    leaks.append(Leak(path, number, kind))
    return leaks


def candidate_files(root: Path) -> list[Path]:
    """The repository's files (tracked and untracked, not ignored) that hold text worth scanning."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
        paths = [root / p for p in listed.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in root.rglob("*") if p.is_file()]
    return sorted(
        p
        for p in paths
        if p.is_file()
        and not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])
        and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES or p.name.startswith(".env"))
    )


def scan(root: Path, files: Iterable[Path] | None = None) -> list[Leak]:
    """Scan `files` (default: the repository under `root`) for real-looking secrets."""
    leaks: list[Leak] = []
    for path in files if files is not None else candidate_files(root):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        shown = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        leaks.extend(scan_text(shown, text))
    return leaks
