"""The money rules, in plain Python: no Celery, Redis or SQLAlchemy here.

Amounts are integers in halalas (1 SAR = 100 halalas), never floats. A posting is a balanced set
of entries (they sum to zero); a wallet or merchant may not go below zero, while the platform's
clearing and settlement accounts may (they mirror money held outside the ledger).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from celery_app.errors import InvalidRequest
from celery_app.inputs import natural, shown

MAX_AMOUNT = 100_000_000  # 1,000,000 SAR in halalas: far above any canteen top-up or purchase
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
ACCOUNT_KINDS = ("wallet", "merchant", "clearing", "settlement")
NON_NEGATIVE_KINDS = ("wallet", "merchant")


def parse_amount(value: object) -> int:
    """Return `value` as a positive whole number of halalas, or raise InvalidRequest.

    Accepted: an int, or a string of digits. Refused: floats (even 5.0), bools, NaN,
    zero, negatives, values above MAX_AMOUNT and anything non-numeric.
    """
    if isinstance(value, bool):
        raise InvalidRequest(f"amount must be a whole number of halalas, got {value!r}")
    if isinstance(value, float):
        given = "NaN" if math.isnan(value) else repr(value)
        raise InvalidRequest(
            f"amount must be a whole number of halalas, not a float ({given}); "
            "send 1250 for 12.50 SAR"
        )
    if isinstance(value, str):
        digits = value.strip()
        if not digits.isascii() or not digits.isdigit():
            raise InvalidRequest(f"amount must be a whole number of halalas, got {shown(value)}")
        number = natural(digits, MAX_AMOUNT)  # never int() of a 5,000-digit string
        if number is None:
            raise InvalidRequest(
                f"amount {shown(digits)} exceeds the limit of {MAX_AMOUNT} halalas"
            )
        value = number
    if not isinstance(value, int):
        raise InvalidRequest(f"amount must be a whole number of halalas, got {value!r}")
    if value <= 0:
        raise InvalidRequest(f"amount must be positive, got {value}")
    if value > MAX_AMOUNT:
        raise InvalidRequest(f"amount {value} exceeds the limit of {MAX_AMOUNT} halalas")
    return value


def parse_key(value: object) -> str:
    """Return a valid idempotency key (1-128 of letters, digits and ._:-) or raise."""
    if not isinstance(value, str) or not KEY_PATTERN.fullmatch(value):
        raise InvalidRequest(
            f"idempotency key must be 1-128 characters of letters, digits and ._:- "
            f"(starting with a letter or digit), got {value!r}"
        )
    return value


@dataclass(frozen=True)
class Entry:
    """A signed amount on one account: negative debits, positive credits."""

    account: int
    amount: int


@dataclass(frozen=True)
class Posting:
    """A balanced set of entries; construction refuses an unbalanced one."""

    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError("a posting needs entries")
        if any(not isinstance(e.amount, int) or e.amount == 0 for e in self.entries):
            raise ValueError("entry amounts must be non-zero integers")
        if sum(e.amount for e in self.entries) != 0:
            raise ValueError("a posting's entries must sum to zero")

    def deltas(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for entry in self.entries:
            out[entry.account] = out.get(entry.account, 0) + entry.amount
        return out


def transfer(debit: int, credit: int, amount: int) -> Posting:
    """Move `amount` from `debit` to `credit`."""
    if debit == credit:
        raise InvalidRequest("debit and credit accounts must differ")
    amount = parse_amount(amount)
    return Posting((Entry(debit, -amount), Entry(credit, amount)))


def shortfall(posting: Posting, balances: Mapping[int, int], kinds: Mapping[int, str]) -> int:
    """Return how much a non-negative account would go below zero (0: the posting fits)."""
    worst = 0
    for account, delta in posting.deltas().items():
        if kinds[account] in NON_NEGATIVE_KINDS:
            after = balances[account] + delta
            worst = max(worst, -after)
    return worst


def insufficient(short: int | str) -> str:
    """The recorded reason of a rejected request that is `short` halalas short."""
    return f"insufficient funds: short by {short} halalas"


def apply(posting: Posting, balances: dict[int, int]) -> None:
    """Add the posting's deltas to `balances` in place."""
    for account, delta in posting.deltas().items():
        balances[account] = balances.get(account, 0) + delta


def settlement(
    merchant_balances: Mapping[int, int], settlement_account: int
) -> tuple[Posting | None, int]:
    """Pay every merchant's positive balance out to `settlement_account` as one posting."""
    entries = [Entry(m, -b) for m, b in sorted(merchant_balances.items()) if b > 0]
    total = -sum(e.amount for e in entries)
    if not entries:
        return None, 0
    return Posting((*entries, Entry(settlement_account, total))), total


@dataclass(frozen=True)
class Discrepancy:
    """One way the ledger disagrees with itself."""

    kind: str  # balance_mismatch | unbalanced_posting | negative_balance
    subject: int
    expected: int
    actual: int

    def describe(self) -> str:
        if self.kind == "balance_mismatch":
            return (
                f"account {self.subject}: balance {self.actual} but its entries sum to "
                f"{self.expected}"
            )
        if self.kind == "unbalanced_posting":
            return f"posting {self.subject}: entries sum to {self.actual}, not 0"
        return f"account {self.subject}: balance {self.actual} is below zero"


def reconcile(
    balances: Mapping[int, int],
    entry_sums: Mapping[int, int],
    posting_sums: Iterable[tuple[int, int]],
    kinds: Mapping[int, str],
) -> list[Discrepancy]:
    """Compare stored balances with their entries and check every posting sums to zero."""
    found: list[Discrepancy] = []
    for account, balance in sorted(balances.items()):
        expected = entry_sums.get(account, 0)
        if balance != expected:
            found.append(Discrepancy("balance_mismatch", account, expected, balance))
        if kinds.get(account) in NON_NEGATIVE_KINDS and balance < 0:
            found.append(Discrepancy("negative_balance", account, 0, balance))
    for posting, total in posting_sums:
        if total != 0:
            found.append(Discrepancy("unbalanced_posting", posting, 0, total))
    return found
