"""`python -m tests.support.loopback` on a machine without sshd: one line, exit 2."""

from __future__ import annotations

import pytest

from tests.support import loopback


def test_without_sshd_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(loopback.shutil, "which", lambda name: None)
    monkeypatch.setattr(loopback, "SSHD_CANDIDATES", ("/nonexistent/sshd",))
    assert loopback.main(["--hosts", "1"]) == 2
    err = capsys.readouterr().err
    assert err == "error: sshd is not installed: apt install openssh-server\n"
