"""Starting the console: where it may listen, what must hold first, and serving.

- **Where**: 127.0.0.1 by default. Any other address is allowed with a warning (the compose
  service listens on 0.0.0.0 inside its container, published on the host's loopback only);
  a value that is no host name or address, or does not resolve, is refused.
- **What must hold**: the database is migrated and holds at least one enabled operator
  account. With none, the console refuses to start (`invoke operators.add NAME --role admin`
  first): the command line's single local operator is the OS user, protected by this
  machine's file permissions, but a port, even on 127.0.0.1, answers every local user and
  every page a local browser opens, so the console always signs in with an account.
  The sessions Redis answers.
"""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from celery_app.bootstrap import Container
from celery_app.errors import InvalidRequest
from celery_app.infra.boundary import redis_errors
from celery_app.inputs import listen_addresses

if TYPE_CHECKING:
    import uvicorn

SHUTDOWN_GRACE = 3  # seconds

NO_ACCOUNTS = (
    "the console signs in with operator accounts and this database has none: create one with "
    "`invoke operators.add NAME --role admin`, then start the console again"
)


def listen_address(host: str) -> tuple[str, bool]:
    """The address `host` names, and whether it is loopback only; InvalidRequest for what
    is neither a host name nor an address, or does not resolve."""
    addresses = listen_addresses(host)
    return str(addresses[0]), all(a.is_loopback for a in addresses)


def preflight(app: Container) -> None:
    """Refuse to start (InvalidRequest, ServiceUnavailable, SQL errors) unless the database
    is migrated and has an operator account, and the sessions Redis answers."""
    from runbooks.access.operators import active_count

    with app.sessions() as session:
        if active_count(session) == 0:
            raise InvalidRequest(NO_ACCOUNTS)
    with redis_errors("the sessions Redis"):
        app.redis("sessions").ping()


def bind(address: str, port: int) -> socket.socket:
    """A socket bound to address:port (OSError when it cannot be), for uvicorn to serve on."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # a kept-alive connection waits ~40 ms per response (Nagle against delayed ACKs).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


def server(app: Starlette) -> uvicorn.Server:
    """uvicorn serving `app`: no Server header, no proxy headers trusted (the client address
    the login guard counts is the peer's), no access log (a page's URL may hold filters); on
    shutdown, open responses get SHUTDOWN_GRACE seconds (a running run's event stream would
    otherwise hold the server until the run ends; the browser reconnects to the next one)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        lifespan="off",
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    served = uvicorn.Server(config)
    app.state.server = served  # open event streams end when it is told to exit
    return served


def serve(app: Starlette, sock: socket.socket) -> None:
    """Serve `app` on the bound `sock` until interrupted (Ctrl-C, SIGTERM), its background
    work (the queue sampler) running from the start."""
    app.state.console.start()
    try:
        server(app).run(sockets=[sock])
    finally:
        running = app.state.console.running.count()
        if running:  # a deploy is not cut off halfway: it ends and closes its record
            print(
                f"waiting for {running} running action(s) to end (see their runs)",
                file=sys.stderr,
                flush=True,
            )
        app.state.console.close()
