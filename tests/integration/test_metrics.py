"""`invoke metrics.serve`: scraped over HTTP, parsed with prometheus_client's own parser."""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from celery_app.celery import make_app
from celery_app.ops import metrics
from celery_app.ops.status import collect, workers_reader
from tests.support.cli import start_invoke
from tests.support.health import PASSWORD, healthy_env
from tests.support.money import MoneyEnv
from tests.support.redis_app import ROOT, app_env, invoke, migrated_app
from tests.support.services import RedisServer, free_port, start_redis

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MoneyEnv, RedisServer]]:
    with healthy_env(tmp_path_factory.mktemp("metrics")) as found:
        yield found


def scrape(port: int) -> tuple[str, dict[str, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            label = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{label}}}"] = s.value
    return text, samples


def test_the_exporter_serves_every_section(live: tuple[MoneyEnv, RedisServer]) -> None:
    money, server = live
    app = money.container
    read = workers_reader(make_app(app.settings), timeout=1.0)
    port = free_port()
    http = metrics.serve(lambda: collect(app, read), port)
    try:
        text, samples = scrape(port)
    finally:
        http.shutdown()
    roles = "broker,cache,sessions,ratelimit,locks"
    where = f"roles={roles},server=127.0.0.1:{server.port}"
    assert samples[f"maqsafy_redis_up{{{where}}}"] == 1
    assert samples[f"maqsafy_redis_health{{{where}}}"] == 0
    assert samples[f"maqsafy_redis_noeviction{{{where}}}"] == 1
    assert samples[f"maqsafy_redis_evicted_keys_total{{{where}}}"] == 0
    assert samples[f"maqsafy_redis_used_memory_bytes{{{where}}}"] > 0
    assert samples["maqsafy_workers_online{}"] == 1
    [info] = [k for k in samples if k.startswith("maqsafy_worker_info{")]
    assert "node=health@test" in info
    assert {"queue=payments", "queue=maintenance", "queue=ops"} <= {
        k[len("maqsafy_queue_waiting{") : -1]
        for k in samples
        if k.startswith("maqsafy_queue_waiting")
    }
    assert samples["maqsafy_failed_tasks_24h{}"] == 0
    assert samples["maqsafy_outbox_pending{}"] == 0
    assert samples["maqsafy_reconciliation_discrepancies{}"] == 0
    assert samples["maqsafy_status{}"] == 0
    assert samples["maqsafy_database_up{}"] == 1
    assert PASSWORD not in text

    rules = yaml.safe_load(RULES.read_text())
    named = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"maqsafy_[a-z0-9_]+", rule["expr"])
    }
    served = {k.split("{", 1)[0] for k in samples}
    assert named and named <= served, named - served


def test_the_command_serves_until_stopped(live: tuple[MoneyEnv, RedisServer]) -> None:
    money, _server = live
    port = free_port()
    process = start_invoke(["metrics.serve", "--port", str(port)], {**os.environ, **money.env})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(f"serving metrics on http://127.0.0.1:{port}/metrics"), line
        _text, samples = scrape(port)
        assert samples["maqsafy_workers_online{}"] == 1
    finally:
        process.terminate()
        process.wait(10)

    taken = invoke(money.env, "metrics.serve", "--port", "0x")
    assert (taken.returncode, taken.stderr.strip()) == (
        2,
        "error: --port: expected a whole number from 1 to 65535, got '0x'",
    )


def test_a_port_in_use_is_one_line(live: tuple[MoneyEnv, RedisServer]) -> None:
    money, _server = live
    port = free_port()
    http = metrics.serve(lambda: collect(money.container, lambda: []), port)
    try:
        busy = invoke(money.env, "metrics.serve", "--port", str(port))
    finally:
        http.shutdown()
    assert busy.returncode == 2
    assert busy.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}:")
    assert "Traceback" not in busy.stderr


def test_a_stopped_redis_is_up_0_and_status_2(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", password=PASSWORD)
    env = {**app_env(tmp_path, server.url), "DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}"}
    app = migrated_app(env)
    server.stop()
    port = free_port()
    http = metrics.serve(lambda: collect(app, lambda: []), port)
    try:
        text, samples = scrape(port)
    finally:
        http.shutdown()
        app.engine.dispose()
    roles = "broker,cache,sessions,ratelimit,locks"
    assert samples[f"maqsafy_redis_up{{roles={roles},server=127.0.0.1:{server.port}}}"] == 0
    assert samples["maqsafy_status{}"] == 2
    assert samples["maqsafy_database_up{}"] == 1
    assert "maqsafy_workers_online{}" not in samples  # not checked: no value rather than a 0
    assert PASSWORD not in text
