"""Run one five-step shell runbook on N loopback sshd hosts four ways and compare wall times.

    python -m benchmarks.fleet --hosts 30 --steps 5 [--tools engine,fabric,pyinfra,ansible]
                               [--ansible-playbook PATH] [--pyinfra PATH] [--user NAME]
                               [--forks N]

Starts N real OpenSSH servers (127.0.0.2 ... with generated keys, as the tests do), then runs
the same N-step shell book through:

- this engine (one Fabric connection and one remote `sh` session per host for all steps;
  ``--forks`` hosts at once, by default the engine's own default, as an operator runs it),
- a plain Fabric ``ThreadingGroup`` running one command per step (an exec channel per step),
- pyinfra (``--parallel`` = hosts, one ``server.shell`` operation per step),
- ansible-core's ``ansible-playbook`` (pipelining on, forks = hosts, no fact gathering),
- the same playbook with Mitogen for Ansible (``strategy: mitogen_free``), the fastest Ansible.

Every tool logs in as the same account: ``--user``, by default (when run as root) a deploy user
``maqsafy-fleet`` that the benchmark creates once (``useradd``, Debian's skeleton dotfiles), as a
real fleet has; ``--user root`` logs in as root, whose shell start-up on this machine runs
``pyenv init`` (a lock shared by every session: see docs/benchmarks.md).
Every tool's wall time includes connecting. The peers are benchmark-only: install them with
``pip install -e '.[bench]'`` (ansible-core 2.21 needs Python 3.12+: point ``--ansible-playbook``
at a 3.12 venv's ``ansible-playbook`` to use it). A missing peer is reported and skipped.
The last line is ``ratio mitogen/engine: X.X``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from runbooks.engine.book import inline_book
from runbooks.engine.executor import Executor, RunOptions
from runbooks.engine.inventory import load_inventory
from tests.support.sshd import SSHHost, start_sshd_hosts, stop_all, write_inventory


def step_command(index: int) -> str:
    """The shell of step `index`: cheap, the same for every tool, touches the host's root."""
    return (
        f'echo "step {index} on $(uname -n)" > "$MAQSAFY_HOST_ROOT/step{index}" && ls / >/dev/null'
    )


def run_engine(hosts: list[SSHHost], steps: int, work: Path, forks: int) -> float:
    path = write_inventory(work / "inventory", "bench", hosts)
    started = time.perf_counter()
    inventory = load_inventory(path, {})
    book = inline_book(
        "fleet", {"steps": [{"shell": step_command(i)} for i in range(1, steps + 1)]}
    )
    result = Executor(book, inventory, RunOptions(forks=forks)).run()
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"engine run failed: {result.failed}")
    return elapsed


def run_fabric(hosts: list[SSHHost], steps: int, work: Path) -> float:
    from fabric import ThreadingGroup

    started = time.perf_counter()
    group = ThreadingGroup(
        *[f"{h.user}@{h.address}:{h.port}" for h in hosts],
        connect_kwargs={"key_filename": str(hosts[0].key), "look_for_keys": False},
    )
    try:
        for index in range(1, steps + 1):
            group.run(step_command(index), hide=True)
    finally:
        group.close()
    return time.perf_counter() - started


def run_pyinfra(hosts: list[SSHHost], steps: int, work: Path, binary: str) -> float:
    inventory = work / "pyinfra_inventory.py"
    entries = ",\n".join(
        f"    ({h.address!r}, {{'ssh_port': {h.port}, 'ssh_user': {h.user!r}, "
        f"'ssh_key': {str(h.key)!r}, 'ssh_strict_host_key_checking': 'off', "
        f"'ssh_known_hosts_file': '/dev/null'}})"
        for h in hosts
    )
    inventory.write_text(f"hosts = [\n{entries},\n]\n")
    deploy = work / "pyinfra_deploy.py"
    deploy.write_text(
        "from pyinfra.operations import server\n"
        + "".join(
            f"server.shell(name='step {i}', commands=[{step_command(i)!r}])\n"
            for i in range(1, steps + 1)
        )
    )
    command = [binary, str(inventory), str(deploy), "--parallel", str(len(hosts)), "-y"]
    return _timed(command, work, {})


