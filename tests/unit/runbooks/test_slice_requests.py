"""Signed slice requests: the slice travels signed, a malformed one is refused, age is apart."""

from __future__ import annotations

import time

import pytest

from runbooks.ops_queue import requests as ops_requests
from runbooks.ops_queue.requests import MAX_AGE, RequestRefused, SliceRef
from runbooks.ops_queue.slices import hosts_of

ENV = {"MAQSAFY_OPS_SIGNING_KEY": "u" * 40, "MAQSAFY_OPS_ENVIRONMENTS": "local"}
FIELDS = {"book": "ping", "environment": "local"}
RUN = "ab" * 16


def test_a_slice_is_signed_and_verified_with_its_place() -> None:
    signed = ops_requests.sign(FIELDS, "ana", ENV, part=SliceRef(RUN, 2, 3))
    envelope = ops_requests.verify(signed, ENV)
    assert envelope.slice == SliceRef(RUN, 2, 3) and envelope.fields["book"] == "ping"
    plain = ops_requests.verify(ops_requests.sign(FIELDS, "ana", ENV), ENV)
    assert plain.slice is None


@pytest.mark.parametrize(
    "part",
    [
        {"request": RUN, "index": 3, "count": 3},
        {"request": RUN, "index": -1, "count": 3},
        {"request": RUN, "index": 0, "count": 65},
        {"request": RUN, "index": True, "count": 2},
        {"request": "not-hex", "index": 0, "count": 2},
        "0/2",
    ],
)
def test_a_malformed_slice_is_refused(part: object) -> None:
    key = ENV["MAQSAFY_OPS_SIGNING_KEY"].encode()
    body = {**ops_requests.sign(FIELDS, "ana", ENV)["body"], "slice": part}
    message = {"body": body, "signature": ops_requests._mac(key, body)}  # signed, yet malformed
    with pytest.raises(RequestRefused, match="malformed slice"):
        ops_requests.verify(message, ENV)


def test_moving_a_slice_breaks_the_signature() -> None:
    signed = ops_requests.sign(FIELDS, "ana", ENV, part=SliceRef(RUN, 0, 2))
    signed["body"]["slice"] = {"request": RUN, "index": 1, "count": 2}
    with pytest.raises(RequestRefused, match="bad signature"):
        ops_requests.verify(signed, ENV)


def test_age_is_judged_apart_for_a_slice_delivered_again() -> None:
    old = time.time() - MAX_AGE - 60
    signed = ops_requests.sign(FIELDS, "ana", ENV, now=old, part=SliceRef(RUN, 0, 2))
    with pytest.raises(RequestRefused, match="expired"):
        ops_requests.verify(signed, ENV)
    envelope = ops_requests.verify(signed, ENV, fresh=False)
    assert ops_requests.age_refusal(envelope.issued_at).startswith("expired")


def test_slices_take_every_nth_host_and_cover_each_once() -> None:
    names = [f"h{i}" for i in range(7)]
    parts = [hosts_of(names, SliceRef(RUN, i, 3)) for i in range(3)]
    assert parts == [["h0", "h3", "h6"], ["h1", "h4"], ["h2", "h5"]]
    assert hosts_of(names[:1], SliceRef(RUN, 2, 3)) == []  # more slices than hosts: empty
