"""Reach an environment's Redis from outside its network: through SSH to one of its app hosts.

For the command's lifetime a local forwarder listens on 127.0.0.1 (an ephemeral port); each
connection made to it becomes a ``direct-tcpip`` channel on the one SSH connection to the app
host, whose sshd connects to Redis as the app host sees it (its name resolution, its network),
as ``ssh -L`` does. The jump host, when the inventory names one, is crossed by the SSH
connection itself (:class:`~runbooks.connectors.targets.SSHTarget`).

The command's code does not change: its URLs keep the environment's Redis name and port, and
:func:`route` makes this process's name lookups (``socket.getaddrinfo``, which redis-py, kombu
and the doctor's own sockets all call) answer the forwarder's address for exactly that
``(host, port)``. So output and history name the environment's Redis (``redis:6379``), never
the forwarder's port, and a TLS client still checks the certificate against the real name.

Before any command talks through it, one channel is opened and closed: a Redis that the app
host cannot resolve or reach fails there, with the hop named and the platform page's causes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from celery_app.ops.redis_causes import CAUSES
from runbooks.connectors.targets import SSHTarget
from runbooks.engine.inventory import Host
from runbooks.errors import HostUnreachable, NotReachable

Address = tuple[str, int]
_routes: dict[Address, Address] = {}
_routes_lock = threading.Lock()
_resolve: Callable[..., Any] = socket.getaddrinfo


def _routed_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    try:
        key = (str(name), int(port))
    except (TypeError, ValueError):
        key = None
    found = _routes.get(key) if key is not None else None
    if found is not None:
        return _resolve(found[0], found[1], *args, **kwargs)
    return _resolve(host, port, *args, **kwargs)


def route(original: Address, local: Address) -> None:
    """From now on, connections to `original` by name go to `local` (the forwarder)."""
    with _routes_lock:
        _routes[original] = local
        socket.getaddrinfo = _routed_getaddrinfo


def unroute(original: Address) -> None:
    """Connections to `original` go to it again (name lookups as before, once none is left)."""
    with _routes_lock:
        _routes.pop(original, None)
        if not _routes:
            socket.getaddrinfo = _resolve


class _OpenFailures(logging.Handler):
    """The app host's reason for a refused channel ("Connection refused", a name that does not
    resolve) is only logged, by the transport's thread; the exception says "Connect failed".
    With this handler in place the log line no longer lands on the operator's terminal."""

    _said = re.compile(r"open FAILED: (.*): [^:]*$")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        found = self._said.search(record.getMessage())
        if found:
            self.last = found.group(1)


_failures = _OpenFailures()
logging.getLogger("paramiko.transport").addHandler(_failures)


def explain(host: str, port: int, reason: str, timeout: float) -> str:
    """`reason` (an OS or sshd error text) in the platform page's words, with its causes."""
    lowered = reason.lower()
    if "refused" in lowered:
        kind = "refused"
    elif "resol" in lowered or "not known" in lowered or "no address" in lowered:
        kind = "resolve"
    elif "timed out" in lowered:
        kind = "timeout"
    else:
        kind = "unreachable"
    cause = CAUSES[kind]
    summary = cause.summary.format(host=host, port=port, timeout=f"{timeout:g}")
    return f"{summary} ({reason}); possible causes: {'; '.join(cause.causes)}"


def _pump(client: socket.socket, channel: Any, closed: threading.Event) -> None:
    """Copy bytes both ways until either side closes or the tunnel does."""
    try:
        while not closed.is_set():
            readable, _, _ = select.select([client, channel], [], [], 0.5)
            if client in readable:
                data = client.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(65536)
                if not data:
                    break
                client.sendall(data)
    except Exception:  # either end went away, or the tunnel closed: this connection is done
        pass
    finally:
        with contextlib.suppress(Exception):
            channel.close()
            client.close()


class Tunnel:
    """One SSH connection to an app host and a forwarder to `destination` from there."""

    def __init__(self, host: Host, destination: Address, what: str = "Redis") -> None:
        self.host = host
        self.destination = destination
        self.what = what
        self._target = SSHTarget(host)
        self._listener: socket.socket | None = None
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[Any] = []  # both ends of every connection, closed with the tunnel

    @property
    def hop(self) -> str:
        where, port = self.destination
        return f"{self.what} {where}:{port} from {self.host.name} (reach: ssh)"

    def _channel(self, origin: Address) -> Any:
        return self._target.transport().open_channel(
            "direct-tcpip", self.destination, origin, timeout=self.host.timeout
        )

    def open(self) -> Address:
        """Connect, check the far end answers, start forwarding; return the local address."""
        try:
            self._target.connect()
        except HostUnreachable as exc:
            raise NotReachable(
                f"SSH to the app host {self.host.name} failed ({exc.cause}: {exc.detail}); "
                f"--env reaches {self.destination[0]}:{self.destination[1]} through it"
            ) from exc
        _failures.last = None
        try:
            self._channel(("127.0.0.1", 0)).close()
        except Exception as exc:
            self._target.close()
            raise self._diagnose(exc) from exc
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self._listener = listener
        local = listener.getsockname()[:2]
        self._start(self._accept)
        route(self.destination, local)
        return local

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                client, origin = self._listener.accept()
            except OSError:
                return
            try:
                channel = self._channel(origin[:2])
            except Exception:
                client.close()  # the caller sees a closed connection; open() checked the path
                continue
            self._sockets += [client, channel]
            self._start(_pump, client, channel, self._closed)

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="tunnel", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _diagnose(self, exc: BaseException) -> NotReachable:
        """The far end refused: say which hop, and why in the platform page's words."""
        import paramiko

        host, port = self.destination
        reason = _failures.last or getattr(exc, "text", None) or str(exc) or repr(exc)
        code = getattr(exc, "code", None)
        if isinstance(exc, paramiko.ChannelException) and code == 1:
            return NotReachable(
                f"{self.hop}: the app host's sshd does not allow TCP forwarding ({reason}); "
                "set AllowTcpForwarding yes there, or run this command on a host inside"
            )
        return NotReachable(f"{self.hop}: {explain(host, port, reason, self.host.timeout)}")

    def close(self) -> None:
        """Stop forwarding: every connection through the tunnel ends, then the SSH one."""
        self._closed.set()
        unroute(self.destination)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
            self._listener.close()
            self._listener = None
        for end in self._sockets:
            with contextlib.suppress(Exception):
                end.close()  # wakes its pump at once
        for thread in self._threads:
            thread.join(2.0)
        self._target.close()
