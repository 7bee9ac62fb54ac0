"""The security audit: every Redis server the roles use, and the secret scan, as one report.

Each server is audited for auth, protected mode, bind, TLS, whom the app connects as and every
ACL user against its role's rules (:mod:`celery_app.ops.redis_audit`); the folder is scanned
for real-looking secrets (:mod:`runbooks.checks.secret_scan`). The worst finding gives the exit
code: 0 ok, 1 warning, 2 critical.

    report = security.audit(app, "", Path("."))
    report.as_dict(), report.exit_code
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery_app.ops import findings
from celery_app.ops.findings import Finding

if TYPE_CHECKING:
    from celery_app.bootstrap import Container


@dataclass(frozen=True)
class ServerAudit:
    """One Redis server (as shown, no password), the roles it serves, what its audit found."""

    target: str
    roles: tuple[str, ...]
    findings: list[Finding]

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "roles": list(self.roles),
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class SecurityReport:
    """The servers' audits and the secret scan's findings."""

    servers: list[ServerAudit]
    secrets: list[Finding]

    @property
    def exit_code(self) -> int:
        every = [f for server in self.servers for f in server.findings]
        return findings.exit_code([*every, *self.secrets])

    def as_dict(self) -> dict[str, Any]:
        return {
            "redis": [s.as_dict() for s in self.servers],
            "secrets": [f.as_dict() for f in self.secrets],
        }


def audit_servers(app: Container, user: str = "") -> list[ServerAudit]:
    """Audit every server the app's roles use; the app connects as `user` (default: the URL's)."""
    from celery_app.ops.redis_acl import scope_for
    from celery_app.ops.redis_audit import audit
    from celery_app.ops.redis_doctor import servers
    from celery_app.ops.redis_facts import Endpoint

    settings = app.settings
    scope = scope_for(settings.redis_urls, app.keyspace.prefix)
    return [
        ServerAudit(
            Endpoint.parse(url).display,
            roles,
            audit(url, user, superuser_url=settings.redis_superuser_url, scope=scope),
        )
        for url, roles in servers(settings.redis_urls)
    ]


def secret_findings(root: Path) -> list[Finding]:
    """One critical finding per real-looking secret under `root`, else one ok finding."""
    from runbooks.checks.secret_scan import candidate_files, scan

    files = candidate_files(root)
    leaks = scan(root, files)
    return [
        Finding(
            "secret",
            "critical",
            f"{leak.path}:{leak.line}: {leak.kind}",
            (),
            "replace it with a ${VAR} reference or a <placeholder>; rotate the real one",
        )
        for leak in leaks
    ] or [Finding("secrets", "ok", f"no real-looking secret in {len(files)} files")]


def audit(app: Container, user: str, root: Path) -> SecurityReport:
    """Audit the app's Redis servers (as `user`, default the URL's) and scan `root` for secrets."""
    servers = audit_servers(app, user)
    return SecurityReport(servers, secret_findings(root))
