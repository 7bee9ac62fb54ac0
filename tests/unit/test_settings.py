"""Settings: the platform's variables, URLs, the embedded default, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from celery_app.errors import ConfigError
from celery_app.settings import ROLES, load_settings

NO_FILE = Path("/nonexistent/.env")


def load(**env: str):  # type: ignore[no-untyped-def]
    return load_settings({"MAQSAFY_VAR_DIR": "/tmp/mq-settings", **env}, dotenv=NO_FILE)


def test_nothing_configured_means_the_embedded_default() -> None:
    settings = load()
    assert settings.embedded_redis
    assert settings.database_url == "sqlite:////tmp/mq-settings/maqsafy.db"
    assert all(
        url.startswith("unix:///tmp/mq-settings/redis.sock") for url in settings.redis_urls.values()
    )


def test_platform_variables_build_the_url_and_null_means_no_password() -> None:
    settings = load(REDIS_HOST="redis", REDIS_PORT="6380", REDIS_PASSWORD="null")
    assert not settings.embedded_redis
    assert settings.redis_url("cache") == "redis://redis:6380/0"
    assert settings.secrets == ()


def test_password_is_escaped_into_the_url_and_known_as_a_secret() -> None:
    settings = load(REDIS_HOST="redis", REDIS_PASSWORD="p@ss/w:rd")
    assert settings.redis_url("broker") == "redis://:p%40ss%2Fw%3Ard@redis:6379/0"
    assert "p@ss/w:rd" in settings.secrets


def test_role_url_wins_over_shared_url() -> None:
    settings = load(REDIS_URL="redis://shared:6379/0", REDIS_CACHE_URL="redis://cache:6379/3")
    assert settings.redis_url("cache") == "redis://cache:6379/3"
    assert {settings.redis_url(r) for r in ROLES if r != "cache"} == {"redis://shared:6379/0"}


def test_the_superuser_url_is_its_own_and_its_password_a_secret() -> None:
    settings = load(
        REDIS_URL="redis://maqsafy-admin:adm-pw-1@redis:6379/0",
        MAQSAFY_REDIS_SUPERUSER_URL="redis://:super-pw-2@redis:6379/0",
    )
    assert settings.redis_superuser_url == "redis://:super-pw-2@redis:6379/0"
    assert {"adm-pw-1", "super-pw-2"} <= set(settings.secrets)
    assert "super-pw-2" not in repr(settings)
    with pytest.raises(ConfigError, match="MAQSAFY_REDIS_SUPERUSER_URL: expected a URL"):
        load(MAQSAFY_REDIS_SUPERUSER_URL="http://redis:6379")


def test_postgresql_scheme_gets_the_psycopg_driver_and_password_is_secret() -> None:
    settings = load(DATABASE_URL="postgresql://app:s3cret-value@db:5432/maqsafy")
    assert settings.database_url == "postgresql+psycopg://app:s3cret-value@db:5432/maqsafy"
    assert "s3cret-value" in settings.secrets


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_PORT": "abc"}, "REDIS_PORT: expected a whole number from 1 to 65535, got 'abc'"),
        ({"REDIS_PORT": "70000"}, "REDIS_PORT: expected a whole number"),
        ({"CACHE_DRIVER": "memcached"}, "CACHE_DRIVER: unknown driver 'memcached'"),
        ({"QUEUE_CONNECTION": "sqs"}, "QUEUE_CONNECTION: unknown driver 'sqs'"),
        ({"SESSION_DRIVER": "cookie"}, "SESSION_DRIVER: unknown driver 'cookie'"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL: expected a URL starting with redis://"),
        ({"REDIS_URL": "redis://host:port/0"}, "REDIS_URL: malformed URL"),
        ({"REDIS_URL": "redis:///0"}, "REDIS_URL: the URL names no host"),
        ({"REDIS_CACHE_URL": "redis://h:6379/x"}, "REDIS_CACHE_URL: the database"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL: expected a URL starting with sqlite://"),
        ({"REDIS_HOST": "redis:6379"}, "REDIS_HOST: expected a host name"),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(**env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nREDIS_HOST=from-file\nexport REDIS_PORT='6390'\n")
    settings = load_settings({"REDIS_HOST": "from-env"}, dotenv=dotenv)
    assert settings.redis_url("broker") == "redis://from-env:6390/0"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hunter2-pasted-alone", ":2: expected KEY=VALUE, found no '=' (the line is not shown)"),
        ("REDIS PASSWORD=hunter2", ":2: key 'REDIS PASSWORD' is not a variable name"),
        ("REDIS_PASSWORD: hunter2=x", ":2: key 'REDIS_PASSWORD: ********' is not a variable"),
    ],
)
def test_malformed_dotenv_line_names_its_number_and_key_never_its_value(
    tmp_path: Path, line: str, message: str
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"REDIS_HOST=ok\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, dotenv=dotenv)
    assert str(caught.value).startswith(f"{dotenv}{message}")
    assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)


def test_defaults_hang_off_the_project_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery_app.settings import PROJECT_ROOT, env_file_path

    monkeypatch.chdir(tmp_path)  # e.g. an operator in docs/
    settings = load_settings({}, dotenv=NO_FILE)
    assert settings.var_dir == PROJECT_ROOT / "var"
    assert env_file_path({}) == PROJECT_ROOT / ".env"
    assert env_file_path({"MAQSAFY_ENV_FILE": "/etc/maqsafy.env"}) == Path("/etc/maqsafy.env")
    # A .env where the command happens to run (a download, /tmp) is never read.
    (tmp_path / ".env").write_text("REDIS_HOST=planted\n")
    assert env_file_path({}) == PROJECT_ROOT / ".env"
    assert "planted" not in str(load_settings({"MAQSAFY_ENV_FILE": ""}).redis_urls)
