"""The Redis doctor with Docker: each server diagnosed layer by layer, and where its name does
not resolve or its port refuses, which of the page's Docker causes holds on this machine.

    report = doctor.diagnose(app, None)
    report.as_list(), report.exit_code    # 0 ok, 1 warning, 2 critical
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery_app.ops import redis_doctor

if TYPE_CHECKING:
    from celery_app.bootstrap import Container
    from celery_app.ops.redis_doctor import Diagnosis

DOCKER_KINDS = {"resolve", "refused"}  # the failures a container's state or network explains


@dataclass(frozen=True)
class DoctorReport:
    """Each server's diagnosis; `docker`: the Docker causes found for a server, by target."""

    diagnoses: list[Diagnosis]
    docker: dict[str, list[str]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return redis_doctor.report_exit_code(self.diagnoses)

    def as_list(self) -> list[dict[str, Any]]:
        return [{**d.as_dict(), "docker": self.docker.get(d.target)} for d in self.diagnoses]


def docker_causes(target: str) -> list[str]:
    """Which Docker cause explains that the Redis at `target` fails, checked on this machine."""
    from celery_app.ops.redis_facts import Endpoint
    from runbooks.connectors.targets import LocalTarget
    from runbooks.facts.docker import explain_unreachable

    local = LocalTarget()
    try:
        return explain_unreachable(local, Endpoint.parse(target).host)
    finally:
        local.close()


def diagnose(app: Container, role: str | None = None) -> DoctorReport:
    """Diagnose every server the app's roles use (or only `role`'s), Docker causes included."""
    diagnoses = redis_doctor.diagnose(app.settings.redis_urls, app.keyspace, role)
    docker = {
        d.target: docker_causes(d.target)
        for d in diagnoses
        if {f.data.get("kind") for f in d.findings} & DOCKER_KINDS
    }
    return DoctorReport(diagnoses, docker)
