"""The lazy mappings a step's templates see as Ansible's `hostvars` and `vars`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from runbooks.engine.inventory import Host, Inventory


class HostVars(Mapping[str, Any]):
    """`hostvars`: each host's book, inventory and extra vars, computed when first asked."""

    def __init__(self, inventory: Inventory, base: Callable[[Host], dict[str, Any]]) -> None:
        self.inventory = inventory
        self.base = base
        self.cache: dict[str, Mapping[str, Any]] = {}

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        if name not in self.cache:
            host = self.inventory.hosts[name]  # KeyError: undefined in a template
            self.cache[name] = {**self.base(host), "inventory_hostname": name}
        return self.cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.inventory.hosts)

    def __len__(self) -> int:
        return len(self.inventory.hosts)


class Vars(Mapping[str, Any]):
    """`vars`: the host's variables as they are now (without itself)."""

    def __init__(self, variables: dict[str, Any]) -> None:
        self.variables = variables

    def __getitem__(self, name: str) -> Any:
        if name == "vars":
            raise KeyError(name)
        return self.variables[name]

    def __iter__(self) -> Iterator[str]:
        return (k for k in self.variables if k != "vars")

    def __len__(self) -> int:
        return len(self.variables) - ("vars" in self.variables)
