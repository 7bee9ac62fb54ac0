"""What a deploy does on one host, as actions `fn(ctx, params) -> Outcome` the engine runs.

Each checks before acting and reports ``ok`` when the host is already as wanted, so the same
deploy run twice changes nothing the second time; in check mode each says what it would do.
Values reach the scripts as environment variables, never interpolated into them.

A host's application folder (``app_dir``)::

    releases/<time>-<sha>/   one unpacked release each (RELEASE, REVISION, .venv, .env -> shared)
    shared/.env              the host's settings (provisioned, never shipped by a deploy)
    shared/run/              worker pidfiles, logs and the release each node was started on
                             (`worker_run_dir` moves them: on `local`, var/run, where
                             `invoke workers.stop` finds them)
    current -> releases/...  the live release, switched atomically (ln -s tmp; mv -T)
    incoming/                tarballs while they upload
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runbooks.actions.base import Outcome, StepContext, first_line
from runbooks.targets import Target

INSPECT = r"""
probe="$APP_DIR"; while [ ! -d "$probe" ]; do probe=$(dirname "$probe"); done
echo "free $(df -Pk "$probe" | awk 'NR==2 {print $4 * 1024}')"
if [ -f "$APP_DIR/shared/.env" ]; then echo "env yes"; else echo "env no"; fi
echo "current $(basename "$(readlink "$APP_DIR/current" 2>/dev/null)" 2>/dev/null)"
for r in "$APP_DIR"/releases/*/RELEASE; do
  [ -f "$r" ] && echo "release $(basename "$(dirname "$r")")"
done
exit 0
"""

FIND_SPEC = (
    "import importlib.util as u, sys; "
    "sys.exit(not all(u.find_spec(m) for m in ('celery', 'redis', 'sqlalchemy', 'celery_app')))"
)

UNPACK = r"""
set -e
cd "$APP_DIR/releases"
rm -rf "$NAME.tmp"; mkdir "$NAME.tmp"
tar -xzf "$TARBALL" -C "$NAME.tmp"
ln -sfn ../../shared/.env "$NAME.tmp/.env"
# The release's environment was built once on the laptop; prove it runs here.
# (find_spec finds each package without importing it: a missing one fails here, cheaply.)
(cd "$NAME.tmp" && .venv/bin/python -c "$FIND_SPEC")
mv -T "$NAME.tmp" "$NAME"
rm -f "$TARBALL"
"""

SWITCH = r"""
set -e
cd "$APP_DIR"
[ -f "releases/$NAME/RELEASE" ] || { echo "release $NAME is not on this host" >&2; exit 3; }
ln -sfn "releases/$NAME" current.tmp
mv -T current.tmp current
# keep the newest $KEEP releases, and always the live one
ls -1 releases | grep -v '\.tmp$' | sort -r | tail -n +$((KEEP + 1)) | while read -r old; do
  [ "$old" = "$NAME" ] || rm -rf "releases/$old"
done
"""

# The release reads its settings from shared/.env only, not from the shell it was started in.
CLEAN_ENV = r"""
roles='MAQSAFY\|REDIS\|DATABASE\|CACHE\|SESSION\|QUEUE'
for v in $(env | sed -n "s/^\(\($roles\)_[A-Z_]*\)=.*/\1/p"); do unset "$v"; done
"""

MIGRATE = (
    CLEAN_ENV
    + r"""
cd "$APP_DIR/releases/$NAME" || exit 3
.venv/bin/python - "$APPLY" <<'PY'
import sys
from celery_app import bootstrap, migrate
app = bootstrap.build()
before = migrate.current(app.engine)
if sys.argv[1] == "yes":
    migrate.upgrade(app.engine)
