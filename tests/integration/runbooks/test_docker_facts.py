"""`docker.ps|logs|networks` report, here and over SSH, whether Docker can answer and why not.

This machine has the docker client and no engine (and the test can hide the client from PATH),
so the outcomes covered for real are "not running" and "not installed".
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from runbooks.connectors.targets import LocalTarget
from runbooks.facts.docker import DockerUnavailable, containers, explain_unreachable
from tests.support.redis_app import app_env, invoke
from tests.support.sshd import SSHHost


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return app_env(tmp_path, "redis://redis.invalid:6379/0")


def expected_reason() -> str:
    if docker_answers():
        pytest.skip("Docker runs on this machine: the unavailable outcomes cannot be shown here")
    return "not running" if shutil.which("docker") else "not installed"


def test_the_real_outcome_on_this_machine(env: dict[str, str]) -> None:
    reason = expected_reason()
    for command in (["docker.ps"], ["docker.networks"], ["docker.logs", "redis"]):
        done = invoke(env, *command)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout.startswith(f"localhost: Docker is {reason} on localhost"), done.stdout
        assert not done.stderr
    target = LocalTarget()
    try:
        with pytest.raises(DockerUnavailable) as caught:
            containers(target)
        assert caught.value.reason == ("running" if reason == "not running" else "installed")
        [line] = explain_unreachable(target, "redis")
        assert "the container causes cannot be checked here" in line
    finally:
        target.close()


def test_no_docker_on_path_is_not_installed(env: dict[str, str]) -> None:
    done = invoke({**env, "PATH": "/nonexistent"}, "docker.ps", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "localhost": {"error": "Docker is not installed on localhost (no docker command on PATH)"}
    }


def test_the_doctor_checks_docker_when_the_name_does_not_resolve(env: dict[str, str]) -> None:
    reason = expected_reason()
    done = invoke(env, "redis.doctor", "--json")
    assert done.returncode == 2
    [result] = json.loads(done.stdout)
    assert result["findings"][0]["data"]["kind"] == "resolve"
    assert result["docker"][0].startswith(f"Docker is {reason} on localhost")


def test_bad_input_is_one_line(env: dict[str, str]) -> None:
    bad = invoke(env, "docker.logs", "redis; rm -rf /")
    assert (bad.returncode, bad.stdout, bad.stderr.count("\n")) == (2, "", 1)
    assert bad.stderr.startswith("error: not a container name")
    tail = invoke(env, "docker.logs", "redis", "--tail", "many")
    assert tail.returncode == 2 and tail.stderr.startswith("error: --tail")


def test_on_an_environments_hosts(
    env: dict[str, str], inventory_dir: Path, sshd_hosts: list[SSHHost]
) -> None:
    done = invoke(env, "docker.ps", "--env", "test", "--inventory", str(inventory_dir), "--json")
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert sorted(data) == sorted(h.name for h in sshd_hosts)
    for host, value in data.items():
        assert value["error"].startswith("Docker is not"), value
        assert value["error"].split(" on ", 1)[1].startswith(host)
