"""A wired money environment on real services: SQL schema migrated, accounts open, workers."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, func, select

from celery_app import bootstrap
from celery_app.celery import make_app, make_enqueue
from celery_app.dev.worker_process import WorkerProcess, start_worker
from celery_app.infra import migrate
from celery_app.infra.models import LedgerEntry, PaymentRequest, Posting
from celery_app.money import posting, settlement, submit
from celery_app.settings import load_settings
from tests.support.services import wait_for


@dataclass
class MoneyEnv:
    env: dict[str, str]
    container: bootstrap.Container
    enqueue: Callable[[str, int], None]
    var_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, name: str = "w1@test", concurrency: int = 2) -> WorkerProcess:
        worker = start_worker(
            name,
            self.var_dir / f"{name.split('@')[0]}-{len(self.workers)}.log",
            concurrency=concurrency,
            env=self.env,
        )
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def open_wallets(self, wallets: int, merchants: int = 1) -> None:
        for i in range(wallets):
            submit.open_account(self.container, f"wallet:{i}", "wallet")
        for i in range(merchants):
            submit.open_account(self.container, f"merchant:{i}", "merchant")

    def statuses(self) -> dict[str, int]:
        with self.container.uow() as uow:
            rows = uow.session.execute(
                select(PaymentRequest.status, func.count()).group_by(PaymentRequest.status)
            ).all()
        return {status: int(count) for status, count in rows}

    def pending(self) -> int:
        return self.statuses().get("pending", 0)

    def wait_settled(self, timeout: float = 90.0, relay: bool = False) -> None:
        def done() -> bool:
            if relay:
                submit.relay(self.container, self.enqueue, older_than=2)
            return self.pending() == 0

        wait_for(done, timeout, "every payment request to leave 'pending'", every=0.5)

    def postings_per_request(self) -> dict[int, int]:
        with self.container.uow() as uow:
            rows = uow.session.execute(
                select(Posting.request_id, func.count())
                .where(Posting.request_id.is_not(None))
                .group_by(Posting.request_id)
            ).all()
        return {int(r): int(n) for r, n in rows}

    def entry_count(self) -> int:
        with self.container.uow() as uow:
            return int(uow.session.scalar(select(func.count()).select_from(LedgerEntry)) or 0)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        bootstrap.reset()
        self.container.engine.dispose()


def fund(money: MoneyEnv, wallets: int, amount: int) -> None:
    """Top up every wallet directly through the service layer (no worker needed)."""
    locks = posting.locks(money.container)
    for i in range(wallets):
        sent = submit.submit_top_up(
            money.container, f"seed-{i}", f"wallet:{i}", amount, lambda *_: None
        )
        posting.post_request(money.container, sent.request_id, locks)


def assert_exactly_once(money: MoneyEnv, requests: int) -> None:
    per_request = money.postings_per_request()
    assert max(per_request.values(), default=1) == 1, "a request was posted twice"
    statuses = money.statuses()
    assert statuses.get("pending", 0) == 0
    assert sum(statuses.values()) == requests
    assert statuses.get("posted", 0) == len(per_request)
    assert settlement.reconcile(money.container).balanced


def money_env(tmp_path: Path, redis_url: str, database_url: str, **extra: str) -> MoneyEnv:
    """Migrate `database_url`, open the platform accounts, and wire a producer to `redis_url`."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MAQSAFY_VAR_DIR": str(tmp_path / "var"),
        "MAQSAFY_ENV_FILE": str(tmp_path / "no.env"),
        "MAQSAFY_RELAY_AFTER": "2",
        **extra,
    }
    settings = load_settings(env)
    container = bootstrap.build(settings)
    migrate.upgrade(container.engine)
    submit.open_platform_accounts(container)
    enqueue = make_enqueue(make_app(settings), settings)
    return MoneyEnv(env, container, enqueue, tmp_path / "var")


class Shopping(threading.Thread):
    """Submit purchases (outbox first, then the task) until stopped."""

    def __init__(self, money: MoneyEnv, wallets: int) -> None:
        super().__init__(daemon=True)
        self.money, self.wallets = money, wallets
        self.stop = threading.Event()
        self.submitted = 0

    def run(self) -> None:
        rng = random.Random(5)
        while not self.stop.wait(0.02):
            submit.submit_purchase(
                self.money.container,
                f"p-{self.submitted}",
                f"wallet:{rng.randrange(self.wallets)}",
                "merchant:0",
                rng.randrange(100, 900),
                self.money.enqueue,
            )
            self.submitted += 1


def start_shopping(money: MoneyEnv, wallets: int = 10) -> Shopping:
    """Open `wallets` funded wallets and start submitting purchases on them (stop, then join)."""
    money.open_wallets(wallets)
    for i in range(wallets):
        submit.submit_top_up(money.container, f"seed-{i}", f"wallet:{i}", 1_000_000, money.enqueue)
    shopping = Shopping(money, wallets)
    shopping.start()
    return shopping


def submit_while_held(money: MoneyEnv, hold: Callable[[Connection], None], wallet: str) -> bool:
    """Run `hold(conn)` (a posting statement) in a transaction left open, submit a purchase on
    `wallet` meanwhile; whether the submit was still blocked after 30 s (then the commit frees
    it). A deadline, not a timing: blocked, it waits for the commit."""
    from sqlalchemy import create_engine

    holder = create_engine(money.env["DATABASE_URL"])
    done: list[int] = []

    def shop() -> None:
        sent = submit.submit_purchase(
            money.container, "p", wallet, "merchant:0", 700, lambda *_: None
        )
        done.append(sent.request_id)

    try:
        with holder.connect() as conn:
            tx = conn.begin()
            hold(conn)
            shopper = threading.Thread(target=shop, daemon=True)
            shopper.start()
            shopper.join(30)
            blocked = shopper.is_alive()
            tx.commit()
            shopper.join(30)
    finally:
        holder.dispose()
    assert len(done) == 1, "the submit never ended"
    return blocked