print(before or "-", migrate.current(app.engine) or "-", migrate.head(app.engine) or "-")
PY
"""
)

WORKERS_RUNNING = r"""
cd "${RUN_DIR:-$APP_DIR/shared/run}" 2>/dev/null || exit 0
for n in $NODES; do
  pid=$(cat "$n.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null \
    && echo "$n $(cat "$n.release" 2>/dev/null || echo unknown)" || echo "$n stopped"
done
"""

# A warm shutdown (SIGTERM: running tasks finish, prefetched ones go back to the queue), bounded
# by a timeout that names what still runs; then a start from `current` on the new release. The
# same steps as the workers-restart book's `celery multi` path, with pidfiles under shared/
# so they outlive the release they were started from.
RESTART = (
    r"""
RUN="${RUN_DIR:-$APP_DIR/shared/run}"; mkdir -p "$RUN"
for n in $NODES; do
  pid=$(cat "$RUN/$n.pid" 2>/dev/null) || continue
  kill -TERM "$pid" 2>/dev/null || continue
  waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge "$((TIMEOUT * 5))" ]; then
      echo "$n (pid $pid) still running after ${TIMEOUT}s: tasks in flight; not restarted" >&2
      exit 1
    fi
    sleep 0.2; waited=$((waited + 1))
  done
  rm -f "$RUN/$n.pid"
done
cd "$APP_DIR/current" || exit 3
"""
    + CLEAN_ENV
    + r"""
export MAQSAFY_RELEASE="$NAME"
# What `celery multi start` runs per node, without its extra interpreter.
for n in $NODES; do
  .venv/bin/python -m celery -A celery_app worker --detach -n "$n@$HOSTNAME_" -Q "$W_QUEUES" \
    -c "$CONC" --pidfile="$RUN/$n.pid" --logfile="$RUN/$n.log" -l info \
    --without-gossip --without-mingle >"$RUN/$n.out" 2>&1 \
    || { grep -v '^\s*$' "$RUN/$n.out" | tail -4 >&2; exit 1; }
  echo "$NAME" > "$RUN/$n.release"
done
"""
)


def app_dir(ctx: StepContext) -> str:
    value = str(ctx.vars.get("app_dir") or "").rstrip("/")
    if not value.startswith("/"):
        raise OSError(f"app_dir must be an absolute path, got {value!r}")
    return value


def run_dir(ctx: StepContext) -> str:
    """Where worker pidfiles live ('' means the default, <app_dir>/shared/run)."""
    return str(ctx.vars.get("worker_run_dir") or "")


def nodes(ctx: StepContext) -> list[str]:
    return [n for n in str(ctx.vars.get("worker_nodes", "w1")).replace(",", " ").split() if n]


def node_names(ctx: StepContext) -> list[str]:
    """The Celery node names this host's workers answer as (`w1@<inventory name>`)."""
    return [f"{n}@{ctx.host}" for n in nodes(ctx)]


def _run(ctx: StepContext, script: str, env: Mapping[str, str], timeout: float = 120.0) -> Any:
    return ctx.target.run(script, env=dict(env), timeout=timeout)


def inspect(ctx: StepContext, app: str) -> dict[str, Any]:
    """Free disk, shared .env present, the releases and the current one (read only)."""
    result = _run(ctx, INSPECT, {"APP_DIR": app})
    if result.rc != 0:
        raise OSError(f"cannot prepare {app}: {first_line(result.stderr) or f'exit {result.rc}'}")
    found: dict[str, Any] = {"free": 0, "env": False, "current": "", "releases": []}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "free":
            found["free"] = int(value or 0)
        elif key == "env":
            found["env"] = value == "yes"
        elif key == "current":
            found["current"] = value.strip()
        elif key == "release":
            found["releases"].append(value.strip())
    found["releases"].sort()
    return found


