"""Mask every secret the configuration knows wherever text leaves the engine.

The secrets are the values Settings collected (passwords, tokens, credentials inside URLs:
``settings.secrets``) plus the environment values an inventory references from its secret fields.
Each is masked as given and in its URL-quoted forms, longest first, so that one secret that
contains another is masked whole. Apply :meth:`Redactor.text` / :meth:`Redactor.value` to
console lines, JSON documents, logs and history rows; :class:`RedactingFilter` does it for logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "********"


class Redactor:
    """Replace known secret values by :data:`MASK`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        found = set(self._secrets)
        for secret in secrets:
            if not secret:
                continue
            found.update({secret, quote(secret, safe=""), quote_plus(secret)})
        self._secrets = sorted(found, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def value(self, data: Any) -> Any:
        """Return `data` (str, list, tuple, dict, scalars) with secrets masked throughout."""
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {self.value(k): self.value(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.value(v) for v in data]
        if isinstance(data, bytes):
            return self.text(data.decode("utf-8", "replace"))
        return data


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            # A traceback's text is formatted after filters run; mask it here, as text.
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = self.redactor.text(message)
        record.args = None
        return True


def for_settings(settings: Any, extra: Iterable[str] = ()) -> Redactor:
    """A redactor for everything `settings` (a celery_app Settings) and `extra` know."""
    return Redactor([*getattr(settings, "secrets", ()), *extra])
