"""Webhook notifications: the events, the Slack-compatible message, and its delivery.

A notification leaves as the ``notify.deliver`` task on the ``ops`` queue (so a slow or failing
receiver never slows a deploy or a beat tick) with two arguments: the *name* of the variable that
holds the webhook's URL (``SLACK_OPS_WEBHOOK``) and the message, already redacted. The worker
resolves the name from its own environment and ``.env`` (``MAQSAFY_ENV_FILE``, else the
project's), so the URL, which carries the receiver's token, is never in a broker message, a
log line, the run history or a failed-task row: those only ever see the variable's name.

Delivery retries with exponential backoff (1, 2, 4 ... s, at most :data:`MAX_RETRIES` times)
on what may pass: a refused or timed-out connection, HTTP 408, 429 and 5xx. Other answers (a
4xx: the URL is wrong or revoked) and an unset variable fail at once and land in
``failed_tasks``. A ``notify.deliver`` that finally fails is never itself notified as a failed
task (that would loop on a receiver that is down).

The message is what Slack's incoming webhooks accept (Mattermost, Rocket.Chat and Discord's
``/slack`` endpoint too): a ``text`` line, one attachment whose ``fields`` hold the payload
(title, value, short), and, for programs, Slack's message ``metadata``: ``event_type`` (the
event, ``_`` for ``.``: ``deploy_finished``) and ``event_payload`` (the payload, masked).

Events (:data:`EVENTS`): ``deploy.started``, ``deploy.finished``, ``deploy.failed``,
``deploy.rolled_back``, ``run.failed``, ``approval.requested``, ``task.failed``,
``queue.long_wait``.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from celery_app.errors import ConfigError, MaqsafyError
from celery_app.infra.redaction import Redactor

EVENTS = (
    "deploy.started",
    "deploy.finished",
    "deploy.failed",
    "deploy.rolled_back",
    "run.failed",
    "approval.requested",
    "task.failed",
    "queue.long_wait",
)
APP_EVENTS = ("task.failed", "queue.long_wait")  # the app's own; the rest come from runbooks/
TASK = "notify.deliver"
QUEUE = "ops"
MAX_RETRIES = 8
TIMEOUT = 10.0
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
EMPTY: tuple[Any, ...] = (None, "", [], {})
COLORS = {"finished": "good", "rolled_back": "warning", "started": "#439FE0"}


class DeliveryFailed(MaqsafyError):
    """The receiver did not take the message; `transient` says whether a retry may pass.

    The message names the variable and the HTTP status or socket error, never the URL."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def event_name(event: str) -> str:
    """`event` if it is one of :data:`EVENTS`, else ConfigError listing them."""
    if event not in EVENTS:
        raise ConfigError(
            f"unknown notification event {event!r}; expected one of: {', '.join(EVENTS)}"
        )
    return event


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "(none)"
    return str(value)


def message(
    event: str, payload: Mapping[str, Any], redactor: Redactor | None = None
) -> dict[str, Any]:
    """The Slack-compatible JSON for `event`: ``text`` (payload's ``summary``, else the event
    and environment), one attachment with a field per payload item; secrets masked throughout."""
    redactor = redactor or Redactor()
    clean: dict[str, Any] = redactor.value(dict(payload))
    environment = clean.get("environment", "")
    summary = clean.get("summary") or f"{event}" + (f" on {environment}" if environment else "")
    shown = {str(k): _value(v) for k, v in clean.items() if k != "summary" and v not in EMPTY}
    fields = [
        {"title": k, "value": v, "short": len(v) <= 40 and "\n" not in v} for k, v in shown.items()
    ]
    kind = event.split(".", 1)[1]
    color = "danger" if kind in ("failed", "long_wait") else COLORS.get(kind, "#888888")
    return {
        "text": f"[maqsafy] {summary}",
        "attachments": [
            {
                "fallback": summary,
                "color": color,
                "fields": fields,
                "footer": f"maqsafy-ops {event}",
            }
        ],
        "metadata": {"event_type": event.replace(".", "_"), "event_payload": clean},
    }


def webhook_url(variable: str, environ: Mapping[str, str] | None = None) -> str:
    """The URL in `variable` (this process's environment over its .env); ConfigError naming the
    variable (never its value) when it is unset or not an http(s) URL."""
    from celery_app.settings import env_file_path, read_dotenv

    if not VARIABLE.fullmatch(variable or ""):
        raise ConfigError(f"notify: {variable!r} is not a variable name")
    source = dict(os.environ if environ is None else environ)
    value = {**read_dotenv(env_file_path(source)), **source}.get(variable, "").strip()
    if not value:
        raise ConfigError(
            f"notify: ${{{variable}}} is not set where the ops worker runs (its environment or "
            ".env); set it to the webhook's URL"
        )
    if not value.startswith(("https://", "http://")):
        raise ConfigError(f"notify: ${{{variable}}} does not hold an http(s) URL")
    return value


def post(variable: str, body: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> int:
    """POST `body` as JSON to the webhook `variable` names; return the HTTP status.

    DeliveryFailed (transient or not) on any failure, its message free of the URL."""
    url = webhook_url(variable, environ)
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # http(s): webhook_url
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        code = exc.code
        exc.close()
        transient = code in (408, 429) or code >= 500
        raise DeliveryFailed(f"webhook ${{{variable}}} answered HTTP {code}", transient) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        text = type(reason).__name__ if not isinstance(reason, str) else "error"
        detail = getattr(reason, "strerror", None) or text
        raise DeliveryFailed(f"webhook ${{{variable}}} unreachable: {detail}", True) from None


def send(celery: Any, variable: str, body: Mapping[str, Any]) -> None:
    """Queue one delivery on ``ops`` (returns once the broker took it)."""
    celery.send_task(
        TASK,
        args=[variable, dict(body)],
        queue=QUEUE,
        retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
    )


def send_app_event(celery: Any, settings: Any, event: str, payload: Mapping[str, Any]) -> int:
    """Queue `event` for every webhook of the app's own (`MAQSAFY_NOTIFY_WEBHOOKS`); return how
    many deliveries were queued (0 when none is configured)."""
    variables = tuple(settings.notify_webhooks)
    if not variables:
        return 0
    body = message(event_name(event), payload, Redactor(settings.secrets))
    for variable in variables:
        send(celery, variable, body)
    return len(variables)
