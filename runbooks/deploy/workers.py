"""Worker control on a deployed host outside a deploy: the workers-restart book's actions.

    workers.restart   warm-stop this host's nodes and start them on the live release, the way
                      a deploy does (systemd hosts: `systemctl restart` of the unit)
    workers.verify    from the host itself, with the live release's own code and settings:
                      every node answers ping and consumes its queues (read only)

Both read paths, node names and queues from :mod:`runbooks.deploy.layout`, so a book restart
and a deploy start the same processes under the same names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from runbooks.actions.base import Outcome, PythonAction, StepContext, first_line
from runbooks.deploy import hostside, layout, scripts

SYSTEMD = r"""
sudo -n systemctl restart "$UNIT" && systemctl is-active "$UNIT"
"""

# Asked on the host with the release's interpreter, settings and broker: the question the
# deploy's gate asks, as seen from inside the network.
VERIFY = (
    scripts.CLEAN_ENV
    + r"""
cd "$APP_DIR/current" || { echo "no live release under $APP_DIR (deploy first)" >&2; exit 3; }
.venv/bin/python - "$NAMES" "$W_QUEUES" "$TIMEOUT" <<'PY'
import sys
from celery_app.ops import workers
from celery_app.celery import app
from celery_app.errors import MaqsafyError
names, queues = sys.argv[1].split(), sys.argv[2].split(",")
try:
    workers.verify(app, names, queues, float(sys.argv[3]))
except MaqsafyError as exc:
    sys.exit(f"{exc}")
print("verified " + " ".join(names))
PY
"""
)


def _vars(ctx: StepContext) -> dict[str, Any]:
    return layout.host_vars(ctx.vars)


def restart(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Restart this host's worker nodes gracefully on the release `current` points at."""
    variables = _vars(ctx)
    app = layout.app_dir(variables)
    if variables.get("worker_supervisor") == "systemd":
        unit = str(variables.get("worker_unit"))
        if ctx.check:
            return Outcome("changed", f"check mode: would systemctl restart {unit}")
        done = ctx.target.run(SYSTEMD, env={"UNIT": unit}, timeout=ctx.timeout)
        if done.rc != 0:
            return Outcome("failed", first_line(done.stderr) or f"exit {done.rc}", rc=done.rc)
        return Outcome("changed", f"restarted {unit}")
    live = str(hostside.inspect(_with(ctx, variables), app)["current"])
    if not live:
        return Outcome("failed", f"no live release under {app}: deploy first (invoke deploy)")
    return hostside.restart(_with(ctx, variables), {"release": live, "force": True})


def verify(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Every node of this host answers ping and consumes its queues, asked from the host."""
    variables = _vars(ctx)
    names = layout.node_names(ctx.host, variables)
    timeout = float(variables.get("worker_timeout") or 60)
    env = {
        "APP_DIR": layout.app_dir(variables),
        "NAMES": " ".join(names),
        "W_QUEUES": ",".join(layout.queues(variables)),
        "TIMEOUT": str(timeout),
    }
    done = ctx.target.run(VERIFY, env=env, timeout=timeout + 60)
    if done.rc != 0:
        return Outcome("failed", first_line(done.stderr) or f"exit {done.rc}", rc=done.rc)
    return Outcome("ok", f"{', '.join(names)} answer and consume {env['W_QUEUES']}")


def _with(ctx: StepContext, variables: dict[str, Any]) -> StepContext:
    """`ctx` with the layout's defaults filled in (the book may name none of them)."""
    return dataclasses.replace(ctx, vars=variables)


ACTIONS = [
    PythonAction("workers.restart", restart),
    PythonAction("workers.verify", verify, read_only=True),
]
