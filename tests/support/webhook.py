"""A local webhook receiver for notification tests: http.server in a thread, on loopback.

It records every POST's JSON body; the first `fail_first` POSTs are answered HTTP 500 (a receiver
that is down for a moment), the rest 200. Its URL carries a token-like path segment, so tests can
look for it where it must never appear.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.token = "T" + secrets.token_hex(12)
        self.attempts = 0
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.fail_first
                    if not failing and self.path == f"/hooks/{receiver.token}":
                        receiver.received.append(json.loads(body))
                self.send_response(500 if failing else 200)
                self.end_headers()
                self.wfile.write(b"down for a moment" if failing else b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{self.token}"

    def events(self, event: str) -> list[dict[str, Any]]:
        """The messages of `event` (Slack metadata's event_type: `deploy_finished`)."""
        kind = event.replace(".", "_")
        with self.lock:
            return [r for r in self.received if r.get("metadata", {}).get("event_type") == kind]


def payload(message: dict[str, Any]) -> dict[str, Any]:
    """What the producer gave (Slack metadata's event_payload)."""
    found: dict[str, Any] = message["metadata"]["event_payload"]
    return found


@contextmanager
def receiving(fail_first: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(fail_first)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
