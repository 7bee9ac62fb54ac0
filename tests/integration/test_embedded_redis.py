"""The embedded default's Redis keeps running on the server that wrote its data.

Redis 7.0 cannot read the RDB that Valkey 9 writes, so a redis-server that appears on PATH after
./var was made by the bundled valkey-server must not take over (it would refuse to start).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from celery_app.infra.embedded import bundled_server, ensure_embedded_redis, stop_embedded_redis

pytestmark = pytest.mark.embedded


def server_name(socket: Path) -> str:
    return str(redis.Redis(unix_socket_path=str(socket)).info("server").get("server_name"))


def test_a_redis_server_installed_later_does_not_take_over_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    var = tmp_path / "var"
    empty, later = tmp_path / "empty", tmp_path / "later"
    empty.mkdir()
    later.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # a machine with no Redis
    try:
        socket = ensure_embedded_redis(var)
        redis.Redis(unix_socket_path=str(socket)).set("wallet", "kept")
        assert server_name(socket) == "valkey"
        assert (var / "redis.server").read_text().strip() == str(bundled_server())
        stop_embedded_redis(var)

        refuses = later / "redis-server"  # stands for a Redis that cannot read the data
        refuses.write_text("#!/bin/sh\nexit 1\n")
        refuses.chmod(0o755)
        monkeypatch.setenv("PATH", str(later))
        socket = ensure_embedded_redis(var)
        assert redis.Redis(unix_socket_path=str(socket)).get("wallet") == b"kept"
        stop_embedded_redis(var)

        (var / "redis.server").write_text(str(tmp_path / "gone" / "redis-server") + "\n")
        monkeypatch.setenv("PATH", str(empty))  # the recorded binary is gone: found anew
        socket = ensure_embedded_redis(var)
        assert redis.Redis(unix_socket_path=str(socket)).get("wallet") == b"kept"
        assert (var / "redis.server").read_text().strip() == str(bundled_server())
    finally:
        stop_embedded_redis(var)
