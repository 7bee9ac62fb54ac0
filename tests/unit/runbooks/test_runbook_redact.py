"""Every secret is masked, including its URL-quoted forms, in text, values and log records."""

from __future__ import annotations

import logging

from celery_app.settings import load_settings
from runbooks.engine.redact import MASK, RedactingFilter, Redactor


def test_masks_plain_and_quoted_forms_longest_first() -> None:
    redactor = Redactor(["p@ss/word", "p@ss"])
    text = "url redis://:p%40ss%2Fword@h:6379 and p@ss/word and p@ss"
    masked = redactor.text(text)
    assert "p@ss" not in masked and "p%40ss" not in masked
    assert masked.count(MASK) == 3


def test_masks_nested_values() -> None:
    redactor = Redactor(["hunter2"])
    data = {"a": ["x hunter2 y", {"hunter2": 1}], "b": 3, "c": None}
    assert redactor.value(data) == {"a": [f"x {MASK} y", {MASK: 1}], "b": 3, "c": None}


def test_settings_secrets_are_known(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(
        {
            "MAQSAFY_VAR_DIR": str(tmp_path),
            "REDIS_HOST": "redis",
            "REDIS_PASSWORD": "s3cr3t-redis",
            "DATABASE_URL": "postgresql://app:db-pa55@db:5432/maqsafy",
        },
        dotenv=tmp_path / "none.env",
    )
    from runbooks.engine.redact import for_settings

    redactor = for_settings(settings)
    line = f"{settings.redis_url('cache')} {settings.database_url}"
    masked = redactor.text(line)
    assert "s3cr3t-redis" not in masked and "db-pa55" not in masked


def test_logging_filter_masks_formatted_messages() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "auth %s ok", ("hunter2",), None)
    RedactingFilter(Redactor(["hunter2"])).filter(record)
    assert record.getMessage() == f"auth {MASK} ok"


def test_logging_filter_masks_tracebacks() -> None:
    try:
        raise ValueError("token hunter2 rejected")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    RedactingFilter(Redactor(["hunter2"])).filter(record)
    formatted = logging.Formatter().format(record)
    assert "ValueError: token ******** rejected" in formatted and "hunter2" not in formatted
