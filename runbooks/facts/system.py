"""System facts: one POSIX script prints key=value lines, parsed into :class:`SystemFacts`."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

TOOLS = ("redis-cli", "docker", "celery")

_SCRIPT = r"""
printf 'hostname=%s\n' "$(hostname 2>/dev/null || uname -n)"
printf 'os=%s\n' "$( (. /etc/os-release 2>/dev/null && printf '%s' "$PRETTY_NAME") || uname -s)"
printf 'kernel=%s\n' "$(uname -sr)"
printf 'uptime_seconds=%s\n' "$(cut -d. -f1 /proc/uptime 2>/dev/null)"
printf 'disk_free_bytes=%s\n' "$(df -Pk DISK_PATH 2>/dev/null | awk 'NR==2 {print $4 * 1024}')"
printf 'python=%s\n' "$(python3 -V 2>/dev/null | cut -d' ' -f2)"
for tool in TOOLS; do
  if command -v "$tool" >/dev/null 2>&1; then printf 'has_%s=yes\n' "$tool";
  else printf 'has_%s=no\n' "$tool"; fi
done
"""


@dataclass(frozen=True)
class SystemFacts:
    hostname: str
    os: str
    kernel: str
    uptime_seconds: int | None
    disk_free_bytes: int | None
    python: str | None
    has_redis_cli: bool
    has_docker: bool
    has_celery: bool

    def summary(self) -> str:
        tools = [t for t in TOOLS if getattr(self, "has_" + t.replace("-", "_"))]
        free = f"{self.disk_free_bytes / 2**30:.1f} GiB free" if self.disk_free_bytes else "disk ?"
        return (
            f"{self.hostname}: {self.os}, up {self.uptime_seconds or '?'}s, {free}, "
            f"python {self.python or 'none'}, tools: {', '.join(tools) or 'none'}"
        )


def script(disk_path: str = "/") -> str:
    return _SCRIPT.replace("DISK_PATH", shlex.quote(disk_path)).replace("TOOLS", " ".join(TOOLS))


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def parse(output: str) -> SystemFacts:
    """Parse the script's key=value lines (unknown keys are ignored)."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return SystemFacts(
        hostname=values.get("hostname", ""),
        os=values.get("os", ""),
        kernel=values.get("kernel", ""),
        uptime_seconds=_int(values.get("uptime_seconds", "")),
        disk_free_bytes=_int(values.get("disk_free_bytes", "")),
        python=values.get("python") or None,
        has_redis_cli=values.get("has_redis-cli") == "yes",
        has_docker=values.get("has_docker") == "yes",
        has_celery=values.get("has_celery") == "yes",
    )
