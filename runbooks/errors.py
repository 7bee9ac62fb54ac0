"""The runbook engine's exceptions, one tree, each message fit to show an operator as one line.

    MaqsafyError                    (celery_app.errors)
    └── RunbookError
        ├── LocatedError            bad input in a file: "FILE:LINE: FIELD: what is wrong"
        │   ├── InventoryError      a malformed inventory (unknown key, wrong type, bad host)
        │   │   └── SecretLiteral   a literal secret where a ${VAR} reference belongs
        │   └── BookError           a malformed runbook (schema, unknown action, bad params)
        │       └── ExpressionError a `when` expression or `{{ }}` template that does not parse
        ├── NotFound                no such runbook, environment, host pattern or run id
        ├── HostUnreachable         the host could not be reached; `.cause` says why:
        │                           unresolved | refused | auth | hostkey | timeout | network |
        │                           lost | ssh
        ├── NotReachable            an environment's Redis cannot be reached the way its
        │                           inventory says (`reach`); the message names the hop
        ├── StepError               a step could not run (template var undefined, timed out)
        ├── HistoryError            the run history cannot be read or written (not migrated?)
        ├── AccessDenied            no valid token, a role that does not allow it, an
        │                           approval that cannot be used (runbooks.access)
        └── ApprovalPending         not run: an approval request was made instead (`.approval`)

paramiko and socket errors are translated at the boundary (:mod:`runbooks.connect`).
Failed steps and unreachable hosts are results, not exceptions, once a run has started.
"""

from __future__ import annotations

from pathlib import Path

from celery_app.errors import MaqsafyError
from celery_app.infra.redaction import mask_patterns


class RunbookError(MaqsafyError):
    """Root of every error the runbook engine raises on purpose."""


class LocatedError(RunbookError):
    """Bad input at a place in a file; the message names the file, the line and the field."""

    def __init__(self, path: Path | str, line: int | None, field: str, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        # Masked here, the problem alone: the whole line reads "FIELD: problem", and a FIELD
        # such as vars.redis_password is a secret name whose "value" would be the problem.
        self.problem = problem = mask_patterns(problem)
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")


class InventoryError(LocatedError):
    """The inventory file is malformed."""


class SecretLiteral(InventoryError):
    """A secret field holds a literal value instead of a ${VAR} reference."""


class BookError(LocatedError):
    """The runbook file is malformed."""


class ExpressionError(BookError):
    """A `when` expression or a template does not parse."""


class NotFound(RunbookError):
    """A named runbook, environment, host or run does not exist."""


CAUSES = {
    "unresolved": "name does not resolve",
    "refused": "connection refused",
    "auth": "authentication failed",
    "hostkey": "host key not trusted",
    "timeout": "timed out",
    "network": "network unreachable",
    "lost": "connection lost",
    "ssh": "SSH error",
}


class HostUnreachable(RunbookError):
    """The host could not be reached; `cause` is one of :data:`CAUSES`."""

    def __init__(self, host: str, cause: str, detail: str) -> None:
        self.host = host
        self.cause = cause
        self.detail = detail
        super().__init__(f"{host}: {CAUSES.get(cause, cause)}: {detail}")


class NotReachable(RunbookError):
    """An environment's Redis is not reachable from here (reach: direct), or SSH to its app
    host or Redis from that host failed (reach: ssh); the message names the hop."""


class StepError(RunbookError):
    """A step could not be run as written (undefined variable, timeout)."""


class HistoryError(RunbookError):
    """The run history could not be read or written."""


class AccessDenied(RunbookError):
    """The operator may not do this: no valid token, a role too low, an unusable approval."""


class ApprovalPending(RunbookError):
    """Not run: the command needs a second person, and an approval request was made instead.

    `.approval` is the request's id; the message says what happens next.
    """

    def __init__(self, approval: int, message: str) -> None:
        self.approval = approval
        super().__init__(message)
