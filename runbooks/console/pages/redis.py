"""Redis: the doctor's findings per server (`invoke redis.doctor`, the same
`runbooks.checks.doctor.diagnose`), each server's memory from the facts it read, and the keys
and sampled memory per role (`invoke redis.keyspace`, the same `keyspace_report.report`).

Read-only: the doctor's one write is its probe, a cache key that expires in ten seconds.
Servers are shown as the doctor names them (a URL without its password), and every text a
server or an error supplied goes through the console's redactor as well.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from celery_app.errors import MaqsafyError
from celery_app.ops import keyspace_report
from celery_app.ops.findings import LEVELS
from runbooks.checks import doctor
from runbooks.console import errors, wiring
from runbooks.console.auth import Viewer
from runbooks.console.pages.overview import mib
from runbooks.console.templating import render
from runbooks.engine.redact import Redactor

# Keys scanned per Redis for one page load; a bigger keyspace's counts are scaled by DBSIZE
# and the page says "estimated" (the command scans up to 200,000).
MAX_KEYS = 20_000


def setting_of(role: str) -> str:
    """The setting that points `role` at its Redis (each defaults to REDIS_URL)."""
    return f"REDIS_{role.upper()}_URL"


def memory(facts: dict[str, Any] | None) -> dict[str, str] | None:
    """Used, peak and limit as people read them, the policy and evictions (None: no INFO)."""
    if facts is None:
        return None
    limit = facts["maxmemory"]
    used = facts["used_memory"]
    return {
        "used": mib(used),
        "peak": mib(facts["used_memory_peak"]),
        "limit": mib(limit) if limit else "no limit",
        "ratio": f"{used / limit:.0%}" if limit else "-",
        "policy": facts["maxmemory_policy"],
        "evicted": str(facts["evicted_keys"]),
        "fragmentation": f"{facts['fragmentation_ratio']:.2f}",
    }


def server_view(diagnosis: dict[str, Any], mask: Redactor) -> dict[str, Any]:
    """One server's diagnosis as the template shows it, every text masked."""
    findings = [
        {
            "level": f["level"],
            "check": f["check"],
            "message": mask.text(f["message"]),
            "causes": [mask.text(c) for c in f["causes"]],
            "next_check": mask.text(f["next_check"]),
        }
        for f in diagnosis["findings"]
    ]
    return {
        "target": mask.text(diagnosis["target"]),
        "roles": diagnosis["roles"],
        "settings": [setting_of(role) for role in diagnosis["roles"]],
        "level": diagnosis["level"],
        "latency": diagnosis["latency_ms"],
        "findings": findings,
        "docker": [mask.text(line) for line in diagnosis["docker"] or []],
        "memory": memory(diagnosis["facts"]),
    }


async def redis_health(request: Request, viewer: Viewer) -> Response:
    """Each Redis server: its roles, the doctor's findings, its memory; the keyspace per role."""
    console = wiring.of(request)

    def read() -> tuple[list[dict[str, Any]], dict[str, Any] | None, str]:
        report = doctor.diagnose(console.app)
        servers = [server_view(d, console.redactor) for d in report.as_list()]
        try:
            keys = keyspace_report.report(console.app, max_keys=MAX_KEYS).as_dict()
        except MaqsafyError as exc:  # a server the doctor found down: its findings say why
            said = errors.message_of(exc, console.app.settings)
            return servers, None, console.redactor.text(said)
        return servers, keys, ""

    servers, keys, problem = await run_in_threadpool(read)
    level = max((s["level"] for s in servers), key=LEVELS.index, default="ok")
    return render(
        request,
        "redis.html",
        viewer,
        servers=servers,
        level=level,
        keys=keys,
        problem=problem,
        embedded=console.app.settings.embedded_redis,
    )
