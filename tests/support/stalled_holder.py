"""A lock holder that takes its wallet's lock, then waits for a line on stdin before committing.

Run as `python -m tests.support.stalled_holder REQUEST_ID` with the money environment in the
environment. It prints `LOCKED <token>` once it holds the lock, and after the line arrives
prints `POSTED` or `REFUSED <reason>`. The test stops it (SIGSTOP) while it holds the lock.
"""

from __future__ import annotations

import sys

from celery_app import bootstrap
from celery_app.errors import StaleFence
from celery_app.money import posting


def main() -> int:
    request_id = int(sys.argv[1])
    container = bootstrap.get()
    _, _, wallet = posting.peek(container, request_id)
    grant = posting.locks(container).acquire(f"account:{wallet}")
    print(f"LOCKED {grant.token}", flush=True)
    sys.stdin.readline()
    try:
        outcome = posting.commit_request(container, request_id, grant)
    except StaleFence as exc:
        print(f"REFUSED {exc}", flush=True)
        return 0
    print(f"POSTED {outcome.result}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
