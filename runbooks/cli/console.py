"""`console`: the ops console, a web page over the same services as these commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from invoke import Context

from celery_app.inputs import shown
from runbooks.cli.apps import celery_module, health_app, inventory_dir
from runbooks.cli.errors import operator_errors, refuse
from runbooks.cli.flags import task, whole


@task(
    help={
        "port": "the port to listen on (default 8400)",
        "host": "the address to listen on (default 127.0.0.1; any other is warned about: put "
        "TLS in front and keep that network internal)",
        "inventory": "the inventory folder (default ./inventory): the environments the deploy "
        "and restart forms act on",
    }
)
def console(c: Context, port: str = "8400", host: str = "127.0.0.1", inventory: str = "") -> None:
    """Serve the ops console on http://HOST:PORT/ (sign in with an operator account)."""
    from runbooks.console import app as web
    from runbooks.console import serve, wiring

    number = whole(port, "--port", 1, 65535)
    if inventory and not Path(inventory).is_dir():
        refuse(f"--inventory {shown(inventory)}: no such folder (it holds <env>.yml files)")
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
        console = wiring.wire(
            app,
            celery,
            environ=os.environ,
            inventory_dir=inventory_dir(inventory),
            repo=Path.cwd(),  # refs are deployed from this checkout, as `invoke deploy` does
        )
        serve.serve(web.build(console), sock)
    finally:
        celery.close()
