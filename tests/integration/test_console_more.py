"""The console's Redis page and its bulk retry of failed tasks, over real HTTP, a real
redis-server that wants a password (in every role's URL) and SQLite (the same stack as
test_console.py, from its `serving`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from runbooks.console import app as web
from runbooks.console import wiring
from runbooks.engine import history
from tests.integration.test_console import Stack, serving
from tests.support.console import Browser, Served
from tests.support.redis_app import app_env, build_app
from tests.support.services import free_port

REDIS_SECRET = "redis-pw-never-on-a-page"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serving(tmp_path_factory.mktemp("console-more"), "sqlite", REDIS_SECRET) as stack:
        yield stack


def post_ids(b: Browser, ids: list[str], **more: str) -> httpx.Response:
    """The bulk form as a browser sends it: one `ids` field per ticked row."""
    return b.http.post("/failed/retry", data={"ids": ids, "csrf": b.csrf, **more})


def sent_tasks(stack: Stack, queue: str) -> list[str]:
    """The task names waiting in `queue`'s list on the broker, oldest first."""
    raw = stack.redis.client().lrange(queue, 0, -1)
    return [json.loads(m)["headers"]["task"] for m in reversed(raw)]


def test_redis_page_signed_out_is_sent_to_sign_in(stack: Stack) -> None:
    done = stack.browser().get("/redis")
    assert done.status_code == 303 and done.headers["location"] == "/signin?next=%2Fredis"


def test_redis_page_shows_findings_memory_and_keyspace_never_the_password(stack: Stack) -> None:
    client = stack.redis.client()
    client.config_set("maxmemory", str(64 * 2**20))
    client.config_set("maxmemory-policy", "noeviction")
    client.set(stack.app.keyspace.cache("console", "k"), "v" * 1000)
    b = stack.signed_in("val")  # a viewer: the page is read-only
    page = b.get("/redis")
    assert page.status_code == 200, page.text[:500]
    text = page.text
    assert REDIS_SECRET not in text and REDIS_SECRET not in str(page.headers)
    port = stack.redis.port
    assert f"redis://:********@127.0.0.1:{port}/0" in text  # the doctor's name for it
    assert "roles: broker, cache, sessions, ratelimit, locks" in text
    assert "<code>REDIS_BROKER_URL</code>" in text
    assert "authenticated as ACL user &#39;default&#39;" in text and "PONG" in text
    assert re.search(r'id="level">(OK|WARN|CRITICAL)<', text)
    assert '<td class="maxmemory">64.0 MiB (' in text
    assert '<td class="policy">noeviction</td>' in text
    assert re.search(r'<td class="peak">[0-9.]+ MiB</td>', text)
    sessions = re.search(r'id="role-sessions"><td>sessions</td><td class="keys">(\d+)<', text)
    cache = re.search(r'id="role-cache"><td>cache</td><td class="keys">(\d+)<', text)
    assert sessions and int(sessions.group(1)) >= 1  # val's own session, at least
    assert cache and int(cache.group(1)) >= 1
    assert 'href="/redis"' in b.get("/").text  # in the nav


def test_bulk_retry_sends_the_ticked_tasks_recorded_once(stack: Stack) -> None:
    first, second = stack.fail(task="bulk.first"), stack.fail(task="bulk.second")
    b = stack.signed_in("ana")
    listing = b.get("/failed").text
    for row in (first, second):
        assert f'name="ids" value="{row}" form="bulk"' in listing
        assert f'action="/failed/{row}/retry"' in listing  # the row's own button stays
    before = stack.runs()
    done = post_ids(b, [str(first), str(second)])
    assert done.status_code == 303 and done.headers["location"].startswith("/failed?run=")
    after = b.get(done.headers["location"]).text
    assert "retried 2 failed tasks" in after and "by ana" in after
    for row in (first, second):
        assert f'id="failed-{row}"' not in after and not stack.exists(row)
    assert sent_tasks(stack, "payments")[-2:] == ["bulk.first", "bulk.second"]
    assert stack.runs() == before + 1
    run = history.get_run(stack.app.sessions, int(done.headers["location"].rsplit("=", 1)[1]))
    assert (run["name"], run["operator"], run["status"]) == ("failed.retry", "ana", "ok")
    assert run["arguments"]["ids"] == [first, second]
    assert run["arguments"]["via"] == "console"


