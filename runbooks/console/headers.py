"""The security headers every response carries, the health check and static files included.

Scripts and styles come only from this server's files (`script-src 'self'`: no inline script;
the run page's live view, static/run_live.js, reads its events stream: `connect-src 'self'`),
forms post only to it, no page may be framed, no Referer leaves, and no content type is
sniffed. Pages are not cached (they show operational data); static files may be.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
    "img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
NO_STORE = (b"cache-control", b"no-store")
STATIC = "/static/"


class SecurityHeaders:
    """ASGI middleware: set HEADERS (replacing any the app set) on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = HEADERS if scope["path"].startswith(STATIC) else [*HEADERS, NO_STORE]
        names = {name for name, _ in added}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message = {**message, "headers": [*kept, *added]}
            await send(message)

        await self.app(scope, receive, sending)
