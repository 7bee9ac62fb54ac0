"""The shell a deploy runs on a host, one script per step; values arrive as environment
variables (never interpolated into the text), paths from :mod:`runbooks.deploy.layout`.

Each script is run on the host's one shell session by :mod:`runbooks.deploy.hostside`.
"""

from __future__ import annotations

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
# The oldest 3 tasks node $1's log says it received since it started and not ended: running
# ones, or prefetched ones a warm shutdown hands back.
in_flight() {
  start=$(cat "$RUN/$1.logstart" 2>/dev/null || echo 0)
  tail -c +"$((start + 1))" "$RUN/$1.log" 2>/dev/null | awk '
    match($0, / Task [^ []+\[[^]]+\]/) {
      t = substr($0, RSTART + 6, RLENGTH - 6)
      if ($0 ~ /\] received *$/) { seen[++n] = t; open[t] = 1 } else delete open[t]
    }
    END { for (i = 1; i <= n && c < 3; i++) if (seen[i] in open) {
      printf "%s%s", (c++ ? ", " : " (received, not ended: "), seen[i]; delete open[seen[i]] }
      if (c) printf ")" }'
}
for n in $NODES; do
  pid=$(cat "$RUN/$n.pid" 2>/dev/null) || continue
  kill -TERM "$pid" 2>/dev/null || continue
  waited=0
  while kill -0 "$pid" 2>/dev/null; do
    case "$(ps -o stat= -p "$pid" 2>/dev/null)" in Z*) break ;; esac  # exited, not reaped
    if [ "$waited" -ge "$((TIMEOUT * 5))" ]; then
      busy="tasks in flight$(in_flight "$n")"
      echo "$n (pid $pid) still running after ${TIMEOUT}s: $busy; not restarted" >&2
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
