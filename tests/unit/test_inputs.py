"""celery_app.inputs: the one parser for numbers, ids and names; anything else is one line."""

from __future__ import annotations

import ast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from celery_app import inputs
from celery_app.errors import ConfigError, InvalidRequest

# str.isdigit() says yes to all of these; int() reads the last three as 2, 12 and 100.
NOT_ASCII_DIGITS = ["²", "١٢", "١٠٠", "𝟙", "½", "Ⅻ"]
NOT_NUMBERS = ["", " ", "x", "-1", "+1", "1.5", "1e3", "0x10", "1_000", "12 3", *NOT_ASCII_DIGITS]


@given(st.integers(min_value=0, max_value=inputs.ID_HIGH))
def test_every_number_in_range_reads_back(value: int) -> None:
    assert inputs.whole_number(str(value), "--n") == value
    assert inputs.whole_number(f" {value:08d} ", "--n") == value  # spaces, leading zeros


@given(st.integers(min_value=0, max_value=1000), st.integers(min_value=0, max_value=1000))
def test_the_range_is_enforced(value: int, high: int) -> None:
    if value <= high:
        assert inputs.whole_number(str(value), "--n", 0, high) == value
    else:
        with pytest.raises(InvalidRequest, match=f"--n: expected a whole number from 0 to {high}"):
            inputs.whole_number(str(value), "--n", 0, high)


@given(st.text())
def test_any_text_is_a_number_or_one_line(text: str) -> None:
    try:
        value = inputs.whole_number(text, "--n", 0, 10**6)
    except InvalidRequest as exc:
        assert "\n" not in str(exc)
    else:
        assert text.strip().isascii() and str(value) == (text.strip().lstrip("0") or "0")


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_what_is_not_ascii_digits_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="--hours: expected a whole number from 0 to 100"):
        inputs.whole_number(text, "--hours", 0, 100)
    assert inputs.natural(text) is None


def test_empty_says_so_and_a_long_value_is_cut() -> None:
    with pytest.raises(InvalidRequest, match=r"got an empty value$"):
        inputs.whole_number("", "--hours", 0, 100)
    with pytest.raises(InvalidRequest) as info:
        inputs.whole_number("9" * 5000, "--hours", 0, 100)  # past int()'s 4,300-digit limit
    assert str(info.value).endswith("'" + "9" * 79 + "…'")


def test_a_setting_gets_config_error() -> None:
    with pytest.raises(ConfigError, match="REDIS_PORT: expected a whole number from 1 to 65535"):
        inputs.whole_number("٦٣٧٩", "REDIS_PORT", 1, 65535, error=ConfigError)


def test_ids() -> None:
    assert inputs.record_id(" 12 ", "run", "`invoke history`") == 12
    assert inputs.record_id(str(inputs.ID_HIGH), "run", "x") == inputs.ID_HIGH
    assert inputs.record_ids("12,13 14, 12", "failed-task", "failed.list") == [12, 13, 14]
    for bad in ["0", "-1", str(inputs.ID_HIGH + 1), "²", "١٢", "1.5", "x"]:
        with pytest.raises(InvalidRequest, match=r"bad run id .* for --retry-failed: run ids are"):
            inputs.record_id(bad, "run", "`invoke history`", " for --retry-failed")
    for bad in ["", " , ", "1,x"]:
        with pytest.raises(InvalidRequest, match="failed-task id"):
            inputs.record_ids(bad, "failed-task", "failed.list")


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0.0), ("25", 25.0), ("25%", 25.0), ("12.5", 12.5), ("100", 100.0)]
)
def test_percentages(text: str, expected: float) -> None:
    assert inputs.percentage(text, "--max-fail") == expected


@pytest.mark.parametrize("text", ["", "101", "100.5", "-1", "nan", "inf", "1e1", "١٠", "25%%"])
def test_bad_percentages(text: str) -> None:
    with pytest.raises(InvalidRequest, match="--max-fail: expected a percentage from 0 to 100"):
        inputs.percentage(text, "--max-fail")


def test_names() -> None:
    assert inputs.environment_name("staging-2_b") == "staging-2_b"
    for bad in ["", "a" * 65, "../etc", "a.b", "stagïng", "a b"]:
        with pytest.raises(InvalidRequest, match="expected a name like staging"):
            inputs.environment_name(bad)
    assert inputs.node_names("w1, w-2,w_3") == ["w1", "w-2", "w_3"]
    for bad in ["2", "0", "-1", "", ",", "1w", "w 1", "wé"]:
        with pytest.raises(InvalidRequest, match="--nodes takes node names like w1,w2"):
            inputs.node_names(bad)


@given(st.text())
def test_shown_is_one_quoted_line_of_at_most_80_characters(text: str) -> None:
    quoted = inputs.shown(text)
    assert "\n" not in quoted and quoted[0] == quoted[-1]
    value = ast.literal_eval(quoted)
    assert len(value) <= 80  # the value itself, cut with an ellipsis
    assert value == text if len(text) <= 80 else value == text[:79] + "…"


def test_metrics_listen_on_loopback_or_warn_or_refuse() -> None:
    from celery_app.ops.metrics import listen_host

    assert listen_host("127.0.0.1") and listen_host("localhost") and listen_host("::1")
    assert listen_host("10.0.3.7") is False  # served, with a warning
    for wildcard in ["0", "*", "0.0.0.0", "::", "0x0", "00"]:
        with pytest.raises(InvalidRequest, match="binds every address"):
            listen_host(wildcard)
    for bad in ["", "../../etc/passwd", "a" * 300, "[::1]", "host name"]:
        with pytest.raises(InvalidRequest, match="--host: expected a host name or IP address"):
            listen_host(bad)
