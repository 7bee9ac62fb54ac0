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
from runbooks.errors import StepError

INSPECT = r"""
probe="$APP_DIR"; while [ ! -d "$probe" ]; do probe=$(dirname "$probe"); done
echo "free $(df -Pk "$probe" | awk 'NR==2 {print $4 * 1024}')"
if [ -f "$APP_DIR/shared/.env" ]; then echo "env yes"; else echo "env no"; fi
echo "current $(basename "$(readlink "$APP_DIR/current" 2>/dev/null)" 2>/dev/null)"
if [ -n "$DEPS" ] && [ -d "$APP_DIR/deps/$DEPS" ]; then echo "deps yes"; else echo "deps no"; fi
if [ -n "$PYTHON" ] && [ -x "$PYTHON" ]; then
  echo "python $("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"
fi
# The settings' names only (never their values), and whether MAQSAFY_VAR_DIR is absolute.
if [ -f "$APP_DIR/shared/.env" ]; then
  lead='^[[:space:]]*\(export[[:space:]]\+\)\?'
  sed -n "s/$lead\([A-Za-z_][A-Za-z0-9_]*\)[[:space:]]*=.*/setting \2/p" "$APP_DIR/shared/.env"
  grep -q "${lead}MAQSAFY_VAR_DIR[[:space:]]*=[[:space:]]*[\"']\?/" "$APP_DIR/shared/.env" \
    && echo "var_dir absolute"
fi
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
# Every file as it was built on the laptop (a truncated upload or a changed file stops here).
(cd "$NAME.tmp" && sha256sum --quiet --strict -c MANIFEST) >&2 \
  || { echo "release $NAME does not match its MANIFEST" >&2; exit 4; }
ln -sfn ../../shared/.env "$NAME.tmp/.env"
# The venv finds the release's tree (relative to the .pth's folder) and this host's copy of the
# dependency layer it was built with.
printf '%s\n' ../../../.. "$APP_DIR/deps/$(cat "$NAME.tmp/DEPS")" \
  > "$NAME.tmp/$SITE/maqsafy_release.pth"
# The release's environment was built once on the laptop; prove it runs here.
# (find_spec finds each package without importing it: a missing one fails here, cheaply.)
(cd "$NAME.tmp" && .venv/bin/python -c "$FIND_SPEC")
# A folder of that name that failed its check (see ship) goes.
rm -rf "$NAME"
mv -T "$NAME.tmp" "$NAME"
find "$NAME" -type f -exec chmod a-w {} +  # files read-only; folders stay removable
rm -f "$TARBALL"
"""

SWITCH = r"""
set -e
cd "$APP_DIR"
[ -f "releases/$NAME/RELEASE" ] || { echo "release $NAME is not on this host" >&2; exit 3; }
ln -sfn "releases/$NAME" current.tmp
mv -T current.tmp current
# keep the newest $KEEP releases, and always the live one; only names a deploy creates
drop() { rm -rf "$1"; }
ls -1 releases | grep -E "$RELEASE_PATTERN" | sort -r | tail -n +$((KEEP + 1)) \
  | while read -r old; do [ "$old" = "$NAME" ] || drop "releases/$old"; done
# and the dependency layers the kept releases run on
ls -1 deps 2>/dev/null | grep -E "$DEPS_PATTERN" | while read -r layer; do
  cat releases/*/DEPS 2>/dev/null | grep -qx "$layer" || drop "deps/$layer"
done
"""

UNPACK_DEPS = r"""
set -e
cd "$APP_DIR/deps"
rm -rf "$DEPS.tmp"; mkdir "$DEPS.tmp"
tar -xzf "$TARBALL" -C "$DEPS.tmp"
mv -T "$DEPS.tmp" "$DEPS"
rm -f "$TARBALL"
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
from celery_app import bootstrap
from celery_app.infra import migrate
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
# by a timeout that names what still runs; then a start from `current` on the new release, with
# pidfiles under shared/ so they outlive the release they were started from. The gate then
# waits for the nodes to answer (and fails at once when one exited: see WORKER_STATE).
RESTART = (
    r"""
RUN="${RUN_DIR:-$APP_DIR/shared/run}"; mkdir -p "$RUN"
for n in $NODES; do
  pid=$(cat "$RUN/$n.pid" 2>/dev/null) || continue
  kill -TERM "$pid" 2>/dev/null || continue
  waited=0
  while kill -0 "$pid" 2>/dev/null; do
    case "$(ps -o stat= -p "$pid" 2>/dev/null)" in Z*) break ;; esac  # exited, not reaped
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
# Started in its own session (it outlives this shell), not --detach'ed: what it prints before
# its log is set up (an import error, a bad setting) lands in <node>.out for the gate to show.
detach=$(command -v setsid || true)
for n in $NODES; do
  wc -c < "$RUN/$n.log" > "$RUN/$n.logstart" 2>/dev/null || echo 0 > "$RUN/$n.logstart"
  $detach .venv/bin/python -m celery -A celery_app worker -n "$n@$HOSTNAME_" -Q "$W_QUEUES" \
    ${INCLUDE:+-I "$INCLUDE"} -c "$CONC" --pidfile="$RUN/$n.pid" --logfile="$RUN/$n.log" -l info \
    --without-gossip --without-mingle </dev/null >"$RUN/$n.out" 2>&1 &
  echo "$NAME" > "$RUN/$n.release"
done
"""
)


# Per node, for the gate: is its process alive, and what its log said since this start (the
# last line, and the last time it could not reach its broker).
WORKER_STATE = r"""
RUN="${RUN_DIR:-$APP_DIR/shared/run}"
for n in $NODES; do
  pid=$(cat "$RUN/$n.pid" 2>/dev/null); alive=no
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=yes
  case "$(ps -o stat= -p "${pid:-0}" 2>/dev/null)" in Z*) alive=no ;; esac  # exited, not reaped
  # still starting: no pidfile yet, but its process (named by its pidfile option) runs
  if [ "$alive" = no ]; then
    if ! command -v pgrep >/dev/null 2>&1; then alive=unknown
    elif pgrep -f -- "--pidfile=$RUN/$n.pid" >/dev/null 2>&1; then alive=yes; fi
  fi
  start=$(cat "$RUN/$n.logstart" 2>/dev/null || echo 0)
  since=$(tail -c +$((start + 1)) "$RUN/$n.log" 2>/dev/null | grep -v '^[[:space:]]*$')
  echo "$n alive $alive"
  [ -n "$since" ] || since=$(grep -v '^[[:space:]]*$' "$RUN/$n.out" 2>/dev/null)
  echo "$n last $(printf '%s\n' "$since" | tail -1 | cut -c1-300)"
  echo "$n broker $(printf '%s\n' "$since" | grep 'Cannot connect to' | tail -1 | cut -c1-300)"
done
"""

# What shared/.env must name (placeholders only), said when it is missing or incomplete.
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
