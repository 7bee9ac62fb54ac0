"""The Workers page's graceful restart of this machine's node (`invoke workers.restart`, its
defaults): real `celery multi` on the stack of test_console.py (uvicorn in a thread, a real
redis-server, SQLite). The inventory environments' restart (the workers-restart runbook on
sshd hosts) is tested with a deployed fleet in tests/integration/deploy/test_console_deploys.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from pathlib import Path

from celery_app.ops import workers
from runbooks.console import app as web
from runbooks.console import auth
from runbooks.console.pages.workers import local_supervisor
from tests.integration.test_console import Stack, sqlite_only, stack
from tests.support.console import Browser, Served, run_finished, run_started
from tests.support.redis_app import app_env

__all__ = ["stack"]  # the module-scoped fixture of test_console.py


@sqlite_only
def test_this_machines_worker_restarts_gracefully_from_the_workers_page(
    stack: Stack, tmp_path: Path
) -> None:
    env = {**app_env(tmp_path, stack.redis.url), "PATH": os.environ["PATH"]}
    console = dataclasses.replace(stack.console, environ=env)  # the nodes it starts get env
    served = Served(web.build(console))
    ana = Browser(served.url)
    signed = stack.signed_in("ana")
    ana.http.cookies.set(auth.COOKIE, signed.http.cookies[auth.COOKIE])
    ana.csrf = signed.csrf
    supervisor = local_supervisor(console)
    try:
        before = stack.runs()
        idle = ana.post("/workers/restart", {"env": "local"})
        assert idle.status_code == 400 and "does not run on this machine" in idle.text
        assert 'id="restart-local"' not in ana.get("/workers").text
        assert stack.runs() == before and supervisor.pid("w1") is None  # none was started

        supervisor.start(["w1"])
        node = f"w1@{workers._hostname()}"
        workers.verify(console.celery, [node], supervisor.queues, 60)
        pid = supervisor.pid("w1")
        assert 'id="restart-local"' in ana.get("/workers").text
        run = run_finished(stack.app, run_started(ana.post("/workers/restart", {"env": "local"})))
        assert (run["name"], run["status"], run["operator"]) == ("workers.restart", "ok", "ana")
        assert run["message"] == "restarted w1; 0 redelivered"
        assert run["arguments"] == {"nodes": ["w1"]}
        assert supervisor.pid("w1") not in (None, pid)
        assert workers.ping(console.celery, nodes=[node]) == [node]
    finally:
        ana.close()
        served.stop()
        left = supervisor.stop(["w1"], timeout=30)
        for name in left:
            pid = supervisor.pid(name)
            if pid and os.getpgid(pid) != os.getpgid(0):
                with contextlib.suppress(OSError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
