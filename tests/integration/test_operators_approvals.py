"""Operators, tokens, roles and the two-person rule, through the real `invoke` on real SQL.

Each test runs on SQLite and on PostgreSQL (the `database_url` fixture), but the two longest
(~25-35 s a database: a dozen `invoke` processes each) on PostgreSQL only: the access tables
are plain ORM rows, and the rest of this file keeps both databases. Every operator has
their own config folder (`XDG_CONFIG_HOME`), as on their own laptop; `invoke login` writes the
token there. Commands whose password comes from stdin run one by one (`run_invoke`); the others
in one batch per step (`run_invoke_batch`: the same program, a fork each).
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select, text, update

from celery_app.bootstrap import Container
from celery_app.infra.embedded import stop_embedded_redis
from celery_app.infra.models import FailedTask
from celery_app.stores.login import LoginGuard
from runbooks.access import operators, token_file
from runbooks.access.tables import Approval, OperatorToken
from runbooks.engine import history
from tests.support.cli import INVOKE, ROOT, clean_environ, run_invoke_batch
from tests.support.health import fail_a_task
from tests.support.redis_app import migrated_app
from tests.support.services import RedisServer

PASSWORDS = {name: f"{name}-correct-horse-battery" for name in ("root", "bob", "ana", "val")}
ROLES = {"bob": "approver", "ana": "operator", "val": "viewer"}


class Team:
    """A migrated database and the operators' laptops (one config folder each)."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.base = {
            "DATABASE_URL": database_url,
            "MAQSAFY_VAR_DIR": str(tmp_path / "var"),
            "MAQSAFY_ENV_FILE": str(tmp_path / "no.env"),
        }
        self.app: Container = migrated_app(self.base)

    def env(self, who: str) -> dict[str, str]:
        return clean_environ(**self.base, XDG_CONFIG_HOME=str(self.tmp_path / "cfg" / who))

    def typed(self, who: str, args: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        """`invoke ARGS` as `who`, with `stdin` (a password) on standard input."""
        return subprocess.run(
            [*INVOKE, *args],
            cwd=ROOT,
            env=self.env(who),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def run(self, *runs: tuple[str, Sequence[str]]) -> list[subprocess.CompletedProcess[str]]:
        """Each (who, args) as `invoke ARGS` on that operator's laptop, in order."""
        return run_invoke_batch([(args, self.env(who)) for who, args in runs])

    def one(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run((who, args))[0]

    def runs(self) -> list[dict[str, Any]]:
        return list(reversed(history.list_runs(self.app.sessions, 100)))

    def approval(self, number: int) -> Approval:
        with self.app.sessions() as session:
            row = session.get(Approval, number)
            assert row is not None
            return row

    def set_up(self, typed: bool = True) -> None:
        """root (admin) through the real commands; the others added by root, each logged in.

        typed=False: the same through the service functions (test_accounts_tokens_and_roles
        covers the commands), each token in its operator's config folder as `login` puts it.
        """
        if not typed:
            sessions = self.app.sessions
            operators.add(sessions, "root", "admin", PASSWORDS["root"], "test")
            for name, role in ROLES.items():
                operators.add(sessions, name, role, PASSWORDS[name], "root")
            for name in PASSWORDS:
                token, _ = operators.login(sessions, name, PASSWORDS[name])
                token_file.save({"XDG_CONFIG_HOME": str(self.tmp_path / "cfg" / name)}, token)
            return
        assert self.typed("root", ["operators.add", "root", "--role", "admin"], PASSWORDS["root"])
        assert self.typed("root", ["login", "root"], PASSWORDS["root"] + "\n").returncode == 0
        for name, role in ROLES.items():
            added = self.typed("root", ["operators.add", name, "--role", role], PASSWORDS[name])
            assert added.returncode == 0, added.stderr
            logged = self.typed(name, ["login", name], PASSWORDS[name] + "\n")
            assert logged.returncode == 0, logged.stderr


def refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2, one `error:` line holding `words`, no traceback."""
    assert done.returncode == 2, (done.args, done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def team(tmp_path: Path, database_url: str) -> Iterator[Team]:
    yield Team(tmp_path, database_url)
    # `invoke login` starts the embedded default's Redis (its login protection), as any
    # command that needs Redis does; it outlives the command on a laptop, not here.
    stop_embedded_redis(tmp_path / "var")


def test_no_accounts_one_local_operator(team: Team, tmp_path: Path) -> None:
    """As before: a dangerous command runs (with a warning) as the OS user; a book that
    declares `approval: required` is refused, saying to create accounts."""
    fail_a_task(team.app, "t-1")
    book = tmp_path / "guarded.yml"
    book.write_text(
        "name: guarded\napproval: required\nhosts: all\n"
        "steps:\n  - name: touch\n    shell: 'touch {{ marker }}'\n"
        f"vars: {{marker: {tmp_path / 'ran'}}}\n"
    )
    flushed, guarded = team.run(("laptop", ["failed.flush"]), ("laptop", ["run", str(book)]))
    assert flushed.returncode == 0 and "flushed 1 failed tasks" in flushed.stdout
    assert "warning: failed.flush would need an approval" in flushed.stderr
    refused(guarded, "book guarded requires approval", "operators.add")
    assert not (tmp_path / "ran").exists()
    [run] = team.runs()
    assert run["name"] == "failed.flush" and run["operator"] == os.environ.get(
        "USER", run["operator"]
    )
    assert run["approved_by"] == ""


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_accounts_tokens_and_roles(team: Team, tmp_path: Path) -> None:
    first = team.typed("root", ["operators.add", "ana", "--role", "operator"], "x" * 20)
    refused(first, "first operator account must be an admin")
    no_flag = team.typed("root", ["operators.add", "root", "--password", "x"], "")
    assert no_flag.returncode == 2 and "unknown flag" in no_flag.stderr
    team.set_up()

    # the token file: the user's alone; the database keeps only a digest
    token_file = tmp_path / "cfg" / "ana" / "maqsafy-ops" / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    token = token_file.read_text().strip()
    with team.app.sessions() as session:
        digests = session.scalars(select(OperatorToken.digest)).all()
        dump = " ".join(digests)
    assert token not in dump and len(digests) == 4

    before = len(team.runs())
    viewer, nobody, wrong, listed = team.run(
        ("val", ["failed.prune", "--hours", "1"]),
        ("stranger", ["failed.prune", "--hours", "1"]),
        ("val", ["operators.add", "eve"]),
        ("val", ["operators.list", "--json"]),
    )
    refused(viewer, "val is a viewer", "needs the operator role")
    refused(nobody, "log in first")
    refused(wrong, "val is a viewer", "needs the admin role")
    assert listed.returncode == 0 and '"role": "approver"' in listed.stdout
    assert len(team.runs()) == before  # refused: nothing recorded
    bad_login = team.typed("val", ["login", "val"], "not-her-password\n")
    refused(bad_login, "login refused")
    # Password guesses share the account's budget with the console's sign-in: once it is
    # spent (here by nine more wrong sign-ins), even the right password is refused for a while.
    guard = LoginGuard.from_container(team.app)
    for _ in range(9):
        assert guard.attempt("val", "192.0.2.7").allowed  # each counted as failed
    locked = team.typed("val", ["login", "val"], PASSWORDS["val"] + "\n")
    refused(locked, "too many sign-in attempts")
    guard.reset("account", "val")

    ana_prunes = team.one("ana", "failed.prune", "--hours", "1")
    assert ana_prunes.returncode == 0, ana_prunes.stderr
    assert team.runs()[-1]["operator"] == "ana"

    # revoked (logout) and disabled operators' tokens stop working
    assert team.one("val", "logout").returncode == 0
    assert not (tmp_path / "cfg" / "val" / "maqsafy-ops" / "token").exists()
    disabled, after_disable = team.run(
        ("root", ["operators.disable", "ana"]), ("ana", ["failed.prune", "--hours", "1"])
    )
    assert disabled.returncode == 0, disabled.stderr
    refused(after_disable, "revoked or its operator disabled")
    refused(team.one("root", "operators.disable", "root"), "last active admin")
    with team.app.sessions.begin() as session:  # every token's expiry comes
        session.execute(update(OperatorToken).values(expires_at=text("created_at")))
    refused(team.one("bob", "failed.prune", "--hours", "1"), "the token expired")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_person_rule(team: Team) -> None:
    team.set_up(typed=False)
    for n in range(3):
        fail_a_task(team.app, f"t-{n}")
    asking = ["failed.flush", "--reason", "incident 42: stale failures"]

    no_reason, asked, listed = team.run(
        ("ana", ["failed.flush"]), ("ana", asking), ("bob", ["approvals", "--json"])
    )
    refused(no_reason, "failed.flush needs an approval", "--reason")
    assert asked.returncode == 3, asked.stderr
    assert "approval 1 requested" in asked.stderr and "invoke approve 1" in asked.stderr
    assert '"status": "pending"' in listed.stdout and "incident 42" in listed.stdout
    assert count_failed(team) == 3  # nothing ran
    assert team.approval(1).requested_by == "ana" and len(team.approval(1).digest) == 64

    # denied: it never runs
    denied, run_denied = team.run(("bob", ["deny", "1"]), ("ana", ["approvals.run", "1"]))
    assert denied.returncode == 0, denied.stderr
    refused(run_denied, "approval 1 is denied")

    # approved by the same operator, or by one without the approver role: refused
    _, self_approved, operator_approved, viewer_approved, admin_denied = team.run(
        ("bob", asking),  # an approver may ask too: then another one decides
        ("bob", ["approve", "2"]),
        ("ana", ["approve", "2"]),
        ("val", ["approve", "2"]),
        ("root", ["deny", "2"]),  # root is an admin: approver and more
    )
    refused(self_approved, "requested by bob", "another approver")
    refused(operator_approved, "ana is an operator", "approver role")
    refused(viewer_approved, "val is a viewer", "approver role")
    assert admin_denied.returncode == 0, admin_denied.stderr
    assert team.approval(2).status == "denied" and team.approval(2).decided_by == "root"

    # approved by another, run once by the requester; a second run refused
    _, approved, by_bob, ran, again = team.run(
        ("ana", asking),
        ("bob", ["approve", "3"]),
        ("bob", ["approvals.run", "3"]),
        ("ana", ["approvals.run", "3"]),
        ("ana", ["approvals.run", "3"]),
    )
    assert approved.returncode == 0, approved.stderr
    refused(by_bob, "requested by ana", "only they run it")
    assert ran.returncode == 0 and "flushed 3 failed tasks" in ran.stdout, ran.stderr
    refused(again, "approval 3 is used")
    run = team.runs()[-1]
    assert (run["name"], run["operator"], run["approved_by"], run["approval_id"]) == (
        "failed.flush",
        "ana",
        "bob",
        3,
    )
    assert team.approval(3).run_id == run["id"]
    shown = team.one("ana", "history.show", str(run["id"]))
    assert "by ana, approved by bob (approval 3)" in shown.stdout

    # changed arguments: the stored command line no longer matches what was approved
    fail_a_task(team.app, "t-9")
    team.run(("ana", [*asking, "--hours", "48"]), ("bob", ["approve", "4"]))
    with team.app.sessions.begin() as session:
        session.execute(
            update(Approval)
            .where(Approval.id == 4)
            .values(arguments=team.approval(4).arguments.replace('"48"', '"0"'))
        )
    refused(team.one("ana", "approvals.run", "4"), "arguments differ", "nothing ran")
    assert count_failed(team) == 1 and team.approval(4).status == "approved"

    # expired: refused, nothing ran
    team.run(("ana", asking), ("bob", ["approve", "5", "--hours", "1"]))
    with team.app.sessions.begin() as session:
        session.execute(
            update(Approval).where(Approval.id == 5).values(expires_at=text("requested_at"))
        )
    refused(team.one("ana", "approvals.run", "5"), "approval 5 is expired")
    assert count_failed(team) == 1
    statuses = {a.id: a.status for a in all_approvals(team)}
    assert statuses == {1: "denied", 2: "denied", 3: "used", 4: "approved", 5: "approved"}


def test_environment_and_queue_rules(team: Team, tmp_path: Path, redis_server: RedisServer) -> None:
    """An inventory's `approval: required` holds deploy and rollback; a money queue's purge
    with --force and production's cache clear are approval requests too."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    urls = {"guarded": "redis://127.0.0.1:1/0", "production": redis_server.url}
    for name, approval in (("guarded", "approval: required\n"), ("production", "")):
        (inventory / f"{name}.yml").write_text(
            f"environment: {name}\n{approval}"
            f"vars: {{redis_url: '{urls[name]}'}}\n"  # guarded: nothing answers, nothing reached
            "hosts:\n  here: {connection: local, groups: [workers]}\n"
        )
    cached = redis.Redis.from_url(redis_server.url)
    cached.set("maqsafy:cache:prices:today", "42")  # production's cache: still there after
    deploy = ["deploy", "--env", "guarded", "--inventory", str(inventory)]
    alone = team.one("laptop", *deploy)
    refused(alone, "environment guarded requires approval", "operators.add")
    team.set_up(typed=False)
    no_reason, asked, checked = team.run(
        ("ana", deploy),
        ("ana", [*deploy, "--reason", "release 7"]),
        ("ana", [*deploy, "--check", "--json"]),
    )
    refused(no_reason, "deploy needs an approval", "--reason")
    assert asked.returncode == 3 and "approval 1 requested" in asked.stderr, asked.stderr
    assert team.approval(1).why.startswith("environment guarded requires approval")
    # check mode changes nothing: no approval asked (its preflight finds no Redis there)
    refused(checked, "preflight: Redis did not answer")
    deployed = [r for r in team.runs() if r["name"] == "deploy"]
    assert [(r["operator"], r["check"], r["status"]) for r in deployed] == [("ana", True, "failed")]
    purge, clear, default_queue = team.run(
        ("ana", ["queue.purge", "payments", "--yes", "--force", "--reason", "poison message"]),
        ("ana", ["cache.clear", "--env", "production", "--inventory", str(inventory),
                 "--reason", "stale prices"]),
        ("val", ["queue.purge", "payments", "--yes", "--force", "--reason", "x"]),
    )  # fmt: skip
    assert purge.returncode == 3 and "purging money queue 'payments'" in purge.stderr
    assert clear.returncode == 3 and "clearing production's cache" in clear.stderr
    assert cached.get("maqsafy:cache:prices:today") == b"42"  # asked for, not cleared
    refused(default_queue, "val is a viewer")
    asked_for = [(a.command, a.environment, a.requested_by) for a in all_approvals(team)]
    assert asked_for == [
        ("deploy", "guarded", "ana"),
        ("queue.purge", "local", "ana"),
        ("cache.clear", "production", "ana"),
    ]


def count_failed(team: Team) -> int:
    with team.app.sessions() as session:
        return len(session.scalars(select(FailedTask.id)).all())


def all_approvals(team: Team) -> list[Approval]:
    with team.app.sessions() as session:
        return list(session.scalars(select(Approval).order_by(Approval.id)).all())
