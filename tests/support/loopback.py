"""Start loopback "hosts" to deploy to by hand: `python -m tests.support.loopback --hosts 3`.

Each host is a real sshd on 127.0.0.2, .3, ... with its own root folder under
``var/loopback``, provisioned as a worker host is (``srv/maqsafy/shared/.env`` naming this
machine's Redis and database), listed in ``var/loopback/inventory/loopback.yml``. Then, from
another terminal::

    .venv/bin/invoke deploy --env loopback --inventory var/loopback/inventory --serial 1

Ctrl-C stops the hosts and the workers the deploys started on them.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import sys
from pathlib import Path

from celery_app import bootstrap
from celery_app.infra import migrate
from celery_app.infra.embedded import ensure_embedded_redis
from tests.support.deploy import make_fleet
from tests.support.sshd import SSHD_CANDIDATES, start_sshd_hosts, stop_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=3)
    args = parser.parse_args(argv)
    if not 1 <= args.hosts <= 50:
        parser.error("--hosts must be from 1 to 50")
    if not (shutil.which("sshd") or any(Path(c).is_file() for c in SSHD_CANDIDATES)):
        print("error: sshd is not installed: apt install openssh-server", file=sys.stderr)
        return 2
    app = bootstrap.get()
    migrate.upgrade(app.engine)  # the deploy records its runs here
    if app.settings.embedded_redis:
        ensure_embedded_redis(app.settings.var_dir)
    base = Path(app.settings.var_dir) / "loopback"
    shutil.rmtree(base, ignore_errors=True)
    hosts = start_sshd_hosts(base / "hosts", args.hosts)
    key_file = base / "ops-signing-key"  # signs `run BOOK --remote` requests; hosts verify
    key_file.touch(mode=0o600)
    key_file.write_text(secrets.token_hex(32) + "\n")
    fleet = make_fleet(
        base / "inventory",
        hosts,
        app.settings.redis_url("broker"),
        app.settings.database_url,
        environment="loopback",
        worker_queues="payments,maintenance,ops",
        ops_key=key_file.read_text().strip(),
    )
    print(f"{args.hosts} hosts up on 127.0.0.2-{args.hosts + 1}; inventory {fleet.inventory_dir}")
    print("deploy: .venv/bin/invoke deploy --env loopback --inventory var/loopback/inventory")
    print(f"run --remote: export MAQSAFY_OPS_SIGNING_KEY=$(cat {key_file})")
    print("Ctrl-C stops the hosts and their workers", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        fleet.kill_workers()
        stop_all(hosts)
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
