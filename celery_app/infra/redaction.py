"""Mask secrets in text that leaves the process: by known value and by pattern, in one place.

A :class:`Redactor` masks two kinds of secret:

- **Known values**: what Settings collected (``settings.secrets``) and what an inventory
  referenced, each as given, URL-quoted and JSON-escaped, longest first (so a secret that contains
  another is masked whole).
- **Patterns**, for secrets only a host knows (a host printing its ``REDIS_PASSWORD``, its
  database URL, ``export API_TOKEN=...``):

  - a URL's password: ``scheme://user:PASSWORD@host`` and ``redis://:PASSWORD@host``;
  - an assignment to a secret name (the name rule below): ``NAME=value``, ``NAME: value``,
    ``NAME = value``, ``"name": "value"``, ``'name': 'value'``, ``export NAME='value'``; the
    separator must follow the name (spaces and tabs allowed), the value stays on its line;
    a quoted value is masked to its closing quote, an unquoted one up to whitespace or a quote
    (a ``)`` or ``,`` after it goes too: better lost punctuation than a leaked character);
    ``Authorization: Bearer VALUE`` keeps its scheme word;
  - a flag: ``--requirepass value``, ``--password=value``, ``--pass value`` (redis-cli),
    ``redis-cli ... -a value``;
  - where Redis itself reads a password: a redis.conf ``requirepass``/``masterauth`` line,
    ``CONFIG SET requirepass value``, the value line after ``requirepass`` in a ``CONFIG GET``
    reply, ``"AUTH" "value"`` in MONITOR output.

  Values that hold nothing secret are kept, so the output still says what is configured: empty,
  ``null``/``none``/``true``/``false``, a ``${VAR}`` or ``$VAR`` reference, a ``<placeholder>``,
  and a mask already there. After an unquoted ``NAME:``, an ordinary English word (it, a, the,
  not, missing, ...: :data:`PROSE_WORDS`) starts a sentence, not a value, and is kept too
  ("this worker holds no MAQSAFY_OPS_SIGNING_KEY: it runs no requests"). Everything masked
  becomes :data:`MASK`.

**The name rule** (:func:`secret_name`, also the inventory's: a literal under such a name is
refused). The name is cut into lowercase segments at ``_ - .`` and camelCase humps; then:

0. A name whose last segment says where a secret is or what is known about it, rather than the
   secret itself, is not secret: ``password_env`` (holds a variable's *name*), ``api_token_file``,
   ``password_ok``, ``token_ttl`` (:data:`POINTERS`). A redis.acl report shows the first.
1. A segment containing ``password``, ``passwd``, ``passphrase``, ``secret`` or ``credential``
   makes it secret wherever it sits (``SECRET_KEY_BASE``, ``has_password``): these words name
   nothing else.
2. The short words count only at the end of the name (after dropping a version-like trailer such
   as ``_previous``, ``_old``, ``_2``), because elsewhere they describe something that is not a
   secret: ``SSH_AUTH_SOCK`` (a socket path), ``KEY_PREFIX``, ``host_key_check``, ``TOKEN_TTL``.

   - a last segment ending in ``token`` (``api_token``, ``GITHUB_TOKEN``, ``token``), except a
     ``fencing_token``, which is a counter the money code shows on purpose; not ``tokens``
     (a rate limiter's bucket);
   - a last segment ending in ``pass``, ``pwd`` or ``auth`` with something before it
     (``redis_pass``, ``db_pwd``, ``redis_auth``, ``requirepass``, ``masterauth``): the bare
     words are ordinary (``PWD=/srv/app`` in every ``env`` dump, ``auth: ok`` in a report),
     and so are ``bypass``, ``compass``, ``OLDPWD``;
   - a last segment ending in ``authorization`` (an HTTP header: the credentials follow it);
   - ``key`` as the last segment after a qualifier (``api_key``, ``signing_key``,
     ``MAQSAFY_OPS_SIGNING_KEY_PREVIOUS``, ``apikey``), except qualifiers that make it an
     identifier, not a credential: ``idempotency_key`` (a payment's own id, which failed-task
     rows must keep for their retry to post the same payment once), ``cache_key``, ``lock_key``,
     ``routing_key``, ``primary_key``, ``public_key``, ``host_key``, ``ssh_key`` (a path) and the
     like (:data:`NOT_SECRET_KEYS`). A bare ``key`` is a Redis key name or an SSH key's path.

The rule errs toward masking: a name that ends in ``_key`` and is not in the list is masked. It
lives here, not in ``runbooks/``, because the app (failed-task rows) needs it and never imports
the ops tool.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "********"

STRONG_WORDS = ("password", "passwd", "passphrase", "secret", "credential")
NOT_SECRET_KEYS = frozenset(
    {
        "idempotency", "cache", "lock", "counter", "routing", "partition", "sort", "primary",
        "foreign", "public", "host", "ssh", "redis", "queue", "dedup", "dedupe", "row", "lookup",
        "index", "hash", "shard", "unique", "cursor", "group", "task", "result", "message",
        "object", "map", "dict", "config", "sample", "next", "first", "last", "max", "min",
    }
)  # fmt: skip
POINTERS = frozenset(
    {"env", "envs", "var", "vars", "file", "files", "path", "dir", "name", "names", "id", "ids",
     "ok", "set", "required", "len", "length", "count", "policy", "prompt", "hint", "ttl", "age",
     "expiry", "expires", "at"}
)  # fmt: skip
NOT_SECRET_WORDS = frozenset({"bypass", "compass", "oldpwd", "fencingtoken"})
TRAILERS = frozenset(
    {"previous", "prev", "old", "new", "current", "next", "backup", "fallback", "value", "raw",
     "b64", "base64", "hex"}
)  # fmt: skip
AUTH_SCHEMES = ("bearer", "basic", "digest", "negotiate", "token")
KEPT_VALUES = frozenset({"", "null", "none", "nil", "true", "false", "~"})
# After `NAME:` these words start a sentence ("holds no SIGNING_KEY: it runs no requests"),
# never a value worth a secret.
PROSE_WORDS = frozenset(
    {"a", "an", "the", "it", "is", "are", "was", "not", "no", "missing", "required", "empty",
     "unset", "set", "expected", "must", "should", "cannot", "can", "will", "needs", "see", "use",
     "from", "in", "on", "at", "of", "for", "to", "with", "without", "invalid", "wrong", "refused"}
)  # fmt: skip


def _segments(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [s for s in re.split(r"[^a-z0-9]+", spaced.lower()) if s]


def secret_name(name: object) -> bool:
    """True when a variable, field or flag called `name` holds a secret (the module's rule)."""
    return isinstance(name, str) and _secret_name(name)


@functools.lru_cache(maxsize=4096)  # field names repeat: a page masks thousands of the same few
def _secret_name(name: str) -> bool:
    segments = _segments(name)
    if not segments:
        return False
    if segments[-1] in POINTERS and len(segments) > 1:
        return False  # password_env, api_token_file: where the secret is, not the secret
    if any(word in segment for segment in segments for word in STRONG_WORDS):
        return True
    while len(segments) > 1 and (segments[-1] in TRAILERS or segments[-1].isdigit()):
        segments = segments[:-1]
    last, before = segments[-1], segments[:-1]
    if last in NOT_SECRET_WORDS:
        return False
    if last.endswith("authorization"):
        return True
    if last.endswith("token"):
        return not (before and before[-1] == "fencing")
    if last.endswith(("pass", "pwd", "auth")):
        return bool(before) or last not in ("pass", "pwd", "auth")
    if last.endswith("apikey"):
        return True
    if last == "key":
        return bool(before) and before[-1] not in NOT_SECRET_KEYS
    return False


def kept(value: str) -> bool:
    """True for a value that holds no secret: empty, null, a boolean, a reference, a mask."""
    text = value.strip().strip("'\"")
    return any(
        candidate.lower() in KEPT_VALUES
        or set(candidate) == {"*"}
        or bool(re.fullmatch(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|<[^<>]*>", candidate))
        for candidate in (text, text.rstrip(",;)]}").strip())  # `password=null,` in a list
    )


# A value: "double quoted" (escapes honoured, so JSON stays valid), 'single quoted', a bare word
# (backslash escapes included), or a quote that never closes (to the end of the word).
_VALUE = r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|(?:\\.|[^\s'"\\])+|["'][^\s'"]*)"""
_HINT = re.compile(r"pass|pwd|auth|token|key|secret|credential|://|redis-cli", re.I)
_URL = re.compile(r"\b(?P<head>[a-z][a-z0-9+.\-]*://[^\s/:@'\"]*:)(?P<value>[^\s@'\"]+)(?=@)", re.I)
_ASSIGNMENT = re.compile(
    r"(?<![\w.\-$])(?P<head>(?P<q>[\"']?)(?P<name>[A-Za-z_][\w.\-]*)(?P=q)"
    r"[ \t]*(?P<sep>=(?!=)|:(?![:/]))[ \t]*"
    rf"(?P<scheme>(?:{'|'.join(AUTH_SCHEMES)})[ \t]+(?=\S))?)" + _VALUE,
    re.I,
)
_FLAG = re.compile(r"(?<![\w-])(?P<head>--(?P<name>[A-Za-z][\w-]*)(?:=|[ \t]+))" + _VALUE)
_REDIS_CLI_A = re.compile(r"(?P<head>\bredis-cli\b[^\n]*?[ \t]-a[ \t]+)" + _VALUE)
_DIRECTIVE = re.compile(
    r"(?P<head>(?:^[ \t]*|\bconfig[ \t]+set[ \t]+)(?:requirepass|masterauth)[ \t]+)" + _VALUE,
    re.I | re.M,
)
_CONFIG_GET = re.compile(
    r"(?P<head>^[ \t]*(?:\d+\)[ \t]*)?\"?(?:requirepass|masterauth)\"?[ \t]*\r?\n"
    r"[ \t]*(?:\d+\)[ \t]*)?)" + _VALUE,
    re.I | re.M,
)
_MONITOR_AUTH = re.compile(r"(?P<head>\"auth\"(?:[ \t]+\"[^\"\n]*\")?[ \t]+)" + _VALUE, re.I)


def _masked(value: str) -> str:
    """`value` masked, its quotes kept (a quote that never closes is kept too)."""
    if kept(value):
        return value
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[0] + MASK + value[0]
    if value[:1] in ("'", '"'):
        return value[0] + MASK
    return MASK


def _plain(match: re.Match[str]) -> str:
    return match.group("head") + _masked(match.group("value"))


def _assignment(match: re.Match[str]) -> str:
    if not secret_name(match.group("name")):
        return match.group(0)
    if match.group("sep") == ":" and match.group("value").lower() in PROSE_WORDS:
        return match.group(0)
    head, scheme, value = match.group("head"), match.group("scheme"), match.group("value")
    if scheme and not _segments(match.group("name"))[-1].endswith("authorization"):
        # `password: basic x`: the first word is part of the value, not a scheme word.
        return head[: len(head) - len(scheme)] + MASK
    return head + _masked(value)


def _flag(match: re.Match[str]) -> str:
    name = match.group("name")
    if secret_name(name) or name.lower() in ("pass", "auth"):
        return _plain(match)
    return match.group(0)


def _url(match: re.Match[str]) -> str:
    value = match.group("value")
    return match.group("head") + (value if kept(value) else MASK)


def mask_patterns(text: str) -> str:
    """`text` with every secret the patterns recognise replaced by :data:`MASK`."""
    if not _HINT.search(text):
        return text
    text = _URL.sub(_url, text)
    text = _DIRECTIVE.sub(_plain, text)
    text = _CONFIG_GET.sub(_plain, text)
    text = _MONITOR_AUTH.sub(_plain, text)
    text = _REDIS_CLI_A.sub(_plain, text)
    text = _FLAG.sub(_flag, text)
    return _ASSIGNMENT.sub(_assignment, text)


class Redactor:
    """Mask known secret values, then secret patterns, in text and in nested values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        found = set(self._secrets)
        for secret in secrets:
            if not secret:
                continue
            escaped = json.dumps(secret)[1:-1]  # as it sits inside a JSON string
            found.update({secret, quote(secret, safe=""), quote_plus(secret), escaped})
        self._secrets = sorted(found, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    @property
    def known(self) -> int:
        """How many secret spellings it masks (grows with :meth:`add`: a key for what it masked)."""
        return len(self._secrets)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return mask_patterns(text)

    def value(self, data: Any) -> Any:
        """Return `data` (str, list, tuple, dict, scalars) with secrets masked throughout; every
        value under a secret name (a dict key, by :func:`secret_name`) is masked whole."""
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {
                self.value(k): _whole(v) if secret_name(k) else self.value(v)
                for k, v in data.items()
            }
        if isinstance(data, list | tuple):
            return [self.value(v) for v in data]
        if isinstance(data, bytes):
            return self.text(data.decode("utf-8", "replace"))
        return data


def _whole(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _whole(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_whole(v) for v in data]
    if data is None or isinstance(data, bool):
        return data
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    return text if kept(text) else MASK


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with `secrets` and every secret pattern masked (a one-off :class:`Redactor`)."""
    return Redactor(secrets).text(text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and its traceback.

    Put it on handlers (a logger's own filters do not see records propagated from children)."""

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
