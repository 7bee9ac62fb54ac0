"""Docker facts on a host, the platform page's checks: `docker ps`, `docker logs`, networks.

Each function takes a target (this machine or an SSH host) and returns typed values. When Docker
cannot answer, :class:`DockerUnavailable` says which of the usual reasons holds: the client is
not installed, the daemon is not running, or this user may not use its socket.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from celery_app.inputs import shown
from runbooks.connectors.targets import Target
from runbooks.errors import RunbookError

SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
NO_CLIENT = "maqsafy: docker not installed"


class DockerUnavailable(RunbookError):
    """Docker cannot answer on a host; `reason` is installed, running, permission or error."""

    def __init__(self, host: str, reason: str, detail: str) -> None:
        self.host, self.reason = host, reason
        what = {
            "installed": "Docker is not installed on",
            "running": "Docker is not running on",
            "permission": "this user may not use Docker on",
        }.get(reason, "docker failed on")
        super().__init__(f"{what} {host}" + (f" ({detail})" if detail else ""))


def _docker(target: Target, args: list[str], timeout: float = 30.0, merge: bool = False) -> str:
    script = (
        f"command -v docker >/dev/null 2>&1 || {{ echo '{NO_CLIENT}' >&2; exit 127; }}\n"
        f"docker {' '.join(shlex.quote(a) for a in args)}"
    )
    result = target.run(script, timeout=timeout)
    if result.ok:
        return result.stdout + result.stderr if merge else result.stdout
    error = result.stderr.strip()
    first = error.splitlines()[0] if error else f"exit status {result.rc}"
    if NO_CLIENT in error:
        raise DockerUnavailable(target.name, "installed", "no docker command on PATH")
    if "Cannot connect to the Docker daemon" in error or "daemon running" in error:
        raise DockerUnavailable(target.name, "running", first)
    if "permission denied" in error.lower():
        raise DockerUnavailable(target.name, "permission", "add the user to the docker group")
    raise DockerUnavailable(target.name, "error", first[:200])


def _json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            value = json.loads(line)
            found.extend(value if isinstance(value, list) else [value])
    return found


@dataclass(frozen=True)
class ContainerFact:
    name: str
    image: str
    state: str
    status: str
    ports: str
    networks: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def containers(target: Target) -> list[ContainerFact]:
    """Every container (running or not), like `docker ps -a`."""
    return containers_from(_json_lines(_docker(target, ["ps", "-a", "--format", "{{json .}}"])))


def check_service(name: str) -> str:
    """Return `name` if it can be a container or service name, else raise RunbookError."""
    if not SERVICE.fullmatch(name):
        raise RunbookError(f"not a container name: {shown(name)} (letters, digits, _ . -)")
    return name


def logs(target: Target, service: str, tail: int = 100) -> str:
    """The last `tail` lines of a container's log (its stdout and stderr)."""
    return _docker(target, ["logs", "--tail", str(tail), check_service(service)], 60.0, True)


@dataclass(frozen=True)
class NetworkFact:
    name: str
    driver: str
    containers: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "driver": self.driver, "containers": list(self.containers)}


def networks(target: Target) -> list[NetworkFact]:
    """Each network and the containers on it, like `docker network ls` + `inspect`."""
    listed = _json_lines(_docker(target, ["network", "ls", "--format", "{{json .}}"]))
    names = [str(n.get("Name", "")) for n in listed if n.get("Name")]
    if not names:
        return []
    inspected = _json_lines(_docker(target, ["network", "inspect", *names]))
    return [
        NetworkFact(
            name=str(n.get("Name", "")),
            driver=str(n.get("Driver", "")),
            containers=tuple(
                sorted(str(c.get("Name", "")) for c in (n.get("Containers") or {}).values())
            ),
        )
        for n in inspected
    ]


def _serves(container: ContainerFact, labels: str, host: str) -> bool:
    return container.name == host or f"com.docker.compose.service={host}" in labels


def explain_unreachable(target: Target, redis_host: str) -> list[str]:
    """Which of the page's Docker causes holds for a Redis host name that fails on `target`."""
    try:
        rows = _json_lines(_docker(target, ["ps", "-a", "--format", "{{json .}}"]))
    except DockerUnavailable as exc:
        return [f"{exc}: the container causes cannot be checked here; check REDIS_HOST"]
    every = containers_from(rows)
    found = [
        c
        for c, r in zip(every, rows, strict=True)
        if _serves(c, str(r.get("Labels", "")), redis_host)
    ]
    if not found:
        names = ", ".join(c.name for c in every) or "none"
        return [
            f"no container is named or serves {redis_host!r} (containers: {names}): the Redis "
            "container is not running, or the service was renamed, or REDIS_HOST is wrong"
        ]
    lines = []
    for container in found:
        if container.state != "running":
            lines.append(f"container {container.name} is {container.state}: start it")
        else:
            lines.append(
                f"container {container.name} runs on network(s) {container.networks or 'none'}: "
                "the app's container must join one of them (invoke docker.networks)"
            )
    return lines


def containers_from(rows: list[dict[str, Any]]) -> list[ContainerFact]:
    return [
        ContainerFact(
            name=str(r.get("Names", "")),
            image=str(r.get("Image", "")),
            state=str(r.get("State", "")),
            status=str(r.get("Status", "")),
            ports=str(r.get("Ports", "")),
            networks=str(r.get("Networks", "")),
        )
        for r in rows
    ]
