"""The inventory's environments as the action forms offer them: each one's worker hosts and
whether it requires approval (read from the console's inventory folder, as `--env` reads it)."""

from __future__ import annotations

from dataclasses import dataclass

from celery_app.errors import MaqsafyError
from runbooks.console.wiring import Console
from runbooks.deploy.request import HOSTS
from runbooks.engine.inventory import environments, load_environment


@dataclass(frozen=True)
class Environment:
    """One environment a form may act on; `problem` says why its inventory does not load."""

    name: str
    hosts: tuple[str, ...] = ()
    approval: bool = False
    problem: str = ""


def known(console: Console) -> list[Environment]:
    """Every environment of the inventory folder, in name order."""
    found = []
    for name in environments(console.inventory_dir):
        try:
            inventory = load_environment(name, console.environ, console.inventory_dir)
            hosts = tuple(h.name for h in inventory.select(HOSTS))
        except MaqsafyError as exc:  # a malformed file, an unset secret, no workers group
            found.append(Environment(name, problem=console.redactor.text(str(exc))))
            continue
        found.append(Environment(name, hosts, inventory.approval))
    return found
