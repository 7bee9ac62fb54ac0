"""A run's output as it happens, over HTTP: the events a real run writes to Redis are streamed
by the console's server-sent events endpoint while the run runs; and the start form and the
"Run for real" guard (real uvicorn, real redis-server with a password, SQLite).

A run is held mid-way by a step that waits for a file the test creates, so what is read from
the stream is read while the run is still running, never after its end.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from celery_app.bootstrap import Container
from celery_app.celery import make_app
from celery_app.dev.worker_process import start_worker
from runbooks.access import operators
from runbooks.access.context import signed_in_as
from runbooks.console import app as web
from runbooks.console import wiring
from runbooks.engine import history
from runbooks.engine.redact import MASK
from runbooks.service import run_steps
from tests.support.console import Browser, Held, Served, hold, password
from tests.support.redis_app import app_env, build_app, migrated_app
from tests.support.services import RedisServer, free_port, start_redis

PASSWORD = "live-events-redis-pw-51c0"  # in every role's URL: the redactor masks it
KEY = "k" * 16 + "ops-signing-key-for-tests-0000000"
ACCOUNTS = {"root": "admin", "ana": "operator", "bob": "operator", "val": "viewer"}
BOOK = "gated"


@dataclass
class Stack:
    app: Container
    redis: RedisServer
    served: Served
    tmp: Path
    env: dict[str, str]

    def browser(self, name: str | None) -> Browser:
        b = Browser(self.served.url)
        if name:
            assert b.sign_in(name, password(name)).status_code == 303
        return b

    def queued(self) -> int:
        return int(self.redis.client().llen("ops"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("console-live")
    redis = start_redis(tmp / "redis", password=PASSWORD)
    books = tmp / "books"
    books.mkdir()
    (books / f"{BOOK}.yml").write_text(
        f"name: {BOOK}\ndescription: says hello\nhosts: all\n"
        "steps:\n  - name: hello\n    shell: {cmd: echo hello, read_only: true}\n"
    )
    env = app_env(tmp, redis.url, MAQSAFY_OPS_SIGNING_KEY=KEY, MAQSAFY_OPS_BOOKS_DIR=str(books))
    try:
        app = migrated_app(env)
        celery = make_app(app.settings)
        for name, role in ACCOUNTS.items():
            operators.add(app.sessions, name, role, password(name), "test")
        served = Served(web.build(wiring.wire(app, celery, workers_timeout=0.2, environ=env)))
        try:
            yield Stack(app, redis, served, tmp, env)
        finally:
            served.stop()
            celery.close()
            app.engine.dispose()
    finally:
        redis.stop()


def held_run(stack: Stack, name: str) -> Held:
    """A local run (`name`) whose first step prints a secret and whose second waits."""
    first = {"name": "before the gate", "shell": f"echo 'redis password={PASSWORD}'"}
    return hold(stack.app, name, [first], stack.tmp, "ana")


def frames(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The server-sent events of `response` as they arrive: id, event and data (parsed)."""
    frame: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in frame:
                frame["data"] = json.loads(frame["data"])
                yield frame
            frame = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            frame[field] = value


