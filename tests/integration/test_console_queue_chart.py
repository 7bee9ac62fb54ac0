"""The Queues page's chart: samples of the broker's queues kept in Redis by the console's own
sampler, bounded, and drawn as SVG from them. Real redis-server, real Celery messages, SQLite,
uvicorn (the stack of test_console.py, from its `serving`)."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator

import pytest

from celery_app.ops import queue_samples, queues
from runbooks.console import app as web
from runbooks.console import auth
from tests.integration.test_console import Stack, serving
from tests.support.broker import hold_unacked, producer, send
from tests.support.console import Browser, Served
from tests.support.services import RedisServer, wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serving(tmp_path_factory.mktemp("console-chart"), "sqlite") as stack:
        stack.console.sampler.close()  # tests write their own samples; one console samples
        yield stack


def members(stack: Stack) -> list[dict[str, object]]:
    raw = stack.redis.client().zrange(stack.app.keyspace.queue_samples, 0, -1)
    return [json.loads(m) for m in raw]


def test_samples_are_one_a_minute_and_trimmed_at_the_bound(redis_server: RedisServer) -> None:
    from celery_app.infra.keyspace import Keyspace

    client, keyspace = redis_server.client(), Keyspace()
    sender = producer(redis_server.url)
    for _ in range(3):
        send(sender, "maintenance.memory", [], "payments")
    held = hold_unacked(redis_server.url, "payments", 1)
    t0 = 1_800_000_000.0  # a minute boundary
    try:
        stats = queues.queue_stats(client, clock=lambda: t0)
        for minute in range(5):
            queue_samples.write(client, keyspace, stats, t0 + 60 * minute + 7, keep=180)
        # the same minute again: replaced, not added (two consoles on one broker)
        queue_samples.write(client, keyspace, stats, t0 + 4 * 60 + 50, keep=180)
    finally:
        held.close()
        sender.close()
    kept = queue_samples.read(client, keyspace, 0)
    assert [s.at - t0 for s in kept] == [60, 120, 180, 240]  # 180 s back from the last, kept
    assert client.zcard(keyspace.queue_samples) == 4
    assert kept[-1].value("payments", "waiting") == 2
    assert kept[-1].value("payments", "unacked") == 1
    assert kept[-1].value("maintenance", "waiting") == 0
    assert queue_samples.read(client, keyspace, t0 + 200)[0].at == t0 + 240
    # the count bound holds too, whatever the clock says
    for minute in range(10):
        queue_samples.write(client, keyspace, stats, t0 + 600 + 60 * minute, keep_samples=3)
    assert client.zcard(keyspace.queue_samples) == 3
    assert keyspace.role_of(keyspace.queue_samples) == "broker"
    # sampling reads the broker and stores what it read (the console's sampler calls this)
    client.delete(keyspace.queue_samples)
    at = queue_samples.sample(client, keyspace, clock=lambda: t0 + 3600)
    [only] = queue_samples.read(client, keyspace, 0)
    assert (at, only.at, only.value("payments", "waiting")) == (t0 + 3600, t0 + 3600, 3)


def test_the_queues_page_draws_the_samples(stack: Stack) -> None:
    client, keyspace = stack.redis.client(), stack.app.keyspace
    now = time.time()
    sender = producer(stack.redis.url)
    send(sender, "maintenance.memory", [], "maintenance")
    sender.close()
    stats = queues.queue_stats(client)
    client.delete(keyspace.queue_samples)
    for back in range(30, 0, -1):  # the last half hour, a minute each
        queue_samples.write(client, keyspace, stats, now - 60 * back)
    for back in range(200, 180, -1):  # and 20 minutes three hours ago
        queue_samples.write(client, keyspace, stats, now - 60 * back)

    b = stack.signed_in("val")  # a viewer reads it
    page = b.get("/queues", params={"hours": "1"})
    assert page.status_code == 200, page.text[:300]
    text = page.text
    assert "30 samples" in text and 'id="no-samples"' not in text
    for chart_id in ("waiting", "unacked", "oldest-waiting", "oldest-unacked"):
        assert f'<figure class="chart" id="chart-{chart_id}">' in text
    waiting = re.search(r'id="chart-waiting">(.*?)</figure>', text, re.S)
    assert waiting
    line = re.search(
        r'data-queue="maintenance">\s*<polyline fill="none" points="([^"]+)"', waiting.group(1)
    )
    assert line and len(line.group(1).split()) == 30  # one point per sample in the window
    ys = {float(p.split(",")[1]) for p in line.group(1).split()}
    assert len(ys) == 1  # the same depth all along: a flat line
    assert re.search(r"maintenance <strong>1</strong>", waiting.group(1))  # the last value
    labels = re.findall(r'text-anchor="end">([^<]+)</text>', waiting.group(1))
    assert labels[0] == "0" and labels[-1] in ("1", "2")  # the y axis, from 0 to round
    assert re.search(r'text-anchor="middle">\d\d:\d0</text>', waiting.group(1))  # x: UTC times
    assert "style=" not in text  # the CSP's style-src allows no inline style
    assert "<script" not in text

    # a view within the minute over the same samples is the same drawing; a new sample is not
    assert b.get("/queues", params={"hours": "1"}).text.count("<polyline") == text.count(
        "<polyline"
    )
    queue_samples.write(client, keyspace, stats, now)
    assert "31 samples" in b.get("/queues", params={"hours": "1"}).text

    day = b.get("/queues", params={"hours": "24"}).text
    assert "51 samples" in day
    gap = re.search(r'id="chart-waiting">.*?data-queue="maintenance">(.*?)</g>', day, re.S)
    assert gap and gap.group(1).count("<polyline") == 2  # three hours unsampled: not bridged

    bad = b.get("/queues", params={"hours": "nope"})
    assert bad.status_code == 400 and "hours: expected one of 1, 6, 24" in bad.text
    assert 'id="queues"' not in bad.text


def test_the_running_console_samples_by_itself_and_says_when_it_has_none(stack: Stack) -> None:
    """Served as `invoke console` serves it, the console takes a sample at once, with no page
    opened, every declared queue in it; with no sample in the window the page says so instead
    of drawing empty axes (this console samples once an hour: its first is removed)."""
    client = stack.redis.client()
    client.delete(stack.app.keyspace.queue_samples)
    console = dataclasses.replace(stack.console, samples_every=3600.0)
    served = Served(web.build(console))
    b = Browser(served.url)
    b.http.cookies.set(auth.COOKIE, stack.signed_in("val").http.cookies[auth.COOKIE])
    try:
        wait_for(lambda: bool(members(stack)), 10, "the console's first queue sample")
        [first] = members(stack)
        assert abs(float(first["at"]) - time.time()) < 120  # type: ignore[arg-type]
        assert set(first["queues"]) == {"payments", "maintenance", "ops"}  # type: ignore[arg-type]
        client.delete(stack.app.keyspace.queue_samples)
        page = b.get("/queues")
    finally:
        b.close()
        served.stop()
    assert page.status_code == 200
    assert "no samples yet in the last 6 h" in page.text
    assert "<svg" not in page.text
