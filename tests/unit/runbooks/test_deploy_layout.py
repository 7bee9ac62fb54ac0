"""A deploy owns its app folder only (security finding 6): app_dir rules, and pruning that
touches no name a deploy did not create (the switch script run on a local shell)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runbooks.actions.base import StepContext
from runbooks.connectors.targets import LocalTarget
from runbooks.deploy import hostside, layout


@pytest.mark.parametrize(
    ("given", "expected"),
    [("/srv/maqsafy", "/srv/maqsafy"), ("/srv/maqsafy/", "/srv/maqsafy"),
     ("//srv//maqsafy", "/srv/maqsafy"), ("/opt/school/app", "/opt/school/app")],
)  # fmt: skip
def test_app_dir_is_normalised(given: str, expected: str) -> None:
    assert layout.app_dir({"app_dir": given}) == expected


@pytest.mark.parametrize(
    "given", ["srv/maqsafy", "/srv/otherapp/../otherapp", "/", "/usr", "/var/lib", "/srv", "/a/\n"]
)
def test_app_dirs_a_deploy_must_not_own_are_refused(given: str) -> None:
    with pytest.raises(OSError, match="app_dir"):
        layout.app_dir({"app_dir": given})


@pytest.fixture
def target() -> Iterator[LocalTarget]:
    local = LocalTarget()
    yield local
    local.close()


def test_switch_prunes_only_what_deploys_create(tmp_path: Path, target: LocalTarget) -> None:
    app = tmp_path / "app"
    names = [f"2026120{i}T000000Z-abcdef{i}" for i in range(1, 5)]
    for name in names:
        (app / "releases" / name).mkdir(parents=True)
        (app / "releases" / name / "RELEASE").write_text(name)
        (app / "releases" / name / "DEPS").write_text(f"{'a' * 15}{name[-1]}\n")
    for layer in ("a" * 15 + "1", "a" * 15 + "4", "b" * 16):
        (app / "deps" / layer).mkdir(parents=True)
    (app / "releases" / "important-data").mkdir()  # not a release name: never touched
    (app / "deps" / "important-data").mkdir()
    ctx = StepContext(target, "localhost", False, {"app_dir": str(app), "keep_releases": 2})
    outcome = hostside.switch(ctx, {"release": names[-1]})
    assert outcome.status == "changed", outcome.message
    kept = sorted(p.name for p in (app / "releases").iterdir())
    assert kept == sorted([*names[-2:], "important-data"])
    layers = sorted(p.name for p in (app / "deps").iterdir())
    assert layers == sorted(["a" * 15 + "4", "important-data"])  # 3's layer is not on disk
