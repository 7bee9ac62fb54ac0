"""The shipped books over real SSH: `facts` reads each host, `ping` expects PONG from Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbooks.engine.book import load_book
from runbooks.engine.book_files import book_path
from runbooks.engine.executor import Executor
from runbooks.engine.inventory import load_environment
from tests.support.services import RedisServer
from tests.support.sshd import SSHHost, write_inventory

pytestmark = pytest.mark.ssh


def test_facts_book_on_every_host(inventory_dir: Path, sshd_hosts: list[SSHHost]) -> None:
    inventory = load_environment("test", {}, inventory_dir)
    result = Executor(load_book(book_path("facts")), inventory).run()
    assert result.ok
    for host in sshd_hosts:
        facts = result.hosts[host.name].steps[0].data
        assert facts["hostname"] and facts["kernel"].startswith("Linux")
        assert isinstance(facts["disk_free_bytes"], int) and facts["has_redis_cli"] is True


def test_ping_book_expects_pong(
    tmp_path: Path, sshd_hosts: list[SSHHost], redis_server_with_password: RedisServer
) -> None:
    server = redis_server_with_password
    book = load_book(book_path("ping"))
    good = tmp_path / "good"
    write_inventory(
        good,
        "test",
        sshd_hosts[:2],
        vars={"redis_port": server.port, "redis_password": "${RB_PASSWORD}"},
    )
    result = Executor(book, load_environment("test", {"RB_PASSWORD": server.password}, good)).run()
    assert result.ok, result.to_dict()
    assert all(h.steps[-1].message == "PONG" for h in result.hosts.values())

    wrong = tmp_path / "wrong"
    write_inventory(
        wrong,
        "test",
        sshd_hosts[:1],
        vars={"redis_port": server.port, "redis_password": "${RB_PASSWORD}"},
    )
    failed = Executor(book, load_environment("test", {"RB_PASSWORD": "not-it"}, wrong)).run()
    step = failed.hosts[sshd_hosts[0].name].steps[-1]
    assert failed.hosts[sshd_hosts[0].name].status == "failed"
    assert step.status == "failed" and step.attempts == 2  # retried once, as the book says
