"""A deployable fleet for tests: a repo tagged v1, v2 and broken, sshd hosts with app folders.

The repository is the project's own tree at HEAD (``git archive``), committed as ``v1``, then
with a changed ``VERSION`` file and a new (no-op) migration ``9001`` as ``v2``; ``broken`` is v1
with a job module that raises on import (its worker exits as soon as it starts). Each host gets
``<root>/srv/maqsafy/shared/.env`` pointing at the test's Redis and database (what provisioning
does on a real host); the deploy starts the workers itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from runbooks.deploy import layout, release
from tests.support.sshd import SSHHost, write_inventory

PROJECT = Path(__file__).resolve().parents[2]
APP_DIR = layout.DEFAULT_APP_DIR.lstrip("/")  # each host's app folder, under its own root


# v2 adds a (no-op) migration, so rolling back from it leaves the database ahead of the code.
V2_MIGRATION = """\"\"\"deploy test: a schema change v3 brings\"\"\"

revision = "9001"
down_revision = "%s"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
"""


def make_repo(directory: Path) -> Path:
    """The project's HEAD tagged v1; v2 with a changed VERSION and one more migration."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(PROJECT), "archive", "--format=tar", "HEAD"],
        check=True,
        capture_output=True,
    )
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-C", str(directory), "-c", "user.name=test", "-c", "user.email=t@example.org",
             *args],
            check=True,
            capture_output=True,
        )  # fmt: skip

    git("init", "-q", "-b", "main")
    (directory / "VERSION").write_text("v1\n")
    git("add", "-A")
    git("commit", "-q", "-m", "v1")
    git("tag", "v1")
    (directory / "VERSION").write_text("v2\n")
    head = release.migration_head(directory)
    (directory / "migrations" / "versions" / "9001_deploy_test.py").write_text(V2_MIGRATION % head)
    git("add", "-A")
    git("commit", "-q", "-m", "v2: a new version and a migration")
    git("tag", "v2")
    git("checkout", "-q", "-b", "broken", "v1")
    with (directory / "celery_app" / "money" / "jobs.py").open("a") as jobs:
        jobs.write('\nraise RuntimeError("this release cannot start")\n')
    git("commit", "-q", "-am", "broken: a worker of this release exits at once")
    git("tag", "broken")
    git("checkout", "-q", "main")
    return directory


def on_host(host: SSHHost, command: str) -> str:
    """Run `command` on `host` with OpenSSH's own client (not the code under test); its stdout."""
    done = subprocess.run(
        ["ssh", "-i", str(host.key), "-p", str(host.port), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={host.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         f"{host.user}@{host.address}", command],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Fleet:
    """Hosts with app folders, the inventory naming them, and the settings their workers read."""

    hosts: list[SSHHost]
    inventory_dir: Path
    env: dict[str, str]
    deps_cache: Path | None = None  # the laptop's dependency-layer tarball, built once a session

    def app_dir(self, host: SSHHost) -> Path:
        return host.root / APP_DIR

    def current(self, host: SSHHost) -> str:
        link = self.app_dir(host) / "current"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else ""

    def tree(self) -> dict[str, list[str]]:
        """Every path under every host's root (to prove check mode touched nothing)."""
        return {
            h.name: sorted(str(p.relative_to(h.root)) for p in h.root.rglob("*"))
            for h in self.hosts
        }

    def kill_workers(self) -> None:
        """SIGKILL every worker a deploy started, with its pool."""
        kill_pidfiles([self.app_dir(h) / "shared" / "run" for h in self.hosts])


def kill_pidfiles(folders: list[Path]) -> None:
    """SIGKILL the process group of each worker whose pidfile is in `folders`.

    A detached worker forks twice around setsid, so it is not its group's leader: the group to
    kill is getpgid(pid) (main process and pool children), never this process's own.
    """
    for folder in folders:
        for pidfile in folder.glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text().strip())
                group = os.getpgid(pid)
                if group == os.getpgid(0):
                    os.kill(pid, signal.SIGKILL)
                else:
                    os.killpg(group, signal.SIGKILL)


def make_fleet(
    directory: Path,
    hosts: list[SSHHost],
    redis_url: str,
    database_url: str,
    environment: str = "test",
    deps_cache: Path | None = None,
    ops_key: str | None = None,
    reach: str = "direct",
    **vars: object,
) -> Fleet:
    """Write the inventory (group workers) and each host's shared/.env (with `ops_key`, the
    key that signs runbook requests on the ops queue, for hosts that run them). Loopback hosts
    share this machine's network, so `reach` is `direct` unless a test asks for `ssh`."""
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "MAQSAFY_LOCK_TTL_MS": "10000",
        **({"MAQSAFY_OPS_SIGNING_KEY": ops_key} if ops_key else {}),
    }
    for host in hosts:
        shared = host.root / APP_DIR / "shared"
        shared.mkdir(parents=True, exist_ok=True)
        lines = {**env, "MAQSAFY_VAR_DIR": str(shared / "var")}
        (shared / ".env").write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    path = write_inventory(
        directory,
        environment,
        hosts,
        vars={
            "redis_url": redis_url,
            "worker_queues": "payments,maintenance",
            "worker_concurrency": 1,
            "worker_timeout": 30,
            **vars,
        },
        groups={"workers": [h.name for h in hosts]},
    )
    document = {"reach": reach, **yaml.safe_load(path.read_text())}
    for host in hosts:
        document["hosts"][host.name]["vars"]["app_dir"] = str(host.root / APP_DIR)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return Fleet(hosts, directory, env, deps_cache)