def test_a_running_runs_events_stream_as_they_happen_masked_and_end_with_it(
    stack: Stack,
) -> None:
    held = held_run(stack, "live-stream")
    ana = stack.browser("ana")
    with ana.http.stream("GET", f"/runs/{held.run_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = frames(response)
        first = next(seen)
        assert first["event"] == "batch" and "localhost" in first["data"]["line"]
        step = next(seen)
        # read while the run waits at its gate: it cannot have come from the run's end
        assert history.run_status(stack.app.sessions, held.run_id) == "running"
        assert not held.gate.exists()
        assert step["event"] == "step" and "before the gate" in step["data"]["line"]
        assert step["data"]["status"] == "changed"
        assert f"redis password={MASK}" in step["data"]["line"]

        page = ana.get(f"/runs/{held.run_id}")  # the page shows what came so far, then streams
        assert page.status_code == 200 and "before the gate" in page.text
        assert '<script src="/static/run_live.js" defer></script>' in page.text
        assert '<noscript><meta http-equiv="refresh"' in page.text
        assert f'data-events="/runs/{held.run_id}/events?after={step["id"]}"' in page.text

        result = held.release()
        rest = list(seen)  # the stream ends with the run
    assert result.ok
    assert [f["event"] for f in rest] == ["step", "host", "end"]
    assert "at the gate" in rest[0]["data"]["line"]
    assert rest[-1]["data"]["status"] == "ok"
    for frame in [first, step, *rest]:
        assert PASSWORD not in json.dumps(frame)

    # reconnecting after the batch: only what came after it
    again = ana.get(f"/runs/{held.run_id}/events", headers={"last-event-id": first["id"]})
    ids = [f["id"] for f in frames(again)]
    assert ids == [step["id"], *(f["id"] for f in rest)]

    # the finished run's page is SQL's history, with no live part
    page = ana.get(f"/runs/{held.run_id}")
    assert 'id="live"' not in page.text and "run_live.js" not in page.text
    assert "at the gate" in page.text and 'id="steps"' in page.text


def test_the_stream_is_signed_in_only_and_refuses_bad_ids(stack: Stack) -> None:
    held = held_run(stack, "live-refusals")
    try:
        out = stack.browser(None).get(f"/runs/{held.run_id}/events")
        assert out.status_code == 303 and out.headers["location"].startswith("/signin?next=")
        ana = stack.browser("ana")
        assert ana.get("/runs/999999/events").status_code == 404
        assert ana.get("/runs/x1/events").status_code == 404
        bad = ana.get(f"/runs/{held.run_id}/events", headers={"last-event-id": "1-0 or 1=1"})
        assert bad.status_code == 400 and "bad event id" in bad.text
        bad = ana.get(f"/runs/{held.run_id}/events?after=')--")
        assert bad.status_code == 400
    finally:
        held.release()


def test_a_console_told_to_exit_ends_its_open_streams(stack: Stack) -> None:
    """A running run's stream does not hold the server until the run ends (Ctrl-C works)."""
    console = stack.served.app.state.console
    served = Served(web.build(console))
    held = held_run(stack, "live-shutdown")
    try:
        b = Browser(served.url)
        assert b.sign_in("ana", password("ana")).status_code == 303
        with b.http.stream("GET", f"/runs/{held.run_id}/events") as response:
            seen = frames(response)
            assert next(seen)["event"] == "batch"
            served.server.should_exit = True
            served.thread.join(10)
            assert not served.thread.is_alive(), "the open stream held the server"
            assert [f["event"] for f in seen] in (["step"], [])  # ended, with no `end`
        assert history.run_status(stack.app.sessions, held.run_id) == "running"
        b.close()
    finally:
        held.release()


def test_a_run_whose_event_store_is_gone_runs_and_is_recorded(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """The events' Redis does not answer: the run is not failed nor held, only logged."""
    lost = build_app({**stack.env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    caplog.set_level(logging.WARNING, "runbooks.engine.run_events")
    with signed_in_as("ana", "run", {}):
        result, _ = run_steps(
            lost,
            "no-events",
            [{"name": f"step {i}", "shell": "true"} for i in range(3)],
            environment="local",
            environ={"HOME": str(stack.tmp)},
        )
    lost.engine.dispose()
    assert result.ok
    run = history.get_run(stack.app.sessions, result.run_id or 0)
    assert run["status"] == "ok" and len(run["steps"]) == 3
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "live events not written" in warned[0], warned
    # the console (its Redis fine) still ends a stream with nothing in it, from SQL's row
    done = stack.browser("ana").get(f"/runs/{result.run_id}/events")
    assert [f["data"]["status"] for f in frames(done)] == ["ok"]


def test_the_start_form_sends_a_check_run_as_the_operator(stack: Stack) -> None:
    stack.redis.client().delete("ops")
    ana = stack.browser("ana")
    form = ana.get("/runs/new")
    assert form.status_code == 200
    assert f'<option value="{BOOK}">' in form.text and '<option value="local">' in form.text
    for data, field in (
        ({"book": "nope", "env": "local"}, "book:"),
        ({"book": BOOK, "env": "prod"}, "environment:"),
        ({"book": BOOK, "env": "local", "limit": "a b;rm"}, "limit:"),
    ):
        bad = ana.post("/runs/new", data)
        assert bad.status_code == 400 and field in bad.text, bad.text
    assert ana.post("/runs/new", {"book": BOOK, "env": "local"}, csrf="").status_code == 403
    viewer = stack.browser("val").post("/runs/new", {"book": BOOK, "env": "local"})
    assert viewer.status_code == 403
    assert stack.queued() == 0  # nothing was sent

    sent = ana.post("/runs/new", {"book": BOOK, "env": "local", "limit": "localhost"})
    assert sent.status_code == 303 and sent.headers["location"].startswith("/runs/sent/")
    body = sent_body(stack)
    assert (body["book"], body["check"], body["limit"], body["requested_by"]) == (
        BOOK,
        True,
        "localhost",
        "ana",
    )
    waiting = ana.get(sent.headers["location"])  # no worker here: the page waits, refreshing
    assert waiting.status_code == 200 and 'http-equiv="refresh"' in waiting.text
    assert ana.get("/runs/sent/not-a-request").status_code == 400


def sent_body(stack: Stack) -> dict[str, Any]:
    """The signed request the console put on the ops queue (taken off it)."""
    message = json.loads(stack.redis.client().rpop("ops") or b"{}")
    args = json.loads(base64.b64decode(message["body"]))[0]
    assert stack.queued() == 0, "one request was sent, not more"
    body: dict[str, Any] = args[0]["body"]
    return body


def checked(stack: Stack, operator: str = "ana", **change: Any) -> int:
    """A check run of BOOK on local as the ops worker records it (`change`: what differs)."""
    values: dict[str, Any] = {
        "book": BOOK, "limit": None, "check": True, "remote": True, "status": "ok",
        "started_at": dt.datetime.now(dt.UTC), "kind": "runbook",
    }  # fmt: skip
    values.update(change)
    arguments = {"book": values["book"], "env": "local", "limit": values["limit"],
                 "tags": [], "skip_tags": [], "check": values["check"],
                 "remote": values["remote"], "requested_by": operator}  # fmt: skip
    run_id = history.start_run(
        stack.app.sessions, values["kind"], BOOK, "local", arguments, values["check"],
        operator=operator, started_at=values["started_at"],
    )  # fmt: skip
    history.finish_command(stack.app.sessions, run_id, status=values["status"])
    return run_id


def test_run_for_real_only_a_fresh_ok_check_of_ones_own(stack: Stack) -> None:
    stack.redis.client().delete("ops")
    ana = stack.browser("ana")
    same = {"book": BOOK, "env": "local", "limit": ""}
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)
    refusals = {
        checked(stack, check=False): (409, "not a check run"),
        checked(stack, remote=False): (409, "not a check run"),
        checked(stack, status="failed"): (409, "ended failed"),
        checked(stack, "bob"): (403, "started by bob"),
        checked(stack, started_at=old): (409, "older than 15 minutes"),
    }
    for run_id, (status, why) in refusals.items():
        page = ana.get(f"/runs/{run_id}")
        assert page.status_code == 200 and "Run for real" not in page.text
        done = ana.post(f"/runs/{run_id}/real", same)
        assert (done.status_code, why in done.text) == (status, True), (run_id, done.text)
    good = checked(stack)
    for other in ({**same, "limit": "localhost"}, {**same, "env": "staging"}, {"env": "local"}):
        done = ana.post(f"/runs/{good}/real", other)
        assert done.status_code == 409 and "run for real what was checked" in done.text
    assert ana.post(f"/runs/{good}/real", same, csrf="").status_code == 403
    assert ana.post("/runs/999999/real", same).status_code == 404
    assert ana.post("/runs/abc/real", same).status_code == 404
    assert stack.browser("bob").post(f"/runs/{good}/real", same).status_code == 403
    assert stack.queued() == 0  # none of these sent anything

    assert "Run for real" in ana.get(f"/runs/{good}").text
    sent = ana.post(f"/runs/{good}/real", same)
    assert sent.status_code == 303 and sent.headers["location"].startswith("/runs/sent/")
    body = sent_body(stack)
    assert (body["book"], body["environment"], body["check"], body["requested_by"]) == (
        BOOK,
        "local",
        False,
        "ana",
    )
    again = ana.post(f"/runs/{good}/real", same)  # once per check: a double click sends one
    assert again.status_code == 409 and "run for real already" in again.text
    assert stack.queued() == 0


def test_no_ops_worker_that_could_run_it_refuses_in_one_line_and_sends_nothing(
    stack: Stack,
) -> None:
    """A node consuming `ops` without the runbook task would discard the request: the form
    and Run for real refuse as `run --remote` does, nothing is sent, the check stays usable."""
    stack.redis.client().delete("ops")
    bare = start_worker("bare@live", stack.tmp / "bare.log", queues="ops", env=stack.env)
    try:
        bare.wait_ready()
        ana = stack.browser("ana")
        good = checked(stack)
        for path, data in (
            ("/runs/new", {"book": BOOK, "env": "local"}),
            (f"/runs/{good}/real", {"book": BOOK, "env": "local", "limit": ""}),
            (f"/runs/{good}/real", {"book": BOOK, "env": "local", "limit": ""}),  # not spent
        ):
            done = ana.post(path, data)
            assert done.status_code == 503, (path, done.text)
            assert "without the runbook.run task" in done.text and "nothing was sent" in done.text
        assert stack.queued() == 0
    finally:
        bare.kill()
