"""Where the command line keeps its API token: `$XDG_CONFIG_HOME/maqsafy-ops/token`
(default `~/.config/maqsafy-ops/token`), mode 0600 in a 0700 folder; `MAQSAFY_TOKEN`, when set,
is used instead (scripts, CI).

The file is written whole to a temporary name created 0600, then renamed, so no other user ever
reads it, not even half-written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

FILE_NAME = "token"


def config_dir(environ: Mapping[str, str]) -> Path:
    """The tool's folder in the user's config directory (XDG base directory rules)."""
    base = environ.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "maqsafy-ops"


def token_path(environ: Mapping[str, str]) -> Path:
    return config_dir(environ) / FILE_NAME


def load(environ: Mapping[str, str]) -> str | None:
    """The token this user logged in with (MAQSAFY_TOKEN first), or None."""
    given = environ.get("MAQSAFY_TOKEN", "").strip()
    if given:
        return given
    try:
        text = token_path(environ).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return text or None


def save(environ: Mapping[str, str], token: str) -> Path:
    """Write `token` (0600) and return the file's path."""
    folder = config_dir(environ)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / FILE_NAME
    temporary = folder / f".{FILE_NAME}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return path


def remove(environ: Mapping[str, str]) -> bool:
    """Delete the token file; whether there was one."""
    try:
        token_path(environ).unlink()
    except FileNotFoundError:
        return False
    return True
