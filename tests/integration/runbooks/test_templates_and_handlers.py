"""Jinja2 templates, the `template` and `service` actions, handlers and `--diff` on real sshd
hosts, in normal and check mode, through the real command line where a person reads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbooks.engine.book import load_book
from runbooks.engine.executor import Executor, RunOptions
from runbooks.engine.inventory import load_environment
from runbooks.engine.results import RunResult
from runbooks.errors import BookError
from tests.support.cli import clean_environ, run_invoke
from tests.support.sshd import SSHHost, write_inventory

pytestmark = pytest.mark.ssh

TEMPLATE = """\
# {{ inventory_hostname }} ({{ group_names | join(',') }})
port={{ redis_port | int + 1 }}
{% for name in groups['all'] | sort %}
peer={{ name | upper }} {{ hostvars[name].root | basename }}
{% endfor %}
mode={{ mode | default('standalone') | regex_replace('^s', 'S') }}
password={{ redis_password }}
"""


def book(tmp_path: Path, steps: list[dict[str, Any]], **top: Any) -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "redis.conf.j2").write_text(TEMPLATE)
    path = tmp_path / "book.yml"
    path.write_text(yaml.safe_dump({"name": "conf", "steps": steps, **top}, sort_keys=False))
    return path


def run(directory: Path, path: Path, environ: dict[str, str], **options: Any) -> RunResult:
    inventory = load_environment("test", environ, directory)
    return Executor(load_book(path), inventory, RunOptions(**options)).run()


STEPS = [
    {
        "name": "redis.conf",
        "template": {
            "src": "templates/redis.conf.j2",
            "dest": "{{ root }}/redis.conf",
            "mode": "0640",
        },
        "notify": ["restart redis", "say reloaded"],
    },
    {"name": "always runs", "shell": {"cmd": "true", "read_only": True}},
]
HANDLERS = [
    {"name": "say reloaded", "shell": "echo reloaded >> {{ root }}/handlers"},
    {"name": "restart redis", "shell": "echo restarted >> {{ root }}/handlers"},
    {"name": "never notified", "shell": "echo never >> {{ root }}/handlers"},
]


def inventory(tmp_path: Path, hosts: list[SSHHost]) -> Path:
    directory = tmp_path / "inv"
    write_inventory(
        directory,
        "test",
        hosts,
        vars={"redis_port": "6379", "redis_password": "${RB_TEMPLATE_SECRET}"},
        groups={"cache": [hosts[0].name]},
    )
    return directory


def test_template_with_filters_handlers_once_in_definition_order_then_nothing(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    hosts = sshd_hosts[:2]
    directory = inventory(tmp_path, hosts)
    path = book(tmp_path, STEPS, handlers=HANDLERS)
    environ = {"RB_TEMPLATE_SECRET": "tpl-" + os.urandom(6).hex()}
    first = run(directory, path, environ)
    assert first.ok, first.to_dict()
    for host in hosts:
        text = (host.root / "redis.conf").read_text()
        assert text.startswith(f"# {host.name} (")
        assert "port=6380\n" in text and "mode=Standalone\n" in text
        assert f"peer={hosts[1].name.upper()} root\n" in text  # hostvars of another host
        assert text.endswith(f"password={environ['RB_TEMPLATE_SECRET']}\n")
        assert oct((host.root / "redis.conf").stat().st_mode & 0o777) == "0o640"
        # notified as [restart, say]; run once each in the order the book defines them
        assert (host.root / "handlers").read_text() == "reloaded\nrestarted\n"
        steps = first.hosts[host.name].steps
        assert [(s.step, s.status, s.handler) for s in steps] == [
            ("redis.conf", "changed", False),
            ("always runs", "ok", False),
            ("say reloaded", "changed", True),
            ("restart redis", "changed", True),
        ]
    assert "cache" in (hosts[0].root / "redis.conf").read_text().splitlines()[0]
    again = run(directory, path, environ)
    assert [s.status for s in again.hosts[hosts[0].name].steps] == ["ok", "ok"]
    assert (hosts[0].root / "handlers").read_text() == "reloaded\nrestarted\n"


def test_check_mode_diff_and_a_failed_host_runs_no_handler(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    host = sshd_hosts[0]
    directory = inventory(tmp_path, [host])
    environ = {"RB_TEMPLATE_SECRET": "tpl-secret-value"}
    (host.root / "redis.conf").write_text("# old\nport=1\n")
    path = book(tmp_path, STEPS, handlers=HANDLERS)
    checked = run(directory, path, environ, check=True)
    steps = checked.hosts[host.name].steps
    assert steps[0].status == "changed" and "would update content" in steps[0].message
    diff = steps[0].data["diff"]
    assert "-# old\n-port=1\n" in diff and "+port=6380\n" in diff
    assert [s.step for s in steps if s.handler] == ["say reloaded", "restart redis"]
    assert all(s.status == "skipped" for s in steps if s.handler)  # shell in check mode
    assert (host.root / "redis.conf").read_text() == "# old\nport=1\n"
    assert not (host.root / "handlers").exists()

    failing = [*STEPS, {"name": "breaks", "shell": "exit 3"}]
    failed = run(directory, book(tmp_path, failing, handlers=HANDLERS), environ)
    assert failed.hosts[host.name].status == "failed"
    assert not (host.root / "handlers").exists()
    (host.root / "redis.conf").write_text("# old\n")
    path = book(tmp_path, failing, handlers=HANDLERS, force_handlers=True)
    forced = run(directory, path, environ)
    assert forced.hosts[host.name].status == "failed"
    assert (host.root / "handlers").read_text() == "reloaded\nrestarted\n"


def test_undefined_names_fail_at_file_line_field(tmp_path: Path, sshd_hosts: list[SSHHost]) -> None:
    host = sshd_hosts[0]
    directory = inventory(tmp_path, [host])
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "bad.j2").write_text("ok={{ redis_port }}\n\nx={{ nope.deeper }}\n")
    steps = [
        {"name": "echo", "shell": "echo {{ missing_var | upper }}"},
    ]
    path = tmp_path / "b.yml"
    path.write_text(yaml.safe_dump({"steps": steps}))
    result = run(directory, path, {"RB_TEMPLATE_SECRET": "x"})
    message = result.hosts[host.name].steps[0].message
    assert message == f"{path}:3: steps[0].shell.cmd: 'missing_var' is undefined"
    path.write_text(
        yaml.safe_dump({"steps": [{"template": {"src": "templates/bad.j2", "dest": "/tmp/x"}}]})
    )
    result = run(directory, path, {"RB_TEMPLATE_SECRET": "x"})
    message = result.hosts[host.name].steps[0].message
    assert message == f"{tmp_path / 'templates' / 'bad.j2'}:3: 'nope' is undefined"
    path.write_text(yaml.safe_dump({"steps": [{"shell": "true", "when": "{{ x }}"}]}))
    with pytest.raises(BookError, match=r"b.yml:\d+: steps\[0\].when: a condition is an expr"):
        load_book(path)
    path.write_text(yaml.safe_dump({"steps": [{"template": {"src": "nope.j2", "dest": "/x"}}]}))
    with pytest.raises(BookError, match=r"steps\[0\].template.src: cannot read template"):
        load_book(path)
    path.write_text(yaml.safe_dump({"steps": [{"shell": "true", "notify": "nobody"}]}))
    with pytest.raises(BookError, match=r"steps\[0\].notify: no handler named 'nobody'"):
        load_book(path)


def test_service_says_honestly_that_this_host_has_no_systemd(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    # The loopback hosts are sshd processes in a container: systemctl is installed but systemd
    # is not PID 1. What can be tested for real here: the refusal, in both modes, and that the
    # parameters are checked when the book loads (the plan itself: tests/unit).
    host = sshd_hosts[0]
    directory = inventory(tmp_path, [host])
    path = tmp_path / "svc.yml"
    step = {"service": {"name": "redis-server", "state": "started", "enabled": True}}
    path.write_text(yaml.safe_dump({"steps": [step]}))
    for check in (False, True):
        result = run(directory, path, {"RB_TEMPLATE_SECRET": "x"}, check=check)
        message = result.hosts[host.name].steps[0].message
        assert result.hosts[host.name].steps[0].status == "failed"
        assert message.startswith(("service: systemd is not running on", "service: systemctl is"))
    path.write_text(yaml.safe_dump({"steps": [{"service": {"name": "x", "state": "up"}}]}))
    with pytest.raises(BookError, match=r"service.state: expected one of: started, stopped"):
        load_book(path)


def test_invoke_run_diff_shows_the_change_with_the_secret_masked(
    tmp_path: Path, sshd_hosts: list[SSHHost]
) -> None:
    host = sshd_hosts[0]
    directory = inventory(tmp_path, [host])
    secret = "tpl-" + os.urandom(8).hex()
    (host.root / "redis.conf").write_text("# old\npassword=previous\n")
    path = book(tmp_path, STEPS, handlers=HANDLERS)
    var = tmp_path / "var"
    env = clean_environ(
        RB_TEMPLATE_SECRET=secret,
        MAQSAFY_VAR_DIR=str(var),
        MAQSAFY_ENV_FILE=str(tmp_path / "absent.env"),
    )
    assert run_invoke(["db.migrate"], env).returncode == 0
    base = ["run", str(path), "--env", "test", "--inventory", str(directory)]
    checked = run_invoke([*base, "--check"], env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "-password=previous" in checked.stdout and "+password=********" in checked.stdout
    assert "handler: say reloaded" in checked.stdout
    assert (host.root / "redis.conf").read_text() == "# old\npassword=previous\n"
    people = run_invoke([*base, "--diff"], env)
    scripts = run_invoke([*base, "--diff", "--json"], env)
    assert people.returncode == 0, people.stdout + people.stderr
    assert "+port=6380" in people.stdout and "+password=********" in people.stdout
    document = json.loads(scripts.stdout)
    assert document["hosts"][host.name]["steps"][0]["status"] == "ok"  # already written
    for where, found in {"--check": checked, "--diff": people, "--json": scripts}.items():
        assert secret not in found.stdout + found.stderr, f"the secret leaked into {where}"
    refused = run_invoke([*base, "--diff", "--remote"], env)
    assert refused.returncode == 2 and refused.stderr.startswith("error: --diff prints")
