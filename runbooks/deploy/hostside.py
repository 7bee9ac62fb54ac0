"""What a deploy does on one host, as actions `fn(ctx, params) -> Outcome` the engine runs.

Each checks before acting and reports ``ok`` when the host is already as wanted, so the same
deploy run twice changes nothing the second time; in check mode each says what it would do.
Values reach the scripts as environment variables, never interpolated into them.

The host's folders and the programs' entry points are :mod:`runbooks.deploy.layout`'s.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runbooks.actions.base import Outcome, StepContext, first_line
from runbooks.connectors.targets import Target
from runbooks.deploy import layout, release
from runbooks.deploy.scripts import (
    FIND_SPEC,
    INSPECT,
    MIGRATE,
    RESTART,
    SWITCH,
    UNPACK,
    UNPACK_DEPS,
    WORKER_STATE,
    WORKERS_RUNNING,
)
from runbooks.errors import StepError

ENV_HINT = (
    "DATABASE_URL=postgresql+psycopg://<db-user>:<db-password>@<db-host>:5432/maqsafy and "
    "REDIS_URL=redis://:<redis-password>@<redis-host>:6379/0 (or REDIS_HOST, REDIS_PORT, "
    "REDIS_PASSWORD); see README, Deploying"
)
REDIS_SETTINGS = ("REDIS_URL", "REDIS_HOST", "REDIS_BROKER_URL")


def app_dir(ctx: StepContext) -> str:
    return layout.app_dir(ctx.vars)


def run_dir(ctx: StepContext) -> str:
    return layout.run_dir(ctx.vars)


def nodes(ctx: StepContext) -> list[str]:
    return layout.nodes(ctx.vars)


def node_names(ctx: StepContext) -> list[str]:
    return layout.node_names(ctx.host, ctx.vars)


def _run(ctx: StepContext, script: str, env: Mapping[str, str], timeout: float = 120.0) -> Any:
    return ctx.target.run(script, env=dict(env), timeout=timeout)


def inspect(ctx: StepContext, app: str, deps: str = "", python: bool = False) -> dict[str, Any]:
    """Free disk, shared .env present (and the names it sets), the releases, the current one,
    whether the dependency layer `deps` is here and (`python`) the release interpreter's
    version on this host."""
    env = {"APP_DIR": app, "DEPS": deps, "PYTHON": release.python() if python else ""}
    result = _run(ctx, INSPECT, env)
    if result.rc != 0:
        raise OSError(f"cannot prepare {app}: {first_line(result.stderr) or f'exit {result.rc}'}")
    found: dict[str, Any] = {
        "free": 0, "env": False, "current": "", "releases": [], "deps": False, "python": "",
        "settings": [], "var_dir_absolute": False,
    }  # fmt: skip
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "free":
            found["free"] = int(value or 0)
        elif key in ("env", "deps"):
            found[key] = value == "yes"
        elif key in ("current", "python"):
            found[key] = value.strip()
        elif key == "release":
            found["releases"].append(value.strip())
        elif key == "setting":
            found["settings"].append(value.strip())
        elif key == "var_dir":
            found["var_dir_absolute"] = True
    found["releases"].sort()
    return found


def settings_problem(found: Mapping[str, Any], app: str, embedded_ok: bool) -> str:
    """Why the host's shared/.env cannot run a release ('' when it can).

    A release reads its settings from there only. Without Redis settings it runs the embedded
    default, which is right only on `local` and only with an absolute MAQSAFY_VAR_DIR (this
    machine's var, one Redis); a relative one would start a Redis under each release.
    """
    names = set(found["settings"])
    missing = [] if "DATABASE_URL" in names else ["DATABASE_URL"]
    if not names & set(REDIS_SETTINGS):
        missing.append("REDIS_URL")
    if not missing or (embedded_ok and found["var_dir_absolute"]):
        return ""
    if embedded_ok:
        return (
            f"{app}/shared/.env sets no absolute MAQSAFY_VAR_DIR: each release would start its "
            "own Redis or SQLite under its folder; set MAQSAFY_VAR_DIR to this machine's var "
            "folder (absolute), or set " + ENV_HINT
        )
    return f"{app}/shared/.env does not set {', '.join(missing)}: set {ENV_HINT}"


def preflight(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Enough disk, the release interpreter, a shared .env that names the environment's
    Redis and database, and what the host runs now (read only)."""
    app = app_dir(ctx)
    found = inspect(ctx, app, str(params.get("deps", "")), python=True)
    need = int(params.get("min_free_mb", 200)) * 1024 * 1024
    if found["free"] < need:
        return Outcome(
            "failed",
            f"{found['free'] // 2**20} MiB free under {app}, need {need // 2**20} MiB",
            found,
        )
    wanted = release.python_version()
    if found["python"] != wanted:
        got = f"is Python {found['python']}" if found["python"] else "does not exist"
        return Outcome(
            "failed",
            f"{release.python()} {got} on this host: releases run the interpreter they are "
            f"built with, so every host needs Python {wanted} at that same path",
            found,
        )
    if not found["env"]:
        if params.get("local") and ctx.check:
            return Outcome(
                "changed", "check mode: would write shared/.env from this machine's settings", found
            )
        return Outcome(
            "failed",
            f"{app}/shared/.env is missing: provision the host's settings there: {ENV_HINT}",
            found,
        )
    problem = settings_problem(found, app, bool(params.get("local")))
    if problem:
        return Outcome("failed", problem, found)
    return Outcome("ok", f"current {found['current'] or 'none'}", found)


def put_file(target: Target, local: Path, remote: str) -> None:
    """Copy `local` to `remote` over SFTP on the host's one connection (a copy on this machine)."""
    sftp = getattr(target, "sftp", None)
    if sftp is None:
        shutil.copyfile(local, remote)
        return
    sftp().put(str(local), remote)


def _upload(ctx: StepContext, app: str, folder: str, local: str, filename: str) -> str:
    """Create incoming/ and `folder`, upload `local` to incoming/`filename`; its remote path."""
    env = {"APP_DIR": app, "DIR": folder}
    made = _run(ctx, 'mkdir -p "$APP_DIR/incoming" "$APP_DIR/$DIR"', env)
    if made.rc != 0:
        raise StepError(f"cannot create {app}/{folder}: {first_line(made.stderr)}")
    remote = f"{app}/incoming/{filename}"
    put_file(ctx.target, Path(local), remote)
    return remote


def _there(ctx: StepContext, test: str, app: str, name: str, ok: str, would: str) -> Outcome | None:
    """`ok` when `test` finds `name` on the host; in check mode, what would be done; else None."""
    if _run(ctx, test, {"APP_DIR": app, "NAME": name}).rc == 0:
        return Outcome("ok", ok, {"name": name})
    if ctx.check:
        return Outcome("changed", f"check mode: would {would} {name}", {"check": True})
    return None


def ship_deps(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Upload and unpack the dependency layer into deps/<hash>, only where it is missing."""
    app, name = app_dir(ctx), str(params["deps"])
    test = 'test -d "$APP_DIR/deps/$NAME"'
    here, would = f"dependency layer {name} is here", "upload dependency layer"
    found = _there(ctx, test, app, name, here, would)
    if found is not None:
        return found
    if not params.get("tarball"):
        return Outcome("failed", f"dependency layer {name} is missing and was not built")
    tarball = _upload(ctx, app, "deps", str(params["tarball"]), f"deps-{name}.tar.gz")
    done = _run(ctx, UNPACK_DEPS, {"APP_DIR": app, "DEPS": name, "TARBALL": tarball})
    if done.rc != 0:
        why = first_line(done.stderr)
        return Outcome("failed", f"unpacking the dependency layer failed: {why}", rc=done.rc)
    return Outcome("changed", f"uploaded dependency layer {name}", {"deps": name})


def ship(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Upload the release tarball over SFTP and unpack it into releases/<name> (once)."""
    app, name = app_dir(ctx), str(params["release"])
    # reused only when every file still matches what was shipped
    test = (
        'test -f "$APP_DIR/releases/$NAME/RELEASE" && cd "$APP_DIR/releases/$NAME" '
        "&& sha256sum --quiet --strict -c MANIFEST >/dev/null 2>&1"
    )
    found = _there(ctx, test, app, name, f"{name} is already unpacked", "upload and unpack")
    if found is not None:
        return found
    tarball = _upload(ctx, app, "releases", str(params["tarball"]), f"{name}.tar.gz")
    env = {
        "APP_DIR": app,
        "NAME": name,
        "TARBALL": tarball,
        "FIND_SPEC": FIND_SPEC,
        "SITE": release.site_packages(),
    }
    done = _run(ctx, UNPACK, env)
    if done.rc != 0:
        return Outcome("failed", f"unpack failed: {first_line(done.stderr)}", rc=done.rc)
    return Outcome("changed", f"uploaded and unpacked {name}", {"release": name})


def migrate(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Migrate the environment's database with the release's own code (or only read, apply=no)."""
    app, name = app_dir(ctx), str(params["release"])
    apply = bool(params.get("apply", True)) and not ctx.check
    done = _run(ctx, MIGRATE, {"APP_DIR": app, "NAME": name, "APPLY": "yes" if apply else "no"})
    words = done.stdout.split()
    if done.rc != 0 or len(words) < 3:
        return Outcome("failed", f"migration failed: {first_line(done.stderr)}", rc=done.rc)
    before, after, head = (None if w == "-" else w for w in words[-3:])
    data = {"before": before, "after": after, "head": head}
    if before == head:
        return Outcome("ok", f"database already at {head}", data)
    if not apply:
        verb = "would migrate" if ctx.check else "differs:"
        return Outcome("changed" if ctx.check else "ok", f"{verb} {before} -> {head}", data)
    return Outcome("changed", f"migrated {before} -> {after}", data)


def switch(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Point `current` at releases/<name> atomically; keep the newest `keep` releases."""
    app, name = app_dir(ctx), str(params["release"])
    found = inspect(ctx, app)
    data = {"release": name, "previous": found["current"]}
    if found["current"] == name:
        return Outcome("ok", f"current is {name}", data)
    if name not in found["releases"] and not (ctx.check and params.get("shipping")):
        return Outcome("failed", f"release {name} is not on this host", data)
    if ctx.check:
        was = found["current"] or "none"
        return Outcome("changed", f"check mode: would switch {was} -> {name}", data)
    keep = str(max(1, int(ctx.vars.get("keep_releases", 5))))
    env = {
        "APP_DIR": app,
        "NAME": name,
        "KEEP": keep,
        "RELEASE_PATTERN": layout.RELEASE_PATTERN,
        "DEPS_PATTERN": layout.DEPS_PATTERN,
    }
    done = _run(ctx, SWITCH, env)
    if done.rc != 0:
        return Outcome("failed", f"switch failed: {first_line(done.stderr)}", data, rc=done.rc)
    return Outcome("changed", f"current {found['current'] or 'none'} -> {name}", data)


def running(ctx: StepContext, app: str) -> dict[str, str]:
    """Node -> the release it was started on, or 'stopped'."""
    env = {"APP_DIR": app, "NODES": " ".join(nodes(ctx)), "RUN_DIR": run_dir(ctx)}
    done = _run(ctx, WORKERS_RUNNING, env)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def restart(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Warm-stop this host's workers and start them on the release.

    With `force` (the workers-restart book) they are always restarted. Otherwise ``ok`` only
    when every node already runs the release and is healthy: `probe` (the gate's question,
    asked once) finds nothing wrong. A node on the release that is not healthy (a deploy whose
    gate failed, then fixed settings) is restarted, so the same deploy again recovers it.
    """
    app, name = app_dir(ctx), str(params["release"])
    now = running(ctx, app)
    data: dict[str, Any] = {"release": name, "before": now}
    names = ", ".join(node_names(ctx))
    why = ""
    if now and all(release == name for release in now.values()) and not params.get("force"):
        probe = params.get("probe")
        problems = probe(ctx) if probe is not None else []
        if not problems:
            return Outcome("ok", f"workers already run {name}", data)
        why = f" (not healthy: {'; '.join(problems)})"
        data["problems"] = problems
    if ctx.check:
        return Outcome("changed", f"check mode: would restart {names} on {name}{why}", data)
    env = {
        "APP_DIR": app,
        "NAME": name,
        "NODES": " ".join(nodes(ctx)),
        "HOSTNAME_": ctx.host,
        "RUN_DIR": run_dir(ctx),
        "W_QUEUES": ",".join(layout.queues(ctx.vars)),
        "INCLUDE": ",".join(layout.includes(layout.queues(ctx.vars))),
        "CONC": str(ctx.vars.get("worker_concurrency", 2)),
        "TIMEOUT": str(int(float(ctx.vars.get("worker_timeout", 60)))),
    }
    timeout = float(env["TIMEOUT"]) + 120
    done = _run(ctx, RESTART, env, timeout=timeout)
    if done.rc != 0:
        return Outcome("failed", first_line(done.stderr) or f"exit {done.rc}", data, rc=done.rc)
    return Outcome("changed", f"restarted {names} on {name}{why}", data)


def worker_state(ctx: StepContext) -> dict[str, dict[str, str]]:
    """Node -> alive (yes/no), last (its log's last line since its start), broker (the last
    line saying it cannot reach its broker, or '')."""
    env = {"APP_DIR": app_dir(ctx), "NODES": " ".join(nodes(ctx)), "RUN_DIR": run_dir(ctx)}
    done = _run(ctx, WORKER_STATE, env)
    state: dict[str, dict[str, str]] = {}
    for line in done.stdout.splitlines():
        node, _, rest = line.partition(" ")
        key, _, value = rest.partition(" ")
        state.setdefault(node, {})[key] = value.strip()
    return state


def list_releases(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """This host's releases and the current one (read only)."""
    app = app_dir(ctx)
    found = inspect(ctx, app)
    found["workers"] = running(ctx, app)
    return Outcome("ok", f"current {found['current'] or 'none'}", found)
