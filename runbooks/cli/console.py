"""`console`: the ops console, a web page over the same services as these commands."""

from __future__ import annotations

import os
import sys

from invoke import Context

from celery_app.inputs import shown
from runbooks.cli.apps import celery_module, health_app
from runbooks.cli.errors import operator_errors, refuse
from runbooks.cli.flags import task, whole


@task(
    help={
        "port": "the port to listen on (default 8400)",
        "host": "the address to listen on (default 127.0.0.1; any other is warned about: put "
        "TLS in front and keep that network internal)",
    }
)
def console(c: Context, port: str = "8400", host: str = "127.0.0.1") -> None:
    """Serve the ops console on http://HOST:PORT/ (sign in with an operator account)."""
    from runbooks.console import app as web
    from runbooks.console import serve, wiring

    number = whole(port, "--port", 1, 65535)
    with operator_errors():
        address, loopback = serve.listen_address(host)
    app = health_app("")
    with operator_errors():
        serve.preflight(app)
        celery = celery_module().make_app(app.settings)
    try:
        sock = serve.bind(address, number)
    except OSError as exc:
        refuse(f"cannot listen on {host}:{number}: {exc.strerror or exc}")
    if not loopback:
        print(
            f"warning: --host {shown(host)} is not loopback: the console is reachable from "
            "other machines over plain HTTP; put TLS in front and keep that network internal",
            file=sys.stderr,
        )
    where = f"[{address}]" if ":" in address else address
    print(f"serving the console on http://{where}:{number}/ (Ctrl-C stops)", flush=True)
    try:
        serve.serve(web.build(wiring.wire(app, celery, environ=os.environ)), sock)
    finally:
        celery.close()
