"""The Deploys page masks a range's commit subjects once per range, and anew for new secrets."""

from __future__ import annotations

from celery_app.infra.redaction import MASK, Redactor
from runbooks.console.pages.deploys import _masked_commits


def test_commit_subjects_are_masked_and_a_secret_added_later_is_masked_too() -> None:
    redactor = Redactor(["hunter2-token-value"])
    commits = ("abc1234 rotate hunter2-token-value", "def5678 add a later-secret-here note")
    first = _masked_commits(redactor, commits)
    assert first[0] == f"abc1234 rotate {MASK}" and "later-secret-here" in first[1]
    assert _masked_commits(redactor, commits) is first  # the same range: masked once
    redactor.add("later-secret-here")
    again = _masked_commits(redactor, commits)
    assert again[1] == f"def5678 add a {MASK} note" and again[0] == first[0]
