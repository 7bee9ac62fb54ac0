"""The Celery app is configured for money, and beat names only tasks that exist."""

from __future__ import annotations

from pathlib import Path

from celery_app.celery import kombu_url, make_app
from celery_app.settings import load_settings


def app_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(
        {"MAQSAFY_VAR_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"},
        dotenv=tmp_path / "none",
    )
    app = make_app(settings)
    app.loader.import_default_modules()
    return app


def test_money_settings(tmp_path: Path) -> None:
    conf = app_for(tmp_path).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.broker_transport_options["visibility_timeout"] >= 3600
    assert conf.task_ignore_result is True


def test_money_tasks_route_to_the_payments_queue(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    route = app.amqp.router.route
    assert route({}, "purchase.post")["queue"].name == "payments"
    assert route({}, "wallet.top_up")["queue"].name == "payments"
    assert route({}, "ledger.reconcile")["queue"].name == "maintenance"


def test_beat_schedules_only_registered_tasks(tmp_path: Path) -> None:
    from celery_app.money import jobs  # registers the tasks on the module's app
    from celery_app.ops import jobs as _ops_jobs  # noqa: F401

    names = {entry["task"] for entry in app_for(tmp_path).conf.beat_schedule.values()}
    assert names >= {"outbox.relay", "ledger.reconcile", "settlement.run_daily"}
    assert names <= set(jobs.app.tasks)


def test_unix_socket_urls_become_kombu_socket_urls() -> None:
    assert kombu_url("unix:///srv/var/redis.sock?db=2") == (
        "redis+socket:///srv/var/redis.sock?virtual_host=2"
    )
    assert kombu_url("redis://h:6379/0") == "redis://h:6379/0"
