"""Build a release once, on the laptop: `git archive REF`, a runnable `.venv`, one tarball.

The tarball is named after the release, ``<UTC time>-<short sha>`` (sorting by name sorts by
time), and holds the tree at REF plus three things the hosts need:

- ``RELEASE``: the release's name (workers report it as ``MAQSAFY_RELEASE``);
- ``REVISION``: the Alembic head the release's migrations end at (read from its own
  ``migrations/``, no database needed), so a rollback can warn when the database differs;
- ``DEPS``: the name of the dependency layer the release runs on;
- ``MANIFEST``: the sha256 of every file shipped, checked on the host before it is used;
- ``.venv/``: a virtual environment built here, once, for every host: ``pyvenv.cfg`` and
  ``bin/python`` point at the interpreter (the same path and version on every host: preflight
  checks it). Unpacking writes one ``.pth`` that puts the release's own tree first on
  ``sys.path`` and the host's copy of the dependency layer, ``<app_dir>/deps/<layer>``, after it.
  Hosts only unpack; nothing is installed or downloaded per host.

The dependency layer is its own content-addressed tarball, ``deps-<hash>.tar.gz``: the
site-packages files of the distributions the app needs (its requirements and theirs, never the
dev tools nor the project itself), the hash taken over the interpreter, the platform and each
distribution's RECORD. It is built once on the laptop (and cached there by its hash) and
uploaded only to hosts that lack it; a dependency change ships a new layer, a code change does
not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata as metadata
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from celery_app.inputs import shown
from runbooks.errors import RunbookError

MANIFEST = "MANIFEST"  # sha256sum's format: "<hex>  ./path" per shipped file
RELEASE_NAME = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{7,40}")  # fullmatch it


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
        got = shown(ref) if ref else "an empty value"
        raise ReleaseError(f"--ref: expected a git ref (branch, tag or commit), got {got}")
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ReleaseError(f"--ref: {shown(ref)} is not a commit in {repo}")
    return done.stdout.strip()


def release_name(sha: str, now: dt.datetime | None = None) -> str:
    moment = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{moment}-{sha[:7]}"


def deps_site() -> str:
    """This interpreter's site-packages (where the dependency layer's files are read from)."""
    return sysconfig.get_paths()["purelib"]


def python() -> str:
    """The interpreter releases run with: the same path must hold the same version on hosts."""
    return os.path.realpath(sys.executable)


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def deps_closure(project: str = "maqsafy-ops") -> list[metadata.Distribution]:
    """The installed distributions the project needs at run time (extras followed, dev not)."""
    found: dict[str, tuple[metadata.Distribution, set[str]]] = {}

    def walk(name: str, extras: frozenset[str]) -> None:
        key = _key(name)
        if key in found and extras <= found[key][1]:
            return
        try:
            dist = found[key][0] if key in found else metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise ReleaseError(f"dependency {name} is not installed here: {exc}") from exc
        seen = found.setdefault(key, (dist, set()))[1]
        seen |= extras
        for line in dist.requires or []:
            wanted = Requirement(line)
            marker = wanted.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in ("", *seen)):
                walk(wanted.name, frozenset(wanted.extras))

    walk(project, frozenset())
    return [dist for key, (dist, _) in sorted(found.items()) if key != _key(project)]


def deps_digest(dists: list[metadata.Distribution] | None = None) -> str:
    """The layer's name: a hash of the interpreter, the platform and each dist's RECORD."""
    digest = hashlib.sha256(f"{sys.version}\n{sysconfig.get_platform()}\n".encode())
    for dist in dists if dists is not None else deps_closure():
        record = dist.read_text("RECORD") or ""
        digest.update(f"{dist.metadata['Name']}=={dist.version}\n{record}\n".encode())
    return digest.hexdigest()[:16]


def build_deps(cache_dir: Path) -> tuple[str, Path]:
    """The dependency layer's tarball, built once here and kept in `cache_dir` by its hash."""
    dists = deps_closure()
    name = deps_digest(dists)
    tarball = cache_dir / f"deps-{name}.tar.gz"
    if tarball.is_file():
        return name, tarball
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f".deps-{name}.{os.getpid()}.tmp"
    with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
        for dist in dists:
            base = Path(str(dist.locate_file(""))).resolve()
            for entry in dist.files or []:
                path = (base / str(entry)).resolve()
                if base in path.parents and path.is_file():
                    tar.add(path, arcname=str(path.relative_to(base)), filter=_owned_by_nobody)
    partial.replace(tarball)
    for old in cache_dir.glob("deps-*.tar.gz"):  # one layer is cached: the current one
        if old != tarball:
            old.unlink(missing_ok=True)
    return name, tarball


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


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def site_packages() -> str:
    """The release venv's site-packages, relative to the release's root."""
    return f".venv/lib/python{python_version()}/site-packages"


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    tar.addfile(info)


def build(
    repo: Path, ref: str, out_dir: Path, deps: str | None = None, name: str | None = None
) -> Release:
    """Build the release of `ref` from `repo` into `out_dir`/<name>.tar.gz (once per deploy).

    `deps` names the dependency layer it runs on (default: this machine's, `deps_digest()`);
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
    interpreter = python()
    cfg = (
        f"home = {os.path.dirname(interpreter)}\ninclude-system-site-packages = false\n"
        f"version = {sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}\n"
    )
    tarball = out_dir / f"{name}.tar.gz"
    extra = {
        "RELEASE": f"{name}\n".encode(),
        "REVISION": f"{revision or ''}\n".encode(),
        "DEPS": f"{deps or deps_digest()}\n".encode(),
        ".venv/pyvenv.cfg": cfg.encode(),
    }
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        tar.add(tree, arcname=".", filter=_owned_by_nobody)
        for member, data in extra.items():
            _add_bytes(tar, member, data)
        _add_bytes(tar, MANIFEST, manifest(tree, extra))
        _add_link(tar, ".venv/bin/python", interpreter)
        _add_link(tar, ".venv/bin/python3", "python")
        _add_dir(tar, site_packages())  # the host writes its .pth here (see scripts.UNPACK)
    _remove_tree(tree)
    return Release(name, sha, revision, tarball)


def manifest(tree: Path, extra: dict[str, bytes]) -> bytes:
    """`sha256sum` lines for every regular file a release ships, so the host verifies them
    on unpack (and before reusing a release folder it already has)."""
    digests = {
        f"./{path.relative_to(tree).as_posix()}": hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(tree.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
    digests.update({f"./{k}": hashlib.sha256(v).hexdigest() for k, v in extra.items()})
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(digests.items())).encode()


def _owned_by_nobody(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _remove_tree(tree: Path) -> None:
    import shutil

    shutil.rmtree(tree, ignore_errors=True)
