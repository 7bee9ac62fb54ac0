"""Redis error replies map to the causes the platform's page and Redis's own messages give."""

from __future__ import annotations

import pytest
import redis

from celery_app.ops.redis_causes import CAUSES, classify
from celery_app.ops.redis_facts import Endpoint

REPLIES = [
    (redis.ResponseError("MISCONF Redis is configured to save RDB snapshots, but ..."), "misconf"),
    (
        redis.exceptions.BusyLoadingError(
            "Redis is loading the dataset in memory", status_code="LOADING"
        ),
        "loading",
    ),
    (redis.ResponseError("LOADING Redis is loading the dataset in memory"), "loading"),
    (redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'."), "oom"),
    (redis.ResponseError("READONLY You can't write against a read only replica."), "readonly"),
    (redis.ConnectionError("max number of clients reached"), "maxclients"),
    (redis.ConnectionError("Error 111 connecting to redis:6379. Connection refused."), "refused"),
    (redis.TimeoutError("Timeout connecting to server"), "timeout"),
    (redis.ResponseError("ERR unknown command 'FOO'"), "error"),
]


@pytest.mark.parametrize(("exc", "kind"), REPLIES)
def test_classify(exc: redis.RedisError, kind: str) -> None:
    assert classify(exc) == kind
    assert CAUSES[kind].causes and CAUSES[kind].next_check


def test_the_pages_symptoms_keep_its_words() -> None:
    assert CAUSES["resolve"].summary.format(host="redis").startswith("getaddrinfo for redis failed")
    assert "Redis requires authentication but the password is missing" in " ".join(
        CAUSES["refused"].causes
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis:6379/2", "redis://:********@redis:6379/2"),
        ("rediss://app:s3cret@redis:6380/0", "rediss://app:********@redis:6380/0"),
        ("redis://redis", "redis://redis:6379/0"),
        ("unix:///var/run/redis.sock?db=3", "unix:///var/run/redis.sock?db=3"),
    ],
)
def test_endpoint_display_never_holds_the_password(url: str, shown: str) -> None:
    assert Endpoint.parse(url).display == shown
