"""`service`: what systemctl says in, the verbs still needed out (pyinfra's table style)."""

from __future__ import annotations

import pytest

from runbooks.actions.service import UnitState, plan, read_state


@pytest.mark.parametrize(
    ("state", "enabled", "active", "is_enabled", "verbs"),
    [
        ("started", None, "active", "enabled", []),
        ("started", None, "inactive", "enabled", ["start"]),
        ("started", None, "failed", "disabled", ["start"]),
        ("started", True, "inactive", "disabled", ["enable", "start"]),
        ("stopped", None, "active", "enabled", ["stop"]),
        ("stopped", None, "inactive", "enabled", []),
        ("stopped", False, "active", "enabled", ["disable", "stop"]),
        ("restarted", None, "active", "enabled", ["restart"]),
        ("restarted", None, "inactive", "enabled", ["restart"]),
        ("reloaded", None, "active", "enabled", ["reload"]),
        ("reloaded", None, "inactive", "enabled", ["start"]),
        (None, True, "active", "static", []),
        (None, True, "active", "disabled", ["enable"]),
        (None, False, "active", "disabled", []),
    ],
)
def test_plan(
    state: str | None, enabled: bool | None, active: str, is_enabled: str, verbs: list[str]
) -> None:
    assert plan(state, enabled, UnitState(active, is_enabled)) == verbs


def test_read_state_says_when_systemd_cannot_be_asked() -> None:
    assert read_state("active=active\nenabled=disabled\n", "h") == UnitState("active", "disabled")
    with pytest.raises(OSError, match="systemd is not running on h"):
        read_state("nosystemd\n", "h")
    with pytest.raises(OSError, match="systemctl is not installed on h"):
        read_state("nosystemctl\n", "h")
