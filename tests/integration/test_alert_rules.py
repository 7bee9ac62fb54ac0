"""The Prometheus alert rules are valid and tested: `promtool check rules` on alerts.yml, then
`promtool test rules` on alerts.test.yml, where every alert must fire on its sick series and stay
silent on a healthy platform (an alert added without its two cases fails here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.support.services import require

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    require(found is not None, "promtool (Debian package prometheus; .ci/run installs it)")
    assert found is not None
    return subprocess.run([found, *args], cwd=RULES, capture_output=True, text=True, timeout=120)


def test_every_alert_is_valid_fires_when_it_should_and_is_silent_when_healthy() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout

    alerts = {
        rule["alert"]
        for group in yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert "QueueLongWait" in alerts
    sick, healthy = yaml.safe_load((RULES / "alerts.test.yml").read_text())["tests"]
    fired = {case["alertname"] for case in sick["alert_rule_test"] if case.get("exp_alerts")}
    silent = {
        case["alertname"] for case in healthy["alert_rule_test"] if not case.get("exp_alerts")
    }
    assert fired == alerts and silent == alerts
