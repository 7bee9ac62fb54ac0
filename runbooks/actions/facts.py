"""`facts`: gather the host's system facts (read-only) into the `facts` variable."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from runbooks.actions.base import Action, Outcome, StepContext, first_line
from runbooks.engine.source import Fields
from runbooks.facts import system


class GatherFacts(Action):
    """Read hostname, OS, uptime, free disk, Python and which tools exist."""

    name = "facts"
    read_only = True

    def validate(self, params: Fields) -> dict[str, Any]:
        params.only("path")
        return {"path": params.text("path", "/")}

    def run(self, ctx: StepContext, params: dict[str, Any]) -> Outcome:
        result = ctx.target.run(system.script(params.get("path") or "/"), timeout=ctx.timeout)
        if result.rc != 0:
            return Outcome(
                "failed",
                f"facts script exit {result.rc}: {first_line(result.stderr)}",
                rc=result.rc,
                stderr=result.stderr,
            )
        facts = system.parse(result.stdout)
        data = asdict(facts)
        return Outcome("ok", facts.summary(), data, rc=0, stdout=result.stdout, facts=data)


ACTIONS = (GatherFacts(),)
