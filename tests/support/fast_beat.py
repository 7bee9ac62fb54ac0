"""Beat with a test-only schedule: every maintenance entry of the real schedule, every second.

`celery -A tests.support.fast_beat beat` sends the same task names the production schedule does,
so a real worker runs each job; only the intervals change.
"""

from __future__ import annotations

from celery_app.celery import app

MAINTENANCE = ("outbox.relay", "ledger.reconcile", "maintenance.")

app.conf.beat_schedule = {
    name: {**entry, "schedule": 1.0}
    for name, entry in app.conf.beat_schedule.items()
    if entry["task"].startswith(MAINTENANCE)
}
