"""The tunnel's pieces that need no sshd: name routing to the forwarder, and the causes."""

from __future__ import annotations

import socket

import pytest

from runbooks.reach.tunnel import explain, route, unroute


def test_route_sends_exactly_that_name_and_port_to_the_forwarder() -> None:
    with socket.create_server(("127.0.0.1", 0)) as forwarder:
        local = forwarder.getsockname()[:2]
        original = ("redis.only-inside.invalid", 6379)
        route(original, local)
        try:
            with socket.create_connection(original, timeout=2) as client:
                accepted, _ = forwarder.accept()
                client.sendall(b"PING\r\n")
                assert accepted.recv(6) == b"PING\r\n"
                accepted.close()
            with pytest.raises(OSError):  # another port of the same name is not routed
                socket.create_connection(("redis.only-inside.invalid", 6380), timeout=2)
        finally:
            unroute(original)
        with pytest.raises(OSError):
            socket.create_connection(original, timeout=2)


@pytest.mark.parametrize(
    ("reason", "summary"),
    [
        ("Connection refused", "connection refused by redis:6379"),
        ("Name or service not known", "getaddrinfo for redis failed"),
        ("Temporary failure in name resolution", "getaddrinfo for redis failed"),
        ("Connection timed out", "no answer from redis:6379 within 10s"),
        ("No route to host", "network error reaching redis:6379"),
    ],
)
def test_the_app_hosts_reason_in_the_pages_words(reason: str, summary: str) -> None:
    said = explain("redis", 6379, reason, 10.0)
    assert said.startswith(summary) and f"({reason}); possible causes: " in said
