"""`audit.*`: the security audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Collection, Context

from celery_app.inputs import shown
from runbooks.cli.apps import health_app
from runbooks.cli.errors import exit_with, refuse
from runbooks.cli.flags import JSON_HELP, ON_REDIS_HELP, task
from runbooks.cli.output import emit


def folder(path: str) -> Path:
    """Parse --path: a folder to scan (default: this repository)."""
    from celery_app.settings import PROJECT_ROOT

    root = Path(path) if path else PROJECT_ROOT
    try:
        found = root.is_dir()
    except OSError as exc:  # a name too long, a folder that cannot be read
        refuse(f"--path {shown(path)}: {exc.strerror}")
    if not found:
        refuse(f"--path: no folder {shown(str(root))}")
    return root


def redis_user(user: str) -> str:
    """Parse --user: a Redis user name ('': the one REDIS_URL names)."""
    if user and not user.replace("-", "").replace("_", "").isalnum():
        refuse(f"--user: a Redis user name is letters, digits, - or _, got {shown(user)}")
    return user


@task(
    help={
        "user": "the Redis user the app connects as (default: REDIS_URL's user; none: default)",
        "path": "the folder to scan for secrets (default: this repository)",
        **ON_REDIS_HELP,
        **JSON_HELP,
    }
)
def security(
    c: Context,
    user: str = "",
    path: str = "",
    env: str = "",
    inventory: str = "",
    json: bool = False,
) -> None:
    """Audit Redis (auth, protected mode, bind, TLS, whom the app connects as, every ACL user
    against its role's rules) and scan for secrets; exit 0 ok, 1 warning, 2 critical."""
    from celery_app.ops import findings
    from runbooks.checks.security import audit

    root, name = folder(path), redis_user(user)
    report = audit(health_app(env, inventory), name, root)

    def render(_: Any) -> None:
        for server in report.servers:
            print(f"{server.target}  (roles: {', '.join(server.roles)})")
            print("\n".join(f"  {line}" for line in findings.render_lines(server.findings)))
        print("\n".join(findings.render_lines(report.secrets)))

    emit(report.as_dict(), json, render)
    exit_with(report.exit_code)


ns = Collection("audit", security)
