"""Time a deploy to N loopback sshd hosts, phase by phase: ours versus a sequential Fabric script.

    python -m benchmarks.deploy --hosts 10 [--serial 5]

Starts N real OpenSSH servers (as the tests do), a private Redis and a PostgreSQL database, and
a git repository of the project (tags v1, v2). A first deploy of v1 provisions the hosts: it
uploads the dependency layer (``deps-<hash>.tar.gz``, the site-packages the app needs) once to
each host, as the first deploy to a real fleet does; its time is printed on its own. Then the
code change, v2, goes out twice, each time starting real workers on every host (the previous
ones killed first):

- **ours**: ``runbooks.deploy.rollout.deploy`` (the release built once with its .venv, shipped
  over SFTP to every host at once, the dependency layer found already there, one shell session
  per host, migrate once, restart per ``--serial`` batch behind the health gate);
- **sequential**: a plain Fabric script doing the same steps one host after another, each
  command its own exec channel, as such scripts are written: ``put`` the ``git archive``
  tarball, unpack, build the virtual environment on the host (``python -m venv`` pointing at
  the same dependency layer on the host, and the same check), link ``.env``, migrate on the
  first host, switch ``current``, warm-stop and start the worker (``celery worker --detach``),
  then wait until ``celery inspect ping`` answers from the host (what the workers-restart book
  does).

The last line is ``ratio sequential/ours: X.X``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.support import private_redis
from celery_app import bootstrap
from celery_app.infra import migrate
from celery_app.settings import load_settings
from runbooks.deploy import hostside, release, rollout
from tests.support.deploy import kill_pidfiles, make_fleet, make_repo
from tests.support.services import create_pg_database
from tests.support.sshd import SSHHost, start_sshd_hosts, stop_all

PLAIN = "srv/plain"


@contextlib.contextmanager
def phase(times: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + time.perf_counter() - started


def sequential(
    hosts: list[SSHHost], repo: Path, ref: str, work: Path, env: dict[str, str], layer: str
) -> dict[str, float]:
    """The same deploy as a plain Fabric script: one host after another, a channel per command."""
    import redis
    from fabric import Connection
    from sqlalchemy import create_engine, text

    times: dict[str, float] = {}
    connect = {"key_filename": str(hosts[0].key), "look_for_keys": False}
    connections = [Connection(h.address, user=h.user, port=h.port, connect_kwargs=connect)
                   for h in hosts]  # fmt: skip
    python = os.path.realpath(sys.executable)
    with phase(times, "preflight"):
        redis.Redis.from_url(env["REDIS_URL"]).ping()
        with create_engine(env["DATABASE_URL"]).connect() as db:
            db.execute(text("SELECT 1"))
        for c, h in zip(connections, hosts, strict=True):
            c.run(f"df -Pk {h.root} | tail -1", hide=True)
            c.run(f"test -f {h.root}/{PLAIN}/shared/.env", hide=True)
    with phase(times, "build"):
        sha = release.resolve(repo, ref)
        name = release.release_name(sha)
        tarball = work / f"{name}.tar.gz"
        subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar.gz", "-o", str(tarball), sha],
            check=True,
        )
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    with phase(times, "ship"):
        for c, h in zip(connections, hosts, strict=True):
            app = f"{h.root}/{PLAIN}"
            target = f"{app}/releases/{name}"
            c.run(f"mkdir -p {target}", hide=True)
            c.put(str(tarball), f"{app}/{name}.tar.gz")
            c.run(f"tar -xzf {app}/{name}.tar.gz -C {target} && rm {app}/{name}.tar.gz", hide=True)
            c.run(f"ln -sfn ../../shared/.env {target}/.env", hide=True)
            c.run(f"{python} -m venv --without-pip {target}/.venv", hide=True)
            deps = f"{h.root}/srv/maqsafy/deps/{layer}"  # the layer already on the host
            c.run(f"printf '../../../..\\n{deps}\\n' > {target}/.venv/lib/{version}/site-packages/"
                  "release.pth", hide=True)  # fmt: skip
            c.run(f'cd {target} && .venv/bin/python -c "{hostside.FIND_SPEC}"', hide=True)
    with phase(times, "migrate"):
        first = f"{hosts[0].root}/{PLAIN}/releases/{name}"
        connections[0].run(
            f"cd {first} && .venv/bin/python -c 'from celery_app import bootstrap, migrate; "
            "migrate.upgrade(bootstrap.build().engine)'",
            hide=True,
        )
    with phase(times, "cache"):
        from celery_app.stores import cache

        cache.clear_for(bootstrap.build(load_settings(env)))
    with phase(times, "rollout"):
        for c, h in zip(connections, hosts, strict=True):
            app = f"{h.root}/{PLAIN}"
            c.run(f"cd {app} && ln -sfn releases/{name} current.tmp && mv -T current.tmp current",
                  hide=True)  # fmt: skip
            c.run(
                f"mkdir -p {app}/run; p=$(cat {app}/run/p1.pid 2>/dev/null) && kill -TERM $p "
                "&& while kill -0 $p 2>/dev/null; do sleep 0.2; done; true",
                hide=True,
            )
            c.run(
                f"cd {app}/current && MAQSAFY_RELEASE={name} .venv/bin/python -m celery "
                f"-A celery_app worker --detach -n p1@{h.name} -Q payments,maintenance -c 1 "
                f"--pidfile={app}/run/p1.pid --logfile={app}/run/p1.log "
                "--without-gossip --without-mingle",
                hide=True,
            )
            c.run(
                f"cd {app}/current && for i in $(seq 30); do .venv/bin/python -m celery "
                f"-A celery_app inspect ping -t 2 -d p1@{h.name} >/dev/null 2>&1 && exit 0; "
                "sleep 0.5; done; exit 1",
                hide=True,
            )
    for c in connections:
        c.close()
    return times


def ours(fleet: Any, repo: Path, ref: str, app: Any, serial: int | None) -> dict[str, float]:
    started = time.perf_counter()
    request = rollout.DeployRequest(
        environment="test",
        ref=ref,
        repo=repo,
        inventory_dir=fleet.inventory_dir,
        serial=serial,
        deps_cache=fleet.deps_cache,
    )
    report = rollout.deploy(app, request, {})
    total = time.perf_counter() - started
    if not report.ok:
        raise RuntimeError(f"our deploy failed: {report.message}")
    times = {p: float(v["seconds"]) for p, v in report.phases.items() if "seconds" in v}
    times["build+cache+lock"] = total - sum(times.values())
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--serial", type=int, default=5, help="our hosts per batch (0: all)")
    args = parser.parse_args(argv)
    if not 1 <= args.hosts <= 250:
        parser.error("--hosts must be from 1 to 250 (one loopback address each)")
    work = Path(tempfile.mkdtemp(prefix="maqsafy-deploy-bench-"))
    print(f"starting {args.hosts} sshd hosts, Redis and a PostgreSQL database ...", flush=True)
    hosts = start_sshd_hosts(work / "hosts", args.hosts)
    url, drop = create_pg_database()
    try:
        with private_redis() as port:
            redis_url = f"redis://127.0.0.1:{port}/0"
            env = {"REDIS_URL": redis_url, "DATABASE_URL": url,
                   "MAQSAFY_VAR_DIR": str(work / "var"),
                   "MAQSAFY_ENV_FILE": str(work / "none")}  # fmt: skip
            app = bootstrap.build(load_settings(env))
            migrate.upgrade(app.engine)
            repo = make_repo(work / "repo")
            fleet = make_fleet(
                work / "inventory", hosts, redis_url, url, deps_cache=work / "deps-cache"
            )
            for h in hosts:  # the plain script's hosts get the same provisioned .env
                plain = h.root / PLAIN / "shared"
                plain.mkdir(parents=True)
                shutil.copy(h.root / "srv/maqsafy/shared/.env", plain / ".env")
            try:
                first = ours(fleet, repo, "v1", app, args.serial or None)
                fleet.kill_workers()
                mine = ours(fleet, repo, "v2", app, args.serial or None)
                fleet.kill_workers()
                theirs = sequential(hosts, repo, "v2", work, env, release.deps_digest())
            finally:
                fleet.kill_workers()
                kill_pidfiles([h.root / PLAIN / "run" for h in hosts])
                app.engine.dispose()
    finally:
        stop_all(hosts)
        drop()
        shutil.rmtree(work, ignore_errors=True)
    batches = f"serial {args.serial}" if args.serial else "all at once"
    print(f"first deploy, v1 to bare hosts (ours, {args.hosts} hosts, {batches}):")
    print(f"  {'ship (+deps layer)':<18} {first['ship']:6.2f} s")
    print(f"  {'total':<18} {sum(first.values()):6.2f} s")
    print(f"ours, v2 ({args.hosts} hosts, {batches}; the dependency layer is already there):")
    for name, seconds in mine.items():
        print(f"  {name:<18} {seconds:6.2f} s")
    print(f"  {'total':<18} {sum(mine.values()):6.2f} s")
    print(f"sequential Fabric script, v2 ({args.hosts} hosts, one after another):")
    for name, seconds in theirs.items():
        print(f"  {name:<18} {seconds:6.2f} s")
    print(f"  {'total':<18} {sum(theirs.values()):6.2f} s")
    print(f"ratio sequential/ours: {sum(theirs.values()) / sum(mine.values()):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
