"""A release is checked against its MANIFEST on the host (security finding 7): a folder of that
name whose files changed is not reused but unpacked again, and a tarball whose files do not
match is refused. The host here is this machine's shell (LocalTarget), the scripts the real
ones, the release built from this checkout as a deploy builds it."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbooks.actions.base import StepContext
from runbooks.connectors.targets import LocalTarget
from runbooks.deploy import hostside, release
from tests.support.deploy import PROJECT


@pytest.fixture
def target() -> Iterator[LocalTarget]:
    local = LocalTarget()
    yield local
    local.close()


def with_layer(app: Path) -> Path:
    """`app` with this machine's packages standing in for the dependency layer a deploy ships."""
    (app / "deps").mkdir(parents=True)
    (app / "deps" / release.deps_digest()).symlink_to(release.deps_site())
    return app


def test_a_changed_release_is_unpacked_again_and_a_bad_tarball_refused(
    tmp_path: Path, target: LocalTarget
) -> None:
    built = release.build(PROJECT, "HEAD", tmp_path / "build")
    app = tmp_path / "app"
    with_layer(app)
    ctx = StepContext(target, "localhost", False, {"app_dir": str(app)})
    params = {"release": built.name, "tarball": str(built.tarball)}

    def ship() -> tuple[str, str]:
        shipped = built.tarball.read_bytes()
        outcome = hostside.ship(ctx, params)
        built.tarball.write_bytes(shipped)  # the upload's copy is removed after unpacking
        return outcome.status, outcome.message

    assert ship()[0] == "changed"
    tasks = app / "releases" / built.name / "tasks.py"
    assert not tasks.stat().st_mode & 0o222  # shipped files are read-only
    assert ship() == ("ok", f"{built.name} is already unpacked")

    tasks.chmod(0o644)
    tasks.write_text("raise SystemExit('changed on the host')\n")
    assert ship()[0] == "changed"  # not reused: unpacked again, as built
    assert tasks.read_text() == (PROJECT / "tasks.py").read_text()

    # A tarball whose tasks.py is not the one its MANIFEST names never becomes a release.
    altered = tmp_path / "altered.tar.gz"
    with tarfile.open(built.tarball) as source, tarfile.open(altered, "w:gz") as out:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name == "./tasks.py":
                body = b"print('not what was built')\n"
                member.size = len(body)
                data = io.BytesIO(body)
            out.addfile(member, data)
    other = {"app_dir": str(with_layer(tmp_path / "other"))}
    bad = hostside.ship(
        StepContext(target, "localhost", False, other),
        {"release": built.name, "tarball": str(altered)},
    )
    assert bad.status == "failed" and "does not match its MANIFEST" in bad.message
    assert not (tmp_path / "other" / "releases" / built.name).exists()
