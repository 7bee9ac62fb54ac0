"""Notification configuration: the inventory's `notify:` targets, the app's settings and the
Slack-compatible message; each mistake one line naming file:line:field or the variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from celery_app.errors import ConfigError
from celery_app.infra.redaction import Redactor
from celery_app.ops import notify
from celery_app.settings import load_settings
from runbooks.engine.inventory import load_inventory
from runbooks.errors import InventoryError, SecretLiteral

HOSTS = "hosts:\n  a: {connection: local}\n"


def inventory(tmp_path: Path, notify_block: str) -> Path:
    path = tmp_path / "staging.yml"
    path.write_text(f"environment: staging\n{notify_block}{HOSTS}")
    return path


def test_targets_keep_the_variable_name_and_the_events(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        "notify:\n"
        "  - url: ${SLACK_OPS}\n    events: [deploy.finished, deploy.failed]\n"
        "  - url: ${PAGER}\n",
    )
    targets = load_inventory(path, {}).notify  # the URLs need not be set on this machine
    assert [(t.variable, t.events) for t in targets] == [
        ("SLACK_OPS", ("deploy.finished", "deploy.failed")),
        ("PAGER", notify.EVENTS),
    ]
    assert targets[0].wants("deploy.failed") and not targets[0].wants("run.failed")


@pytest.mark.parametrize(
    ("block", "error", "where"),
    [
        (
            "notify:\n  - url: https://hooks.example.org/T0/B0/XYZ\n",
            SecretLiteral,
            ":3: notify[0].url",
        ),
        (
            "notify:\n  - url: ${HOOK:-https://x.example.org/t}\n",
            SecretLiteral,
            ":3: notify[0].url",
        ),
        (
            "notify:\n  - url: ${HOOK}\n    events: [deploy.done]\n",
            InventoryError,
            "notify[0].events",
        ),
        ("notify:\n  - url: ${HOOK}\n    when: always\n", InventoryError, "notify[0].when"),
        ("notify:\n  - ${HOOK}\n", InventoryError, "notify[0]"),
        ("notify: ${HOOK}\n", InventoryError, "notify"),
    ],
)
def test_mistakes_are_named_by_file_line_and_field(
    tmp_path: Path, block: str, error: type[Exception], where: str
) -> None:
    with pytest.raises(error) as caught:
        load_inventory(inventory(tmp_path, block), {})
    message = str(caught.value)
    assert where in message and "\n" not in message
    assert "hooks.example.org/T0/B0/XYZ" not in message  # a literal URL is never echoed


def test_app_settings_name_variables_and_thresholds(tmp_path: Path) -> None:
    base = {"MAQSAFY_ENV_FILE": str(tmp_path / "none"), "MAQSAFY_VAR_DIR": str(tmp_path)}
    default = load_settings(base)
    assert default.notify_webhooks == () and default.long_wait == (("payments", 60),)
    chosen = load_settings(
        {
            **base,
            "MAQSAFY_NOTIFY_WEBHOOKS": "A_HOOK, B_HOOK",
            "MAQSAFY_LONG_WAIT": "ops=5,payments=0",
        }
    )
    assert chosen.notify_webhooks == ("A_HOOK", "B_HOOK")
    assert chosen.long_wait == (("ops", 5), ("payments", 0))
    for name, value, says in [
        ("MAQSAFY_NOTIFY_WEBHOOKS", "https://hooks.example.org/T0/B0/XYZ", "names of variables"),
        ("MAQSAFY_LONG_WAIT", "emails=60", "QUEUE=SECONDS"),
        ("MAQSAFY_LONG_WAIT", "payments=soon", "whole number"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_settings({**base, name: value})
        assert str(caught.value).startswith(name) and says in str(caught.value)


def test_the_message_is_slack_compatible_and_masked() -> None:
    body = notify.message(
        "deploy.failed",
        {
            "summary": "deploy v2 on staging: failed",
            "hosts": ["h0: failed", "h1: ok"],
            "message": "host said REDIS_PASSWORD=hunter2-long and api_token: t0k3n-abc",
            "empty": "",
        },
        Redactor(["known-secret-value"]),
    )
    assert body["text"] == "[maqsafy] deploy v2 on staging: failed"
    [attachment] = body["attachments"]
    fields = {f["title"]: f for f in attachment["fields"]}
    assert set(fields) == {"hosts", "message"}  # summary is the text; empty values left out
    assert fields["hosts"]["value"] == "h0: failed\nh1: ok" and not fields["hosts"]["short"]
    assert attachment["color"] == "danger"
    assert body["metadata"]["event_type"] == "deploy_failed"  # Slack's metadata, for programs
    assert body["metadata"]["event_payload"]["hosts"] == ["h0: failed", "h1: ok"]
    dumped = json.dumps(body)
    assert "hunter2-long" not in dumped and "t0k3n-abc" not in dumped


def test_an_unknown_event_is_a_programming_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown notification event 'deploy\.done'"):
        notify.event_name("deploy.done")


def test_the_webhook_url_is_read_on_the_worker_and_never_shown(tmp_path: Path) -> None:
    environ = {"MAQSAFY_ENV_FILE": str(tmp_path / "none")}
    with pytest.raises(ConfigError, match=r"\$\{HOOK\} is not set"):
        notify.webhook_url("HOOK", environ)
    with pytest.raises(ConfigError) as caught:
        notify.webhook_url("HOOK", {**environ, "HOOK": "ftp://secret-host/T0"})
    assert "secret-host" not in str(caught.value)
    assert notify.webhook_url("HOOK", {**environ, "HOOK": "https://h/T"}) == "https://h/T"
