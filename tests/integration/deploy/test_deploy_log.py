"""The deploy log and the deploy notifications, with a real sshd host, Redis, PostgreSQL, the
workers the deploys start, an ops worker delivering webhooks and a local HTTP receiver.

v1, then v2 (one commit later), then a rollback: the log lists, newest first, the rollback taking
v2's commit out, v2 bringing it in, and v1 as the first deploy; the notifications carry the
same commits; `invoke deploy.log` prints the same list.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from celery_app.dev.worker_process import start_worker
from runbooks.deploy import log, rollout
from tests.support.cli import ROOT, run_invoke
from tests.support.deploy import Fleet
from tests.support.money import MoneyEnv
from tests.support.services import wait_for
from tests.support.webhook import payload, receiving

pytestmark = pytest.mark.ssh

VAR = "DEPLOY_TEST_WEBHOOK"


def test_the_deploy_log_lists_the_commits_between_two_deploys_and_notifies_them(
    tmp_path: Path, money: MoneyEnv, fleets: Callable[[int], Fleet], repo: Path
) -> None:
    fleet = fleets(1)
    path = fleet.inventory_dir / "test.yml"
    document = yaml.safe_load(path.read_text())
    document["notify"] = [{"url": "${" + VAR + "}"}]  # every event
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    v2_commit = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h %s", "v2"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip

    with receiving() as receiver:
        ops = start_worker(
            "ops1@laptop", tmp_path / "ops1.log", queues="ops", concurrency=1,
            env={**money.env, VAR: receiver.url},
        )  # fmt: skip
        money.workers.append(ops)
        ops.wait_ready()
        try:
            reports = {}
            for ref in ("v1", "v2", "rollback", "broken"):
                if ref == "rollback":
                    reports[ref] = rollout.rollback(
                        money.container, "test", {}, inventory_dir=fleet.inventory_dir, repo=repo
                    )
                    continue
                request = rollout.DeployRequest(
                    environment="test", ref=ref, repo=repo, inventory_dir=fleet.inventory_dir,
                    deps_cache=fleet.deps_cache,
                )  # fmt: skip
                reports[ref] = rollout.deploy(money.container, request, {})
        finally:
            fleet.kill_workers()
        assert [r.ok for r in reports.values()] == [True, True, True, False]
        wait_for(lambda: receiver.events("deploy.failed"), 60, "the failed deploy's notification")
        wait_for(lambda: receiver.events("deploy.rolled_back"), 60, "the rollback's notification")
        wait_for(lambda: len(receiver.events("deploy.finished")) == 2, 60, "both deploys'")

    broken, rolled, second, first = log.deploy_log(money.container.sessions, "test", repo)
    assert (first["action"], first["ref"], first["outcome"]) == ("deploy", "v1", "ok")
    assert first["commits"] == [] and first["commits_note"] == "no earlier deploy in the log"
    assert (second["ref"], second["previous"]) == ("v2", first["release"])
    assert second["commits"] == [v2_commit] and second["direction"] == "added"
    assert second["hosts"] == [{"host": "host0", "status": "ok", "release": second["release"]}]
    assert second["operator"] and second["duration"] > 0
    assert (rolled["action"], rolled["release"]) == ("rollback", first["release"])
    assert rolled["commits"] == [v2_commit] and rolled["direction"] == "removed"

    broken_commit = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h %s", "broken"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert (broken["outcome"], broken["previous"]) == ("failed", first["release"])
    assert broken["commits"] == [broken_commit]  # v1 is live again: broken is one commit on it
    [failed] = receiver.events("deploy.failed")
    assert payload(failed)["outcome"] == "failed" and payload(failed)["commits"] == [broken_commit]
    # (broken is cut from v1, which lacks v2's migration the database now has)
    assert "migration failed, no host switched" in payload(failed)["message"]
    assert broken["release"] == "" and broken["commits_note"] == ""

    # The notifications carry the same list (and started came before each).
    assert len(receiver.events("deploy.started")) == 4
    finished = {payload(e)["release"]: e for e in receiver.events("deploy.finished")}
    assert payload(finished[second["release"]])["commits"] == [v2_commit]
    fields = {
        f["title"]: f["value"] for f in finished[second["release"]]["attachments"][0]["fields"]
    }
    assert fields["commits"] == v2_commit and fields["environment"] == "test"
    [rollback_note] = receiver.events("deploy.rolled_back")
    assert payload(rollback_note)["commits"] == [v2_commit]
    assert receiver.token not in ops.log_text()

    # The command line: from the repository, as an operator runs it (tasks from this checkout).
    env = {**money.env, "PATH": "/usr/bin:/bin"}
    done = run_invoke(["-r", str(ROOT), "deploy.log", "--env", "test", "--json"], env, cwd=repo)
    assert done.returncode == 0, done.stderr
    assert [e["commits"] for e in json.loads(done.stdout)] == [
        [broken_commit],
        [v2_commit],
        [v2_commit],
        [],
    ]
    text = run_invoke(["-r", str(ROOT), "deploy.log", "--env", "test"], env, cwd=repo)
    assert f"    + {v2_commit}" in text.stdout and f"    - {v2_commit}" in text.stdout
    bad = run_invoke(["-r", str(ROOT), "deploy.log", "--last", "0"], env, cwd=repo)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --last:")