def preflight(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Enough disk, a shared .env, and what the host runs now (read only)."""
    app = app_dir(ctx)
    found = inspect(ctx, app)
    need = int(params.get("min_free_mb", 200)) * 1024 * 1024
    if found["free"] < need:
        return Outcome(
            "failed",
            f"{found['free'] // 2**20} MiB free under {app}, need {need // 2**20} MiB",
            found,
        )
    if not found["env"]:
        return Outcome("failed", f"{app}/shared/.env is missing: provision the host's settings")
    return Outcome("ok", f"current {found['current'] or 'none'}", found)


def put_file(target: Target, local: Path, remote: str) -> None:
    """Copy `local` to `remote` over SFTP on the host's one connection (a copy on this machine)."""
    sftp = getattr(target, "sftp", None)
    if sftp is None:
        shutil.copyfile(local, remote)
        return
    sftp().put(str(local), remote)


def ship(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Upload the release tarball over SFTP and unpack it into releases/<name> (once)."""
    app, name = app_dir(ctx), str(params["release"])
    there = _run(ctx, 'test -f "$APP_DIR/releases/$NAME/RELEASE"', {"APP_DIR": app, "NAME": name})
    if there.rc == 0:
        return Outcome("ok", f"{name} is already unpacked", {"release": name})
    if ctx.check:
        return Outcome("changed", f"check mode: would upload and unpack {name}", {"check": True})
    made = _run(ctx, 'mkdir -p "$APP_DIR/incoming" "$APP_DIR/releases"', {"APP_DIR": app})
    if made.rc != 0:
        return Outcome("failed", f"cannot create {app}/incoming: {first_line(made.stderr)}")
    tarball = f"{app}/incoming/{name}.tar.gz"
    put_file(ctx.target, Path(str(params["tarball"])), tarball)
    env = {"APP_DIR": app, "NAME": name, "TARBALL": tarball, "FIND_SPEC": FIND_SPEC}
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
    done = _run(ctx, SWITCH, {"APP_DIR": app, "NAME": name, "KEEP": keep})
    if done.rc != 0:
        return Outcome("failed", f"switch failed: {first_line(done.stderr)}", data, rc=done.rc)
    return Outcome("changed", f"current {found['current'] or 'none'} -> {name}", data)


def running(ctx: StepContext, app: str) -> dict[str, str]:
    """Node -> the release it was started on, or 'stopped'."""
    env = {"APP_DIR": app, "NODES": " ".join(nodes(ctx)), "RUN_DIR": run_dir(ctx)}
    done = _run(ctx, WORKERS_RUNNING, env)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def restart(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """Warm-stop this host's workers and start them on the release (ok when already on it)."""
    app, name = app_dir(ctx), str(params["release"])
    now = running(ctx, app)
    data = {"release": name, "before": now}
    if now and all(release == name for release in now.values()):
        return Outcome("ok", f"workers already run {name}", data)
    if ctx.check:
        return Outcome("changed", f"check mode: would restart {', '.join(now)} on {name}", data)
    env = {
        "APP_DIR": app,
        "NAME": name,
        "NODES": " ".join(nodes(ctx)),
        "HOSTNAME_": ctx.host,
        "RUN_DIR": run_dir(ctx),
        "W_QUEUES": str(ctx.vars.get("worker_queues", "payments,maintenance,ops")),
        "CONC": str(ctx.vars.get("worker_concurrency", 2)),
        "TIMEOUT": str(int(float(ctx.vars.get("worker_timeout", 60)))),
    }
    timeout = float(env["TIMEOUT"]) + 120
    done = _run(ctx, RESTART, env, timeout=timeout)
    if done.rc != 0:
        return Outcome("failed", first_line(done.stderr) or f"exit {done.rc}", data, rc=done.rc)
    return Outcome("changed", f"restarted {', '.join(node_names(ctx))} on {name}", data)


def list_releases(ctx: StepContext, params: dict[str, Any]) -> Outcome:
    """This host's releases and the current one (read only)."""
    app = app_dir(ctx)
    found = inspect(ctx, app)
    found["workers"] = running(ctx, app)
    return Outcome("ok", f"current {found['current'] or 'none'}", found)
