"""What the operator sees when a command cannot do its work: one `error:` line and an exit code.

Errors an operator can fix (the project's own, SQL that failed, a path or text the system
refused) become :class:`invoke.Exit` with code 2; a report's level becomes its exit code.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from invoke import Exit

from celery_app.errors import MaqsafyError
from celery_app.infra.redaction import mask_patterns
from celery_app.inputs import shown
from celery_app.ops.findings import EXIT_CODES, Level
from runbooks.errors import ApprovalPending, LocatedError

APPROVAL_PENDING = 3  # the exit code of a command that became an approval request

# A value from the command line the system refused as a path: one line, not a traceback.
PATH_ERRNOS = {"ENAMETOOLONG", "ENOENT", "ENOTDIR", "EISDIR", "EACCES", "ELOOP", "EINVAL"}


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn the project's errors, SQL that failed, and a path or text the system refused (a
    value typed on the command line) into a one-line message and exit code 2."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        yield
    except ApprovalPending as exc:  # not an error: nothing ran, a request waits (exit 3)
        raise Exit(str(exc), code=APPROVAL_PENDING) from None
    except LocatedError as exc:  # "FILE:LINE: FIELD: problem", the problem already masked
        raise Exit(f"error: {exc}", code=2) from None
    except MaqsafyError as exc:  # secret patterns masked: a message may quote a host's output
        raise Exit(f"error: {mask_patterns(str(exc))}", code=2) from None
    except OSError as exc:  # other OSErrors are not about a value given: a traceback
        if errno.errorcode.get(exc.errno or 0) not in PATH_ERRNOS or exc.filename is None:
            raise
        raise Exit(f"error: {shown(exc.filename)}: {exc.strerror}", code=2) from None
    except UnicodeError as exc:  # a name that cannot be encoded (idna: a label too long)
        raise Exit(f"error: a value cannot be used as text or a name: {exc}", code=2) from None
    except (OperationalError, ProgrammingError) as exc:  # down, or not migrated yet
        from celery_app import bootstrap
        from celery_app.infra.db import describe_error

        built = bootstrap.get.cache_info().currsize
        url = bootstrap.get().settings.database_url if built else "(DATABASE_URL)"
        raise Exit(f"error: {describe_error(exc, url)}", code=2) from None


def refuse(message: str, code: int = 2) -> NoReturn:
    """Stop with `error: MESSAGE` on stderr and `code` (2: the command line was refused)."""
    raise Exit(f"error: {message}", code=code)


def exit_with(code: int) -> None:
    """Exit with `code` unless it is 0 (the output is already printed)."""
    if code:
        raise Exit(code=code)


def exit_for(level: Level) -> None:
    """Exit 0 ok, 1 warning, 2 critical: a report's worst level as its exit code."""
    exit_with(EXIT_CODES[level])
