"""`metrics.*`: the status as Prometheus metrics."""

from __future__ import annotations

import sys
import threading

from invoke import Collection, Context

from celery_app.inputs import shown
from runbooks.cli.apps import celery_module, health_app
from runbooks.cli.errors import operator_errors, refuse
from runbooks.cli.flags import ON_REDIS_HELP, task, whole


@task(
    help={
        "port": "the port to listen on (default 9808)",
        "host": "the address to listen on (default 127.0.0.1; keep it internal: 0.0.0.0, * "
        "and :: are refused, any other non-loopback address is warned about)",
        **ON_REDIS_HELP,
    }
)
def serve(
    c: Context, port: str = "9808", host: str = "127.0.0.1", env: str = "", inventory: str = ""
) -> None:
    """Serve Prometheus metrics on http://HOST:PORT/metrics until stopped."""
    from celery_app.ops import metrics
    from celery_app.ops import status as health

    number = whole(port, "--port", 1, 65535)
    with operator_errors():
        loopback = metrics.listen_host(host)  # refused: every address (0, *, 0.0.0.0, ::)
    if not loopback:
        print(
            f"warning: --host {shown(host)} is not loopback: the metrics are reachable from "
            "other machines; keep that network internal",
            file=sys.stderr,
        )
    app = health_app(env, inventory)
    with operator_errors():
        read = health.workers_reader(celery_module().make_app(app.settings), timeout=1.0)
    try:
        server = metrics.serve(lambda: health.collect(app, read), number, host)
    except OSError as exc:
        refuse(f"cannot listen on {host}:{number}: {exc.strerror or exc}")
    print(f"serving metrics on http://{host}:{number}/metrics (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


ns = Collection("metrics", serve)
