"""What a person types, parsed in one place: numbers, ids, names; anything else refused in one line.

Every command-line flag (tasks.py), every setting (settings.py) and every service that takes
text from a person parses it here, never with a bare ``int()``:

- **numbers** are ASCII digits only: ``str.isdigit()`` also accepts ``'²'`` and Arabic-Indic
  digits (``int('١٠٠')`` is 100); an empty value is refused, not taken as a default; the length
  is checked before ``int()`` runs, so a 5,000-digit value is out of range, never a ValueError
  from Python's integer-string limit;
- **ids** (failed tasks, runs) are whole numbers from 1 to 2**63-1, SQL's BIGINT;
- **names** (environments, worker nodes) are short ASCII words that start where the consumer
  needs them to: an environment name becomes a file name, a node name must not read as a
  number (Celery takes ``--nodes 2`` as a node count);
- :func:`shown` is how an error echoes a value: quoted and cut to 80 characters, on one line.

Errors are :class:`~celery_app.errors.InvalidRequest` (settings pass ConfigError): the command
line turns them into one ``error:`` line and exit code 2. Plain Python, no imports beyond the
error tree, so both the app and runbooks/ use it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

from celery_app.errors import InvalidRequest, MaqsafyError

SHOWN_CHARS = 80
ID_HIGH = 2**63 - 1  # SQL BIGINT
ENV_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
PERCENT = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,3})?)%?")


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """`value` as an error message echoes it: quoted, one line, at most `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text)


def natural(text: str | int, high: int = ID_HIGH) -> int | None:
    """The number ASCII digits `text` spell (spaces around allowed) if it is at most `high`.

    None for anything else: empty, signs, ``²``, other scripts' digits, too many digits.
    """
    if isinstance(text, bool):
        return None
    raw = str(text).strip()
    if not raw.isascii() or not raw.isdigit():
        return None
    significant = raw.lstrip("0") or "0"
    if len(significant) > len(str(high)):  # out of range: never int() of a long string
        return None
    value = int(significant)
    return value if value <= high else None


def whole_number(
    text: str | int,
    what: str,
    low: int = 0,
    high: int = ID_HIGH,
    error: type[MaqsafyError] = InvalidRequest,
) -> int:
    """Parse a number such as ``--hours 24`` from `low` to `high`; else `error` naming `what`."""
    value = natural(text, high)
    if value is None or value < low:
        got = "an empty value" if not str(text).strip() else shown(text)
        raise error(f"{what}: expected a whole number from {low} to {high}, got {got}")
    return value


def record_id(text: str | int, kind: str, listed_by: str, flag: str = "") -> int:
    """Parse one record id (1 to 2**63-1) as `listed_by` shows them; `flag` names the flag."""
    value = natural(text)
    if not value:
        raise InvalidRequest(
            f"bad {kind} id {shown(str(text).strip())}{flag}: "
            f"{kind} ids are whole numbers as {listed_by} shows them"
        )
    return value


def record_ids(text: str | Iterable[str | int], kind: str, listed_by: str) -> list[int]:
    """Parse ids given as ``12``, ``12,13`` or ``12 13`` (duplicates dropped, order kept)."""
    parts = re.split(r"[,\s]+", text.strip()) if isinstance(text, str) else list(text)
    ids = [record_id(part, kind, listed_by) for part in parts if str(part).strip()]
    if not ids:
        raise InvalidRequest(f"give at least one {kind} id (see {listed_by})")
    return list(dict.fromkeys(ids))


def percentage(text: str | float, what: str, error: type[MaqsafyError] = InvalidRequest) -> float:
    """Parse ``25``, ``25%`` or ``12.5`` as a percentage from 0 to 100; else `error`."""
    match = PERCENT.fullmatch(str(text).strip())
    if match is None or float(match.group(1)) > 100:
        got = "an empty value" if not str(text).strip() else shown(text)
        raise error(f"{what}: expected a percentage from 0 to 100, got {got}")
    return float(match.group(1))


def environment_name(text: str, error: type[MaqsafyError] = InvalidRequest) -> str:
    """An inventory environment's name (it becomes a file name): 1-64 letters, digits, _ or -."""
    if not ENV_NAME.fullmatch(text):
        raise error(
            f"environment {shown(text)}: expected a name like staging "
            "(1 to 64 letters, digits, _ or -)"
        )
    return text


def node_names(text: str, what: str = "--nodes") -> list[str]:
    """Worker node names ``w1,w2``: each starts with a letter (Celery reads ``2`` as a count)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not NODE_NAME.fullmatch(n)]
    if not names or bad:
        raise InvalidRequest(
            f"{what} takes node names like w1,w2 (a letter, then up to 63 letters, digits, _ or "
            f"-; a bare number would be read as a node count), got {shown(bad[0] if bad else text)}"
        )
    return names


HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def listen_addresses(host: str) -> list[IPAddress]:
    """The addresses a `--host` to listen on resolves to, in resolver order; InvalidRequest for
    what is neither a host name nor an IP address, or does not resolve."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOST_NAME.fullmatch(host):
            got = shown(host) if host else "an empty value"
            raise InvalidRequest(
                f"--host: expected a host name or IP address such as 127.0.0.1, got {got}"
            ) from None
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise InvalidRequest(f"--host {shown(host)}: cannot resolve it ({exc})") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
