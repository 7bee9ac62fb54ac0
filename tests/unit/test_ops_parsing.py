"""Operator input for cache, queue and failed-task commands: parsed or refused in one line."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from celery_app.errors import InvalidRequest, Refused
from celery_app.infra.keyspace import Keyspace
from celery_app.ops import failed_tasks, queues
from celery_app.stores import cache

KS = Keyspace("maqsafy")
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        ("maqsafy:cache:*", "maqsafy:cache:"),
        ("maqsafy:cache:u?ers:*", "maqsafy:cache:u"),
        ("maqsafy:cache:\\*x*", "maqsafy:cache:*x"),
        ("[a]bc", ""),
        ("plain", "plain"),
    ],
)
def test_literal_prefix(pattern: str, literal: str) -> None:
    assert cache.literal_prefix(pattern) == literal


@pytest.mark.parametrize(
    ("namespace", "pattern", "scan"),
    [
        (None, None, "maqsafy:cache:*"),
        ("users", None, "maqsafy:cache:users:*"),
        (None, "maqsafy:cache:users:*", "maqsafy:cache:users:*"),
    ],
)
def test_clear_pattern(namespace: str | None, pattern: str | None, scan: str) -> None:
    assert cache.clear_pattern(KS, namespace, pattern) == scan


def test_clear_pattern_escapes_a_glob_prefix() -> None:
    assert cache.clear_pattern(Keyspace("app[1]")) == "app\\[1\\]:cache:*"


@pytest.mark.parametrize(
    ("pattern", "reach"),
    [
        ("*", "outside the cache"),
        ("unacked*", "broker keys"),
        ("payments", "broker keys"),
        ("maqsafy:session:*", "sessions keys"),
        ("maqsafy:lock:*", "locks keys"),
        ("maqsafy:rl:*", "ratelimit keys"),
        ("maqsafy:cache*", "outside the cache"),
    ],
)
def test_unsafe_patterns_are_refused(pattern: str, reach: str) -> None:
    with pytest.raises(Refused, match=reach):
        cache.clear_pattern(KS, pattern=pattern)


def test_namespace_and_pattern_together_is_an_error() -> None:
    with pytest.raises(InvalidRequest):
        cache.clear_pattern(KS, "users", "maqsafy:cache:*")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - dt.timedelta(hours=2)),
        ("3d", NOW - dt.timedelta(days=3)),
        ("45m", NOW - dt.timedelta(minutes=45)),
        ("1w", NOW - dt.timedelta(weeks=1)),
        ("2026-11-27", dt.datetime(2026, 11, 27, tzinfo=dt.UTC)),
        ("2026-11-27T08:30", dt.datetime(2026, 11, 27, 8, 30, tzinfo=dt.UTC)),
        ("2026-11-27T08:30Z", dt.datetime(2026, 11, 27, 8, 30, tzinfo=dt.UTC)),
        ("2026-11-27T11:30+03:00", dt.datetime(2026, 11, 27, 8, 30, tzinfo=dt.UTC)),
    ],
)
def test_parse_since(text: str, expected: dt.datetime) -> None:
    assert failed_tasks.parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "2x", "yesterday", "2026-13-01", "-2h", "2026-11-27T25:00"])
def test_malformed_since_is_one_line(text: str) -> None:
    with pytest.raises(InvalidRequest, match="--since") as info:
        failed_tasks.parse_since(text, NOW)
    assert "\n" not in str(info.value)


def test_parse_ids() -> None:
    assert failed_tasks.parse_ids("12") == [12]
    assert failed_tasks.parse_ids("12,13 14, 12") == [12, 13, 14]
    for bad in ["", "x", "1,x", "-1", "0", "1.5"]:
        with pytest.raises(InvalidRequest):
            failed_tasks.parse_ids(bad)
    with pytest.raises(InvalidRequest):
        failed_tasks.parse_id("1,2")


def test_queue_names_and_priority_lists() -> None:
    assert queues.priority_lists("ops") == ["ops", "ops\x06\x163", "ops\x06\x166", "ops\x06\x169"]
    assert queues.known_queue("payments") == "payments"
    with pytest.raises(InvalidRequest, match="unknown queue 'pay'"):
        queues.known_queue("pay")


def test_stamp_sent_at_keeps_an_existing_stamp() -> None:
    headers: dict[str, object] = {"sent_at": 1.0}
    queues.stamp_sent_at(headers=headers)
    assert headers["sent_at"] == 1.0
    fresh: dict[str, object] = {}
    queues.stamp_sent_at(headers=fresh)
    assert isinstance(fresh["sent_at"], float)


def test_metrics_scrapes_share_one_status_read_per_window() -> None:
    from celery_app.ops.metrics import cached

    reads: list[int] = []

    def read() -> Any:
        reads.append(1)
        return len(reads)

    within = cached(read, seconds=3600)
    assert [within(), within(), within()] == [1, 1, 1]  # one read answers the window
    every = cached(read, seconds=0)
    assert [every(), every()] == [2, 3]
