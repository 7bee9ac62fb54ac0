"""`--env`: the Redis commands act on the Redis an inventory environment names."""

from __future__ import annotations

import json
from pathlib import Path

from celery_app.settings import ROLES
from celery_app.stores.sessions import SessionStore
from runbooks.reach.redis import environment_app
from tests.support.redis_app import app_env, history_names, invoke, migrated_app
from tests.support.services import RedisServer, free_port

INVENTORY = """\
environment: drill
vars:
  redis_url: ${DRILL_REDIS_URL}
hosts:
  localhost: {connection: local}
"""


def test_every_role_goes_to_the_environments_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "drill.yml").write_text(INVENTORY)
    elsewhere = f"redis://127.0.0.1:{free_port()}/0"
    environ = {
        **app_env(tmp_path, elsewhere),
        "REDIS_SESSIONS_URL": elsewhere,
        "DRILL_REDIS_URL": redis_server.url,
    }
    app = environment_app("drill", environ, directory=tmp_path)
    assert {app.settings.redis_url(role) for role in ROLES} == {redis_server.url}
    SessionStore.from_container(app).create("u1")
    assert redis_server.client().dbsize() == 2


def test_commands_take_env(redis_server: RedisServer, tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = {
        **app_env(tmp_path, dead),
        "REDIS_HOST": "127.0.0.1",  # what inventory/local.yml reads
        "REDIS_PORT": str(redis_server.port),
    }
    app = migrated_app(env)
    SessionStore(redis_server.client(), app.keyspace).create("u1")

    counted = invoke(env, "sessions.count", "--env", "local", "--json")
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)["sessions"] == 1

    revoked = invoke(env, "sessions.revoke", "--user", "u1", "--env", "local")
    assert revoked.returncode == 0, revoked.stderr
    assert redis_server.client().dbsize() == 0
    assert history_names(app) == [("sessions.revoke", "ok", {"user": "u1"})]

    unknown = invoke(env, "redis.keyspace", "--env", "nowhere")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: no inventory for environment 'nowhere'")
