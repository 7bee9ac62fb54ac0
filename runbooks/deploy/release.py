"""Build a release once, on the laptop: `git archive REF`, a runnable `.venv`, one tarball.

The tarball is named after the release, ``<UTC time>-<short sha>`` (sorting by name sorts by
time), and holds the tree at REF plus three things the hosts need:

- ``RELEASE``: the release's name (workers report it as ``MAQSAFY_RELEASE``);
- ``REVISION``: the Alembic head the release's migrations end at (read from its own
  ``migrations/``, no database needed), so a rollback can warn when the database differs;
- ``.venv/``: a virtual environment built here, once, for every host: ``pyvenv.cfg`` and
  ``bin/python`` point at the interpreter, and one ``.pth`` puts the release's own tree first on
  ``sys.path`` and the dependency layer (``deps_site``: the site-packages the app's packages
  are installed in) after it. Hosts only unpack it; nothing is installed or downloaded per host.
  The dependency layer must exist at that path on each host (on loopback hosts it is this
  machine's); a dependency change ships a new layer, a code change does not.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

from runbooks.errors import RunbookError

RELEASE_NAME = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{7,40}$")


class ReleaseError(RunbookError):
    """The release could not be built (unknown ref, not a git repository, no migrations)."""


@dataclass(frozen=True)
class Release:
    """A built release: its name, commit, migration head and the tarball to ship."""

    name: str
    sha: str
    revision: str | None
    tarball: Path

    @property
    def short(self) -> str:
        return self.name.rsplit("-", 1)[1]


def resolve(repo: Path, ref: str) -> str:
    """The full commit sha `ref` names in `repo`; ReleaseError when it names none."""
    if not ref or ref.startswith("-"):
        raise ReleaseError(f"--ref: expected a git ref (branch, tag or commit), got {ref!r}")
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ReleaseError(f"--ref: {ref!r} is not a commit in {repo}")
    return done.stdout.strip()


def release_name(sha: str, now: dt.datetime | None = None) -> str:
    moment = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{moment}-{sha[:7]}"


def deps_site() -> str:
    """This interpreter's site-packages: the dependency layer releases built here point at."""
    return sysconfig.get_paths()["purelib"]


def _python() -> str:
    return os.path.realpath(sys.executable)


def migration_head(tree: Path) -> str | None:
    """The Alembic head of the migrations under `tree` (read from the files, no database)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(tree / "migrations"))
    heads = ScriptDirectory.from_config(config).get_heads()
    return heads[0] if len(heads) == 1 else None


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    tar.addfile(info)


def build(
    repo: Path, ref: str, out_dir: Path, deps: str | None = None, name: str | None = None
) -> Release:
    """Build the release of `ref` from `repo` into `out_dir`/<name>.tar.gz (once per deploy).

    `name` reuses the name hosts already know this commit by, so a repeated deploy is a no-op.
    """
    sha = resolve(repo, ref)
    name = name or release_name(sha)
    out_dir.mkdir(parents=True, exist_ok=True)
    tree = out_dir / f"{name}.tree"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", sha], capture_output=True
    )
    if archive.returncode != 0:
        raise ReleaseError(f"git archive {ref} failed: {archive.stderr.decode()[-200:].strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as source:
        source.extractall(tree, filter="data")
    revision = migration_head(tree) if (tree / "migrations").is_dir() else None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    python = _python()
    cfg = (
        f"home = {os.path.dirname(python)}\ninclude-system-site-packages = false\n"
        f"version = {sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}\n"
    )
    site = f".venv/lib/python{version}/site-packages"
    # Relative lines in a .pth are joined to its folder: ../../../.. is the release's root.
    pth = f"../../../..\n{deps or deps_site()}\n"
    tarball = out_dir / f"{name}.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        tar.add(tree, arcname=".", filter=_owned_by_nobody)
        _add_bytes(tar, "RELEASE", f"{name}\n".encode())
        _add_bytes(tar, "REVISION", f"{revision or ''}\n".encode())
        _add_bytes(tar, ".venv/pyvenv.cfg", cfg.encode())
        _add_link(tar, ".venv/bin/python", python)
        _add_link(tar, ".venv/bin/python3", "python")
        _add_bytes(tar, f"{site}/maqsafy_release.pth", pth.encode())
    _remove_tree(tree)
    return Release(name, sha, revision, tarball)


def _owned_by_nobody(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _remove_tree(tree: Path) -> None:
    import shutil

    shutil.rmtree(tree, ignore_errors=True)