def test_bulk_retry_refuses_without_changing_anything(stack: Stack) -> None:
    rows = [stack.fail(task="bulk.kept"), stack.fail(task="bulk.kept")]
    ids = [str(r) for r in rows]
    b = stack.signed_in("ana")
    waiting = stack.redis.client().llen("payments")
    before = stack.runs()
    no_token = b.http.post("/failed/retry", data={"ids": ids})
    assert no_token.status_code == 403
    assert post_ids(b, ids, csrf="not-the-token").status_code == 403
    bad = post_ids(b, [*ids, "abc"])
    assert bad.status_code == 400 and "abc" in bad.text
    unknown = post_ids(b, [*ids, "99999999"])
    assert unknown.status_code == 404 and "99999999" in unknown.text
    assert post_ids(b, []).status_code == 400
    too_many = post_ids(b, [str(rows[0] + n) for n in range(51)])
    assert too_many.status_code == 400 and "at most 50" in too_many.text
    viewer = stack.signed_in("val")
    refused = post_ids(viewer, ids)
    assert refused.status_code == 403 and "val is a viewer" in refused.text
    assert 'name="ids"' not in viewer.get("/failed").text  # and no boxes to tick
    assert all(stack.exists(r) for r in rows)
    assert stack.runs() == before and stack.redis.client().llen("payments") == waiting


def test_retry_all_of_a_queue_needs_its_box_ticked(stack: Stack) -> None:
    ops = [stack.fail(task="all.ops", queue="ops") for _ in range(2)]
    other = stack.fail(task="all.other", queue="maintenance")
    b = stack.signed_in("ana")
    page = b.get("/failed", params={"queue": "ops"}).text
    assert 'id="retry-all"' in page and 'name="queue" value="ops"' in page
    by_task = b.get("/failed", params={"task": "all.ops"}).text
    assert 'id="retry-all"' not in by_task and 'id="retry-all-hint"' in by_task
    before = stack.runs()
    unconfirmed = b.post("/failed/retry", {"scope": "all", "queue": "ops"})
    assert unconfirmed.status_code == 400 and "tick the box" in unconfirmed.text
    unknown = b.post("/failed/retry", {"scope": "all", "confirm": "all", "queue": "x"})
    assert unknown.status_code == 400 and "unknown queue" in unknown.text
    assert stack.runs() == before and all(stack.exists(r) for r in ops)

    done = b.post("/failed/retry", {"scope": "all", "confirm": "all", "queue": "ops"})
    assert done.status_code == 303
    assert not any(stack.exists(r) for r in ops) and stack.exists(other)
    assert sent_tasks(stack, "ops")[-2:] == ["all.ops", "all.ops"]
    run = history.get_run(stack.app.sessions, int(done.headers["location"].rsplit("=", 1)[1]))
    assert (run["arguments"]["ids"], run["arguments"]["queue"]) == ("all", "ops")
    assert run["operator"] == "ana" and run["arguments"]["via"] == "console"


def test_a_redis_that_is_down_is_a_finding_not_an_error(stack: Stack) -> None:
    """The cache role on a port nothing listens on: the page still answers, that server is
    CRITICAL with its causes, and the keyspace says it could not be read."""
    dead = free_port()
    env = app_env(stack.app.settings.var_dir.parent, stack.redis.url)
    app = build_app({**env, "REDIS_CACHE_URL": f"redis://127.0.0.1:{dead}/0"})
    served = Served(web.build(wiring.wire(app, stack.console.celery)))
    val = stack.signed_in("val")  # the same SQL and sessions Redis: her cookie works there
    try:
        with httpx.Client(base_url=served.url, cookies=val.http.cookies) as http:
            page = http.get("/redis")
    finally:
        served.stop()
        app.engine.dispose()
    assert page.status_code == 200, page.text[:500]
    assert 'id="level">CRITICAL<' in page.text
    assert f'redis://127.0.0.1:{dead}/0 <span class="level critical">' in page.text
    assert "roles: cache (<code>REDIS_CACHE_URL</code>)" in page.text
    assert 'id="keyspace-problem">not read: keyspace report (Redis) failed' in page.text
    assert REDIS_SECRET not in page.text
