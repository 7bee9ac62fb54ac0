"""The money rules, without any service."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from celery_app.errors import InvalidRequest
from celery_app.money import ledger


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (12.5, "not a float"),
        (5.0, "not a float"),
        (math.nan, "NaN"),
        (math.inf, "not a float"),
        (-100, "positive"),
        (0, "positive"),
        (ledger.MAX_AMOUNT + 1, "exceeds the limit"),
        (10**30, "exceeds the limit"),
        ("12.50", "whole number"),
        ("abc", "whole number"),
        ("", "whole number"),
        ("-5", "whole number"),
        ("١٢", "whole number"),  # Arabic-Indic digits are not accepted silently
        (True, "whole number"),
        (None, "whole number"),
        ([100], "whole number"),
    ],
)
def test_bad_amounts_are_refused_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        ledger.parse_amount(value)


@pytest.mark.parametrize(("value", "expected"), [(1, 1), ("1250", 1250), (" 99 ", 99)])
def test_whole_halalas_are_accepted(value: object, expected: int) -> None:
    assert ledger.parse_amount(value) == expected


@pytest.mark.parametrize("key", ["", " ", "a b", "x" * 129, "-lead", "k\n", None, 5, "k;DROP"])
def test_malformed_keys_are_refused(key: object) -> None:
    with pytest.raises(InvalidRequest, match="idempotency key"):
        ledger.parse_key(key)


def test_transfer_is_balanced_and_same_account_is_refused() -> None:
    posting = ledger.transfer(1, 2, 700)
    assert posting.deltas() == {1: -700, 2: 700}
    with pytest.raises(InvalidRequest, match="differ"):
        ledger.transfer(1, 1, 700)


def test_unbalanced_posting_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="sum to zero"):
        ledger.Posting((ledger.Entry(1, -5), ledger.Entry(2, 4)))


def test_shortfall_applies_only_to_wallets_and_merchants() -> None:
    kinds = {1: "wallet", 2: "merchant", 3: "clearing"}
    assert ledger.shortfall(ledger.transfer(1, 2, 500), {1: 300, 2: 0}, kinds) == 200
    assert ledger.shortfall(ledger.transfer(3, 1, 500), {3: 0, 1: 0}, kinds) == 0


def test_reconcile_names_each_discrepancy() -> None:
    found = ledger.reconcile(
        {1: 100, 2: -5, 3: 0},
        {1: 90, 2: -5},
        [(7, 3)],
        {1: "wallet", 2: "wallet", 3: "clearing"},
    )
    described = [d.describe() for d in found]
    assert described == [
        "account 1: balance 100 but its entries sum to 90",
        "account 2: balance -5 is below zero",
        "posting 7: entries sum to 3, not 0",
    ]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("top_up"), st.integers(0, 4), st.integers(1, 50_000)),
        st.tuples(st.just("purchase"), st.integers(0, 4), st.integers(1, 50_000)),
        st.tuples(st.just("settle"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@given(operations)
def test_any_sequence_keeps_the_books_balanced(ops: list[tuple[str, int, int]]) -> None:
    clearing, settlement, merchant = 100, 101, 102
    wallets = list(range(5))
    kinds = {w: "wallet" for w in wallets} | {
        clearing: "clearing",
        settlement: "settlement",
        merchant: "merchant",
    }
    balances = dict.fromkeys(kinds, 0)
    entries: dict[int, int] = dict.fromkeys(kinds, 0)
    for kind, wallet, amount in ops:
        if kind == "settle":
            posting, _ = ledger.settlement({merchant: balances[merchant]}, settlement)
        elif kind == "top_up":
            posting = ledger.transfer(clearing, wallet, amount)
        else:
            posting = ledger.transfer(wallet, merchant, amount)
        if posting is None or ledger.shortfall(posting, balances, kinds):
            continue
        ledger.apply(posting, balances)
        for entry in posting.entries:
            entries[entry.account] += entry.amount
    assert ledger.reconcile(balances, entries, [], kinds) == []
    assert sum(balances.values()) == 0
