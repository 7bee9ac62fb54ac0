"""The console's small rules, without services: where sign-in may send you back to, the CSRF
compare, the peer address the login guard counts, the headers, the listen address."""

from __future__ import annotations

import pytest

from celery_app.errors import InvalidRequest
from runbooks.console import auth, csrf, headers, serve
from runbooks.console.routing import safe_next


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/failed?queue=payments", "/failed?queue=payments"),
        ("/runs/12", "/runs/12"),
        (None, "/"),
        ("", "/"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_sign_in_sends_back_to_this_server_only(given: str | None, kept: str) -> None:
    assert safe_next(given) == kept


def test_csrf_tokens_match_only_themselves() -> None:
    token = csrf.new_token()
    assert csrf.matches(token, token)
    assert len(token) >= 40 and token != csrf.new_token()
    for given, expected in [
        (token[:-1], token),
        ("", ""),
        (None, token),
        (token, None),
        ([token], token),
    ]:
        assert not csrf.matches(given, expected)


def test_the_login_guard_counts_the_peer_address() -> None:
    assert auth.client_address("127.0.0.1") == "127.0.0.1"
    assert auth.client_address("::ffff:10.0.0.1") == "::ffff:a00:1"
    assert auth.client_address("testclient") == auth.client_address(None) == "0.0.0.0"


def test_only_the_servers_own_script_files_run_and_no_page_is_framed() -> None:
    policy = dict(headers.HEADERS)[b"content-security-policy"].decode()
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    sources = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert sources["script-src"] == sources["connect-src"] == "'self'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


@pytest.mark.parametrize("host", ["", "../../etc/passwd", "a b", "*"])
def test_a_listen_host_that_names_nothing_is_refused(host: str) -> None:
    with pytest.raises(InvalidRequest, match="--host"):
        serve.listen_address(host)


def test_an_approval_request_s_age_as_people_read_it() -> None:
    import datetime as dt

    from runbooks.console.pages.approvals import age

    now = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)
    for seconds, shown in [
        (0, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (7_199, "1 h"),
        (2 * 86_400, "2 d"),
    ]:
        assert age((now - dt.timedelta(seconds=seconds)).isoformat(), now) == shown
    assert age((now + dt.timedelta(seconds=5)).isoformat(), now) == "0 s"  # a clock ahead
