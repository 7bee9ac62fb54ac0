"""`redis.*`: each Redis role's keys, reachability, health and ACL users."""

from __future__ import annotations

import os
from typing import Any

from invoke import Collection, Context

from runbooks.cli.apps import health_app, recorded, redis_app
from runbooks.cli.errors import exit_for, exit_with, operator_errors, refuse
from runbooks.cli.flags import JSON_HELP, ON_REDIS_HELP, redis_role, task
from runbooks.cli.output import emit


@task(help={**ON_REDIS_HELP, **JSON_HELP})
def keyspace(c: Context, env: str = "", inventory: str = "", json: bool = False) -> None:
    """Show keys and memory per Redis role, sampled with SCAN."""
    from celery_app.ops import keyspace_report

    app = redis_app(env, inventory)
    with operator_errors():
        data = keyspace_report.report(app).as_dict()

    def render(d: dict[str, Any]) -> None:
        print(f"{'role':<10} {'keys':>10} {'memory':>12}")
        for row in d["roles"]:
            print(f"{row['role']:<10} {row['keys']:>10} {row['memory_bytes']:>12,}")
        print(f"scanned {d['scanned']} key(s){' (counts estimated)' if d['estimated'] else ''}")

    emit(data, json, render)


@task(
    help={
        "role": "the Redis role to ping: broker (default), cache, sessions, ratelimit, locks",
        **ON_REDIS_HELP,
        **JSON_HELP,
    }
)
def ping(
    c: Context, role: str = "broker", env: str = "", inventory: str = "", json: bool = False
) -> None:
    """PING a Redis role: PONG, or which layer failed and why (exit 2)."""
    from celery_app.ops import findings, redis_doctor

    name = redis_role(role) or "broker"
    app = health_app(env, inventory)
    result = redis_doctor.ping(app.settings.redis_url(name))
    emit(result.as_dict(), json, lambda _: print("\n".join(findings.render_lines([result]))))
    exit_for(result.level)  # 1: PONG with a warning (the password is ignored)


@task(
    help={
        "role": "only the server this role uses (default: every role's server)",
        **ON_REDIS_HELP,
        **JSON_HELP,
    }
)
def doctor(
    c: Context, role: str = "", env: str = "", inventory: str = "", json: bool = False
) -> None:
    """Diagnose Redis layer by layer; exit 0 ok, 1 warning, 2 critical."""
    from celery_app.ops import findings
    from runbooks.checks.doctor import diagnose

    only = redis_role(role)
    report = diagnose(health_app(env, inventory), only)

    def render(_: Any) -> None:
        for result in report.diagnoses:
            print(f"{result.target}  (roles: {', '.join(result.roles)})")
            for line in findings.render_lines(result.findings):
                print(f"  {line}")
            for line in report.docker.get(result.target, []):
                print(f"  docker: {line}")

    emit(report.as_list(), json, render)
    exit_with(report.exit_code)


@task(
    help={
        "apply": "create or update every role's user on Redis, as the user "
        "MAQSAFY_REDIS_SUPERUSER_URL names (else the broker URL's); recorded",
        "check": "with --apply: say which users would change, change nothing",
        "role": "only this role's user: producer, worker, ops or admin",
        **ON_REDIS_HELP,
    }
)
def acl(
    c: Context,
    apply: bool = False,
    check: bool = False,
    role: str = "",
    env: str = "",
    inventory: str = "",
) -> None:
    """Show (or --apply) one least-privilege Redis user per role; passwords come from
    MAQSAFY_REDIS_<ROLE>_PASSWORD and are never shown."""
    import redis

    from celery_app.ops import redis_acl

    with operator_errors():
        users = redis_acl.pick(role)
    if check and not apply:
        refuse("--check only goes with --apply (without --apply nothing changes)")
    if apply:
        with operator_errors():  # every password present before anything is written
            secrets = redis_acl.passwords(users, os.environ)
    app = health_app(env, inventory)
    scope = redis_acl.scope_for(app.settings.redis_urls, app.keyspace.prefix)
    if not apply:
        print(redis_acl.render(scope, users))
        return
    url = app.settings.redis_superuser_url or app.settings.redis_url("broker")
    admin = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    names = [u.name for u in users]
    try:
        with operator_errors():
            if check:
                results = redis_acl.apply(admin, users, secrets, scope, check=True)
            else:
                password_envs = [u.password_env for u in users]
                with recorded(
                    app, "redis.acl", env, users=names, password_envs=password_envs
                ) as record:
                    results = redis_acl.apply(admin, users, secrets, scope)
                    record.message = "; ".join(r.message() for r in results)
    finally:
        admin.close()
    print("\n".join(r.message() for r in results))


ns = Collection("redis", keyspace, ping, doctor, acl)
