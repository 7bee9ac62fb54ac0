"""Liveness and readiness, for load balancers and orchestrators (served without a session).

`/healthz` is liveness: the process answers, nothing else is asked (a restart would not fix a
Redis outage). `/healthz?ready=1` is readiness: the console can serve a signed-in page only if
the sessions Redis and the database answer, so it asks both (a PING, a `SELECT 1`) and answers
503 with one line naming what does not; the details stay in the console's log, since anyone
may ask.
"""

from __future__ import annotations

import logging

from sqlalchemy import text

from celery_app.infra.redaction import mask_patterns
from runbooks.console.wiring import Console

log = logging.getLogger("maqsafy.console")


def not_ready(console: Console) -> list[str]:
    """What keeps `console` from serving pages: [] when the sessions Redis and the database
    answer, else one phrase each."""
    problems = []
    try:
        console.app.redis("sessions").ping()
    except Exception as exc:  # any failure means not ready; what it was goes to the log
        log.warning(
            "not ready: the sessions Redis: %s", mask_patterns(f"{type(exc).__name__}: {exc}")
        )
        problems.append("the sessions Redis does not answer")
    try:
        with console.app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("not ready: the database: %s", mask_patterns(f"{type(exc).__name__}: {exc}"))
        problems.append("the database does not answer")
    return problems
