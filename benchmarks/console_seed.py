"""The console benchmark's data, written in set-based SQL (PostgreSQL or SQLite).

- `failed_tasks`: N rows, one a second going back from now; three queues; one row in 1,000 is
  the rare task `settlement.run_daily`; arguments, kwargs (a `callback_token` the redactor has
  to mask in the record page), an exception and a 12-frame traceback of realistic length.
- `ops_runs`: M runs, one a minute going back from now. One in 100 is a `deploy` (its
  arguments carry a real commit of this checkout, so the Deploys page's `git log` runs as it
  does in production), one in 10 a runbook, the rest recorded ops commands; arguments carry a
  secret-looking value. Deploys and runbooks have 3 hosts each; runbooks 5 steps per host
  with a few lines of output.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parents[1]
RARE_TASK = "settlement.run_daily"

# Dialect-specific pieces: the row source, the timestamp of row i, a per-row hex value, and the
# release name a deploy's hosts report (`release 20261201T101500Z-abc1234`).
PG = {
    "rows": "FROM generate_series(1, :n) AS g(i)",
    "with": "",
    "ago_s": "now() - make_interval(secs => :n - i)",
    "ago_m": "now() - make_interval(mins => :n - i)",
    "hex": "md5(i::text)",
    "stamp": "to_char(r.started_at AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS\"Z\"')",
    "sha": "CAST(r.arguments AS json)->>'sha'",
    "pick_sha": "(CAST(:shas AS text[]))[1 + (i / 100) % :nshas]",
}
SQLITE = {
    "rows": "FROM n",
    "with": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n) ",
    "ago_s": "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (:n - i) || ' seconds')",
    "ago_m": "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (:n - i) || ' minutes')",
    "hex": "hex(randomblob(16))",
    "stamp": "strftime('%Y%m%dT%H%M%SZ', r.started_at)",
    "sha": "json_extract(r.arguments, '$.sha')",
    "pick_sha": "json_extract(:shas, '$[' || ((i / 100) % :nshas) || ']')",
}

TRACEBACK = (
    "'Traceback (most recent call last):' || char(10) || "
    "replace(substr('{frames}', 1), '|', char(10)) || "
    "'RuntimeError: gateway timeout after 30s (request ' || i || ')'"
)
FRAME = '  File "/srv/app/celery_app/tasks/purchase.py", line 88, in post|    gateway.charge(r)|'

FAILED = """{with}INSERT INTO failed_tasks
  (task_id, queue, task_name, args, kwargs, exception, traceback, failed_at)
SELECT 'c0ffee-' || i,
       CASE i % 3 WHEN 0 THEN 'payments' WHEN 1 THEN 'maintenance' ELSE 'ops' END,
       CASE WHEN i % 1000 = 0 THEN 'settlement.run_daily' WHEN i % 2 = 0 THEN 'purchase.post'
            ELSE 'runbook.run' END,
       '[' || i || ', "m-' || (i % 500) || '"]',
       '{{"amount": ' || (i % 9000 + 100) || ', "currency": "SAR", "callback_token": "'
         || {hex} || '"}}',
       'RuntimeError: gateway timeout after 30s (request ' || i || ')',
       {traceback},
       {ago_s}
{rows}"""

RUNS = """{with}INSERT INTO ops_runs
  (kind, name, environment, operator, approved_by, version, arguments, check_mode, status,
   message, started_at, ended_at, duration)
SELECT CASE WHEN i % 10 = 0 AND i % 100 <> 0 THEN 'runbook' ELSE 'command' END,
       CASE WHEN i % 100 = 0 THEN 'deploy' WHEN i % 10 = 0 THEN 'site.yml'
            WHEN i % 3 = 0 THEN 'failed.retry' ELSE 'cache.clear' END,
       CASE i % 2 WHEN 0 THEN 'production' ELSE 'staging' END,
       CASE i % 4 WHEN 0 THEN 'ana' WHEN 1 THEN 'bob' WHEN 2 THEN 'root' ELSE 'val' END,
       '', '1.4.' || (i % 30),
       CASE WHEN i % 100 = 0
            THEN '{{"ref": "main", "sha": "' || {pick_sha} || '", "hosts": 3}}'
            WHEN i % 10 = 0
            THEN '{{"limit": null, "tags": ["app"], "extra_vars": {{"db_password": "pw-'
                 || {hex} || '"}}}}'
            ELSE '{{"ids": "' || i || '", "queue": null, "via": "console"}}' END,
       {false}, CASE WHEN i % 17 = 0 THEN 'failed' ELSE 'ok' END,
       CASE WHEN i % 17 = 0 THEN 'step restart failed on 1 host' ELSE '' END,
       {ago_m}, {ago_m}, 12.5
{rows}"""

HOSTS = """INSERT INTO ops_run_hosts
  (run_id, host, status, cause, message, batch, ok, changed, skipped, failed, rescued, duration)
SELECT r.id, 'app' || h.k || '.internal', CASE WHEN r.status = 'ok' THEN 'ok' ELSE 'failed' END,
       NULL,
       CASE WHEN r.name = 'deploy'
            THEN 'release ' || {stamp} || '-' || substr({sha}, 1, 7) ELSE '' END,
       0, 5, 2, 0, 0, 0, 4.2
FROM ops_runs r CROSS JOIN ({three}) AS h
WHERE r.kind = 'runbook' OR r.name = 'deploy'"""

STEPS = """INSERT INTO ops_run_steps
  (run_id, host, position, step, action, status, message, rc, attempts, rescued, duration,
   stdout, stderr, started_at)
SELECT r.id, 'app' || h.k || '.internal', s.k, 'step ' || s.k || ': restart the app', 'shell',
       'ok', '', 0, 1, {false}, 0.8,
       'Restarting maqsafy-app.service' || char(10) || 'active (running) since '
         || r.started_at || char(10) || 'DATABASE_URL=postgresql://app:pw-' || r.id || '@db/app',
       '', r.started_at
FROM ops_runs r CROSS JOIN ({three}) AS h CROSS JOIN ({five}) AS s
WHERE r.kind = 'runbook'"""


def shas(count: int = 50) -> list[str]:
    """Up to `count` real commits of this checkout, newest first (deploys point at them)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-list", f"--max-count={count}", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split() or ["0" * 40]


def seed(engine: Engine, failed: int, runs: int) -> float:
    """Fill the tables; return the seconds it took (ANALYZE included)."""
    import json

    sqlite = engine.dialect.name == "sqlite"
    parts = dict(SQLITE if sqlite else PG)
    parts["false"] = "0" if sqlite else "false"
    parts["traceback"] = TRACEBACK.format(frames=FRAME * 6)
    if not sqlite:
        parts["traceback"] = parts["traceback"].replace("char(10)", "chr(10)")
    parts["three"] = " UNION ALL ".join(f"SELECT {k} AS k" for k in range(1, 4))
    parts["five"] = " UNION ALL ".join(f"SELECT {k} AS k" for k in range(1, 6))
    commits = shas()
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(FAILED.format(**parts)), {"n": failed})
        run_args = {"n": runs, "nshas": len(commits)}
        run_args["shas"] = json.dumps(commits) if sqlite else commits  # type: ignore[assignment]
        conn.execute(text(RUNS.format(**parts)), run_args)
        for sql in (HOSTS, STEPS):
            body = sql.format(**parts)
            conn.execute(text(body.replace("char(10)", "chr(10)") if not sqlite else body))
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    if not sqlite:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return time.perf_counter() - started