def mitogen_strategies(binary: str) -> str | None:
    """The strategy plugin folder of Mitogen for Ansible in `binary`'s Python, if installed."""
    python = Path(binary).parent / "python"
    done = subprocess.run(
        [
            str(python),
            "-c",
            "import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return str(Path(done.stdout.strip()) / "plugins" / "strategy")


def run_ansible(
    hosts: list[SSHHost], steps: int, work: Path, binary: str, mitogen: str | None = None
) -> float:
    inventory = {
        "all": {
            "hosts": {
                h.name: {
                    "ansible_host": h.address,
                    "ansible_port": h.port,
                    "ansible_user": h.user,
                    "ansible_ssh_private_key_file": str(h.key),
                    "ansible_python_interpreter": "/usr/bin/python3",
                }
                for h in hosts
            }
        }
    }
    (work / "ansible_inventory.yml").write_text(yaml.safe_dump(inventory))
    play = [
        {
            "hosts": "all",
            "gather_facts": False,
            "tasks": [{"name": f"step {i}", "shell": step_command(i)} for i in range(1, steps + 1)],
        }
    ]
    (work / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    strategy = f"strategy_plugins = {mitogen}\nstrategy = mitogen_free\n" if mitogen else ""
    (work / "ansible.cfg").write_text(
        "[defaults]\n" + strategy + f"forks = {len(hosts)}\n"
        "host_key_checking = False\n"
        "interpreter_python = /usr/bin/python3\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        "ssh_args = -o ControlMaster=auto -o ControlPersist=60s "
        "-o UserKnownHostsFile=/dev/null\n"
    )
    env = {
        "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
    }
    command = [binary, "-i", str(work / "ansible_inventory.yml"), str(work / "play.yml")]
    return _timed(command, work, env)


def _timed(command: list[str], work: Path, extra_env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=work,
        env={**os.environ, **extra_env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"{Path(command[0]).name} exit {done.returncode}:\n" + "\n".join(tail))
    return elapsed


def find(name: str, given: str | None) -> str | None:
    if given:
        return given
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


DEPLOY_USER = "maqsafy-fleet"


def server_cpu(hosts: list[SSHHost]) -> float:
    """CPU seconds the hosts' sshd have used, with every session they reaped (its shells)."""
    total = 0
    for host in hosts:
        stat = Path(f"/proc/{host.process.pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2 :].split()
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def client_cpu() -> float:
    """CPU seconds of this process and the peers' processes it has waited for."""
    mine, peers = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return mine.ru_utime + mine.ru_stime + peers.ru_utime + peers.ru_stime


def login_user(asked: str | None) -> str:
    """The account every tool logs in as: `asked`, else a deploy user when run as root."""
    if asked:
        pwd.getpwnam(asked)  # KeyError: no such account
        return asked
    if os.geteuid() != 0:
        return getpass.getuser()
    try:
        pwd.getpwnam(DEPLOY_USER)
    except KeyError:
        print(f"creating the deploy user {DEPLOY_USER} (useradd; --user root to log in as root)")
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", DEPLOY_USER], check=True
        )
        subprocess.run(["usermod", "-p", "*", DEPLOY_USER], check=True)  # unlocked, no password
    return DEPLOY_USER


def hand_over(work: Path, user: str) -> None:
    """Let `user` read the hosts' authorized keys and write the hosts' roots under `work`."""
    if user == getpass.getuser():
        return
    account = pwd.getpwnam(user)
    for folder in [work, work / "hosts", *(work / "hosts").glob("host*")]:
        folder.chmod(0o755)
    for root in (work / "hosts").glob("host*/root"):
        os.chown(root, account.pw_uid, account.pw_gid)


def check_steps_ran(hosts: list[SSHHost], steps: int) -> None:
    for host in hosts:
        for index in range(1, steps + 1):
            if not (host.root / f"step{index}").exists():
                raise RuntimeError(f"{host.name}: step {index} left no trace")
            (host.root / f"step{index}").unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=30)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--tools", default="engine,fabric,pyinfra,ansible,mitogen")
    parser.add_argument("--ansible-playbook", dest="ansible_playbook")
    parser.add_argument("--pyinfra")
    parser.add_argument(
        "--forks",
        type=int,
        default=RunOptions().forks,
        help="the engine's hosts at once (default: its own default; the peers get one per host)",
    )
    parser.add_argument("--user", help=f"log in as this account (default {DEPLOY_USER} as root)")
    args = parser.parse_args(argv)
    if not 1 <= args.hosts <= 250:
        parser.error("--hosts must be from 1 to 250 (one loopback address each)")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    try:
        user = login_user(args.user)
    except KeyError:
        parser.error(f"--user {args.user!r}: no such account here (create it, or leave it out)")
    work = Path(tempfile.mkdtemp(prefix="maqsafy-fleet-"))
    print(
        f"starting {args.hosts} sshd hosts on 127.0.0.2-{args.hosts + 1} as {user} ...",
        flush=True,
    )
    try:
        hosts = start_sshd_hosts(work / "hosts", args.hosts, user)
        hand_over(work, user)
    except BaseException as exc:  # pytest.skip's Skipped when sshd is missing
        print(f"cannot start sshd: {exc}")
        return 2
    runners: dict[str, Callable[[], float]] = {
        "engine": lambda: run_engine(hosts, args.steps, work, args.forks),
        "fabric": lambda: run_fabric(hosts, args.steps, work),
    }
    pyinfra = find("pyinfra", args.pyinfra)
    ansible = find("ansible-playbook", args.ansible_playbook)
    if pyinfra:
        runners["pyinfra"] = lambda: run_pyinfra(hosts, args.steps, work, pyinfra)
    if ansible:
        runners["ansible"] = lambda: run_ansible(hosts, args.steps, work, ansible)
        strategies = mitogen_strategies(ansible)
        if strategies:
            runners["mitogen"] = lambda: run_ansible(hosts, args.steps, work, ansible, strategies)
    times: dict[str, float] = {}
    try:
        for tool in tools:
            if tool not in runners:
                print(f"{tool:<8} skipped: not installed (pip install -e '.[bench]')", flush=True)
                continue
            before = client_cpu(), server_cpu(hosts)
            times[tool] = runners[tool]()
            time.sleep(1)  # the sshd reap the ended sessions, whose CPU they then count
            client, server = client_cpu() - before[0], server_cpu(hosts) - before[1]
            check_steps_ran(hosts, args.steps)
            print(
                f"{tool:<8} {times[tool]:7.2f} s  ({args.hosts} hosts x {args.steps} steps; "
                f"CPU: client {client:.2f} s, sshd and shells {server:.2f} s)",
                flush=True,
            )
    finally:
        stop_all(hosts)
        shutil.rmtree(work, ignore_errors=True)
    engine = times.get("engine")
    if engine:
        for tool in ("fabric", "pyinfra"):
            if tool in times:
                print(f"ratio {tool}/engine: {times[tool] / engine:.1f}")
        if "ansible" in times:
            print(f"ratio ansible/engine: {times['ansible'] / engine:.1f}")
        if "mitogen" in times:
            print(f"ratio mitogen/engine: {times['mitogen'] / engine:.1f}")
        else:
            print("ratio mitogen/engine: n/a (ansible-playbook with mitogen not installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
