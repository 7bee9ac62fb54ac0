"""docker-compose.yml keeps the platform's Redis rules (no Docker engine runs here to start it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_whole_stack_is_there() -> None:
    assert set(compose()["services"]) >= {
        "redis",
        "postgres",
        "migrate",
        "redis-acl",
        "worker",
        "ops-runner",
        "beat",
        "console",
    }


def test_redis_is_internal_persistent_noeviction_and_password_protected() -> None:
    doc = compose()
    redis = doc["services"]["redis"]
    command = " ".join(redis["command"])
    assert "ports" not in redis, "Redis must not publish a port to the host"
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert '--requirepass "$$REDIS_PASSWORD"' in command
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert all(doc["networks"][n].get("internal") is True for n in redis["networks"])


def test_no_service_publishes_the_data_stores_and_no_literal_secret() -> None:
    doc = compose()
    for name in ("redis", "postgres"):
        assert "ports" not in doc["services"][name]
    text = (ROOT / "docker-compose.yml").read_text()
    for match in re.finditer(r"^\s*(\w*PASSWORD\w*):\s*(\S+)", text, re.MULTILINE):
        assert match.group(2).startswith("${"), f"{match.group(1)} must come from the environment"


def test_workers_and_beat_wait_for_the_migration() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["invoke", "db.migrate"]
    for name in ("worker", "ops-runner", "beat"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
        assert needs["redis-acl"]["condition"] == "service_completed_successfully"
        assert needs["redis"]["condition"] == "service_healthy"


def test_each_long_running_process_is_its_own_redis_user() -> None:
    """Security: the payment worker cannot reach ops, the ops runner cannot reach payments."""
    services = compose()["services"]
    users = {
        name: re.match(r"redis://([^:]*):", services[name]["environment"]["REDIS_URL"]).group(1)  # type: ignore[union-attr]
        for name in ("worker", "ops-runner", "beat")
    }
    assert users == {
        "worker": "maqsafy-worker",
        "ops-runner": "maqsafy-ops",
        "beat": "maqsafy-worker",
    }
    worker, runner = services["worker"]["command"], services["ops-runner"]["command"]
    assert worker[worker.index("-Q") + 1] == "payments,maintenance"
    assert runner[runner.index("-Q") + 1] == "ops" and "runbooks.ops_queue.runner" in runner
    assert "MAQSAFY_OPS_SIGNING_KEY" in services["ops-runner"]["environment"]
    assert "MAQSAFY_OPS_SIGNING_KEY" not in services["worker"]["environment"]
    assert services["redis-acl"]["command"] == ["invoke", "redis.acl", "--apply"]


def test_the_console_is_published_on_loopback_only_and_signs_in_as_the_admin_tool() -> None:
    doc = compose()
    console = doc["services"]["console"]
    assert console["command"][:2] == ["invoke", "console"]
    assert console["ports"] == ["127.0.0.1:8400:8400"], "never on the host's other addresses"
    assert re.match(r"redis://maqsafy-admin:\$\{", console["environment"]["REDIS_URL"])
    needs = console["depends_on"]
    assert needs["migrate"]["condition"] == "service_completed_successfully"
    assert needs["redis-acl"]["condition"] == "service_completed_successfully"
    assert "backend" in console["networks"]
    for name in ("redis", "postgres"):  # the data stores stay on the internal network alone
        assert doc["services"][name]["networks"] == ["backend"]
