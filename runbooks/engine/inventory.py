"""Environments: hosts, groups and vars, read from `inventory/<environment>.yml`.

    environment: staging
    approval: required                         # deploy and rollback need a second person
    defaults: {user: deploy, port: 22, key: ~/.ssh/maqsafy_deploy, timeout: 10}
    vars:
      redis_host: redis.internal
      redis_password: ${REDIS_PASSWORD}        # a reference, never a literal
    groups:
      workers: {vars: {celery_queues: payments}}
    hosts:
      worker-1: {address: 10.0.1.11, groups: [workers]}
      localhost: {connection: local}           # this machine, no SSH
    reach: ssh                                 # or direct (see below)
    jump: {address: bastion.example.org, user: deploy, key: ~/.ssh/maqsafy_jump}

How `--env` commands reach the environment's Redis (``reach``): ``ssh`` (the default when any
host is reached over SSH) tunnels it through an app host (:mod:`runbooks.reach.tunnel`),
``direct`` connects from this machine, which must then be inside the network (the default when
every host is local). ``jump`` names a jump host every SSH connection of the environment goes
through (address, port, user, key, known_hosts, host_key_check, timeout; `defaults` apply).

Host keys are checked against `known_hosts` (default ``~/.ssh/known_hosts``) per
`host_key_check`: ``strict`` (the default: an unknown or changed key refuses the host),
``accept-new`` (remember an unknown key in that file; a changed one is still refused) or ``off``.

Secret fields (a host's `password`/`key_passphrase`, any var whose name is a secret name, and
any URL carrying a password) must be a ``${VAR}`` reference (``${VAR:-default}`` allowed); a
literal is refused with file:line:field. The secret-name rule is the one redaction masks by
(:func:`celery_app.infra.redaction.secret_name`): ``redis_password``, ``api_token``, ``redis_pass``,
``db_pwd``, ``redis_auth``, ``signing_key``, ``client_secret``; not ``key`` (the SSH key's path),
``host_key_check``, ``cache_key``, ``key_prefix``.
Webhook targets (`notify:`, URLs as ``${VAR}`` only) are :mod:`runbooks.notify.targets`'s.
References resolve from the environment mapping given to :func:`load_inventory`; the values
found in secret fields are returned in :attr:`Inventory.secrets` for redaction.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from celery_app.infra.redaction import secret_name
from celery_app.inputs import environment_name, shown
from celery_app.settings import PROJECT_ROOT
from runbooks.engine.source import Fields, approval_required, load_yaml
from runbooks.errors import InventoryError, NotFound, SecretLiteral
from runbooks.notify import targets as notify_targets
from runbooks.notify.targets import NotifyTarget

INVENTORY_DIR = PROJECT_ROOT / "inventory"
HOST_KEY_CHECKS = ("strict", "accept-new", "off")
REACHES = ("ssh", "direct")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_HOST_KEYS = (
    "address",
    "port",
    "user",
    "key",
    "password",
    "key_passphrase",
    "connection",
    "timeout",
    "host_key_check",
    "known_hosts",
    "groups",
    "vars",
)


@dataclass(frozen=True)
class Host:
    """One host of an environment and how to reach it."""

    name: str
    address: str
    connection: str = "ssh"  # ssh | local
    port: int = 22
    user: str | None = None
    key: str | None = None
    password: str | None = field(default=None, repr=False)
    key_passphrase: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    host_key_check: str = "strict"  # strict | accept-new | off
    known_hosts: str = "~/.ssh/known_hosts"
    groups: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    jump: Host | None = None  # the environment's jump host, when it names one

    @property
    def is_local(self) -> bool:
        return self.connection == "local"


@dataclass(frozen=True)
class Inventory:
    """One environment: its hosts, groups (with `all`), vars and the secrets it referenced."""

    environment: str
    path: Path
    hosts: dict[str, Host]
    groups: dict[str, tuple[str, ...]]
    vars: Mapping[str, Any]
    group_vars: Mapping[str, Mapping[str, Any]]
    secrets: tuple[str, ...] = field(default=(), repr=False)
    approval: bool = False  # `approval: required`: deploy and rollback need an approval
    notify: tuple[NotifyTarget, ...] = ()  # webhook targets (runbooks.notify)
    reach: str = "direct"  # ssh | direct: how --env commands reach its Redis

    def host_vars(self, host: Host) -> dict[str, Any]:
        """Environment vars, overridden by each group's, overridden by the host's own."""
        merged: dict[str, Any] = dict(self.vars)
        for group in host.groups:
            merged.update(self.group_vars.get(group, {}))
        merged.update(host.vars)
        return merged

    def select(self, pattern: str | None = None, limit: str | None = None) -> list[Host]:
        """Hosts matching the book's `pattern` and the operator's `--limit`, in file order."""
        chosen = self._match(pattern or "all", "hosts")
        if limit:
            allowed = set(self._match(limit, "--limit"))
            chosen = [name for name in chosen if name in allowed]
        return [self.hosts[name] for name in chosen]

    def _match(self, pattern: str, what: str) -> list[str]:
        included: set[str] = set()
        excluded: set[str] = set()
        for raw in pattern.split(","):
            term = raw.strip()
            if not term:
                continue
            target = excluded if term.startswith("!") else included
            term = term.lstrip("!")
            if term in self.groups:
                found = set(self.groups[term])
            else:
                found = {n for n in self.hosts if fnmatch.fnmatchcase(n, term)}
            if not found:
                raise NotFound(
                    f"{what} {shown(term)} matches no host or group of environment "
                    f"{self.environment!r} (hosts: {', '.join(self.hosts) or 'none'}; "
                    f"groups: {', '.join(sorted(self.groups))})"
                )
            target |= found
        if not included and not excluded:
            raise NotFound(f"{what} {shown(pattern)} names no host or group")
        if not included and excluded:
            included = set(self.hosts)
        return [name for name in self.hosts if name in included and name not in excluded]


def inventory_path(environment: str, directory: Path | None = None) -> Path:
    """The file of `environment` (`<dir>/<env>.yml`), or NotFound listing the known ones."""
    directory = directory or INVENTORY_DIR
    environment_name(environment, NotFound)  # it becomes a file name: checked first
    for suffix in (".yml", ".yaml"):
        path = directory / f"{environment}{suffix}"
        if _is_file(path):
            return path
    known = environments(directory)
    raise NotFound(
        f"no inventory for environment {shown(environment)} in {shown(str(directory))} "
        f"(known: {', '.join(known) or 'none'}; copy an *.example.yml to start one)"
    )


def environments(directory: Path | None = None) -> list[str]:
    """The environments `directory` (default inventory/) has an inventory for, by name."""
    found = _listed(directory or INVENTORY_DIR)
    return sorted(p.stem for p in found if not p.stem.endswith(".example"))


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long, a folder that cannot be read: no inventory there
        return False


def _listed(directory: Path) -> list[Path]:
    try:
        return list(directory.glob("*.yml"))
    except OSError:
        return []


def load_environment(
    environment: str, environ: Mapping[str, str], directory: Path | None = None
) -> Inventory:
    return load_inventory(inventory_path(environment, directory), environ)


class _Resolver:
    """Resolve ${VAR} references in one file, refusing literal secrets."""

    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = environ
        self.secrets: list[str] = []

    def value(self, fields: Fields, key: Any, value: Any, secret: bool) -> Any:
        if isinstance(value, dict):
            sub = Fields(self.path, value, InventoryError, fields.field(key))
            return {k: self.value(sub, k, v, secret or secret_name(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(fields, key, v, secret) for v in value]
        if not isinstance(value, str):
            if secret and value is not None:
                raise self._literal(fields, key)
            return value
        if secret and value.strip() and not _REFERENCE.fullmatch(value.strip()):
            raise self._literal(fields, key)
        self._check_url(fields, key, value)
        resolved = self.resolve(fields, key, value)
        if secret and resolved:
            self.secrets.append(resolved)
        return resolved

    def resolve(self, fields: Fields, key: Any, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.environ:
                value = self.environ[name]
            elif default is not None:
                value = default
            else:
                raise fields.fail(key, f"${{{name}}} is not set in the environment (or .env)")
            if secret_name(name) and value:
                self.secrets.append(value)  # ${REDIS_PASSWORD} inside a URL is still a secret
            return value

        resolved = _REFERENCE.sub(one, text)
        if resolved != text and "://" in resolved:
            try:
                password = urlsplit(resolved.strip()).password
            except ValueError:
                password = None
            if password:
                self.secrets.append(password)
        return resolved

    def _check_url(self, fields: Fields, key: Any, text: str) -> None:
        if "://" not in text:
            return
        try:
            password = urlsplit(text.strip()).password
        except ValueError:
            return
        if password and not _REFERENCE.fullmatch(password):
            raise self._literal(fields, key, "a password inside a URL")

    def _literal(self, fields: Fields, key: Any, what: str = "a literal secret") -> SecretLiteral:
        return SecretLiteral(
            self.path,
            fields.line_of(key),
            fields.field(key),
            f"{what} is refused; write a reference like ${{REDIS_PASSWORD}} and set the "
            "variable in the environment",
        )


def _vars(resolver: _Resolver, fields: Fields, key: str) -> dict[str, Any]:
    sub = fields.mapping(key)
    return {k: resolver.value(sub, k, v, secret_name(k)) for k, v in sub.data.items()}


def load_inventory(path: Path, environ: Mapping[str, str]) -> Inventory:
    """Load and validate one inventory file; raise InventoryError naming file, line, field."""
    document = load_yaml(path, InventoryError)
    top = Fields(path, document, InventoryError)
    top.only(
        "environment", "description", "reach", "jump", "approval", "defaults", "vars", "groups",
        "hosts", "notify",
    )  # fmt: skip
    resolver = _Resolver(path, environ)
    environment = top.text("environment") or path.name.split(".")[0]
    defaults = top.mapping("defaults")
    defaults.only(*(k for k in _HOST_KEYS if k not in ("address", "groups", "vars")))
    env_vars = _vars(resolver, top, "vars")

    group_vars: dict[str, dict[str, Any]] = {}
    groups_field = top.mapping("groups")
    for name in groups_field.names():
        entry = groups_field.mapping(name)
        entry.only("vars", "description")
        group_vars[str(name)] = _vars(resolver, entry, "vars")

    hosts: dict[str, Host] = {}
    groups: dict[str, list[str]] = {"all": [], **{g: [] for g in group_vars}}
    hosts_field = top.mapping("hosts")
    if not hosts_field.data:
        raise InventoryError(path, top.line_of("hosts"), "hosts", "lists no host")
    jump = _host(resolver, top, "jump", defaults) if top.has("jump") else None
    if jump is not None and (jump.is_local or not top.mapping("jump").has("address")):
        raise top.fail("jump", "a jump host is reached over SSH and needs an address")
    for name in hosts_field.names():
        host = _host(resolver, hosts_field, str(name), defaults)
        if jump is not None and not host.is_local:
            host = replace(host, jump=jump)
        hosts[host.name] = host
        groups["all"].append(host.name)
        for group in host.groups:
            groups.setdefault(group, []).append(host.name)
    reach = top.text("reach") or (
        "ssh" if any(not h.is_local for h in hosts.values()) else "direct"
    )
    if reach not in REACHES:
        raise top.fail("reach", f"expected one of: {', '.join(REACHES)}")
    return Inventory(
        environment=environment,
        path=path,
        hosts=hosts,
        groups={k: tuple(v) for k, v in groups.items()},
        vars=env_vars,
        group_vars=group_vars,
        secrets=tuple(sorted(set(resolver.secrets), key=len, reverse=True)),
        approval=approval_required(top),
        notify=notify_targets.parse(path, top),
        reach=reach,
    )


def _host(resolver: _Resolver, hosts: Fields, name: str, defaults: Fields) -> Host:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
        raise hosts.fail(name, "a host name may hold letters, digits and . _ : - only")
    entry = hosts.mapping(name)
    entry.only(*_HOST_KEYS)

    def setting(key: str) -> Fields:
        return entry if entry.has(key) else defaults

    def text(key: str, secret: bool = False) -> str | None:
        source = setting(key)
        value = source.text(key)
        if value is None:
            return None
        return str(resolver.value(source, key, value, secret))

    connection = text("connection") or "ssh"
    if connection not in ("ssh", "local"):
        raise setting("connection").fail("connection", "expected ssh or local")
    address = text("address") or name
    port = setting("port").integer("port", 22, 1, 65535)
    timeout = setting("timeout").number("timeout", 10.0, 0.1, 600)
    host_key_check = text("host_key_check") or "strict"
    if host_key_check not in HOST_KEY_CHECKS:
        raise setting("host_key_check").fail(
            "host_key_check", f"expected one of: {', '.join(HOST_KEY_CHECKS)}"
        )
    return Host(
        name=name,
        address=address,
        connection=connection,
        port=port or 22,
        user=text("user"),
        key=text("key"),
        password=text("password", secret=True),
        key_passphrase=text("key_passphrase", secret=True),
        timeout=timeout,
        host_key_check=host_key_check,
        known_hosts=text("known_hosts") or "~/.ssh/known_hosts",
        groups=tuple(entry.str_list("groups")),
        vars=_vars(resolver, entry, "vars"),
    )
