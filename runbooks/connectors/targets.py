"""Where steps run: this machine or an SSH host, behind one interface.

Both targets keep one shell session open for the whole run (:mod:`runbooks.connectors.session`); an
:class:`SSHTarget` holds one Fabric connection per host and one exec channel on it running
``/bin/sh``. Connection failures are translated at this boundary into :class:`HostUnreachable`
with a cause an operator can act on (see :func:`classify`).
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import subprocess
from collections.abc import Mapping
from typing import Any, Protocol

from runbooks.connectors.become import put_through
from runbooks.connectors.session import CommandResult, ShellSession
from runbooks.engine.inventory import Host
from runbooks.errors import HostUnreachable


class Target(Protocol):
    """A host the engine can run scripts on and write files to."""

    name: str

    def run(
        self,
        script: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 300.0,
    ) -> CommandResult: ...

    def put(self, data: bytes, path: str, mode: int | None = None) -> None: ...

    def close(self) -> None: ...


class _SessionTarget:
    """Shared behaviour: scripts and file writes go through the one shell session."""

    name: str
    _session: ShellSession | None

    def _open_session(self) -> ShellSession:
        raise NotImplementedError

    def run(
        self,
        script: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 300.0,
    ) -> CommandResult:
        if self._session is None or self._session.broken:
            self._session = self._open_session()
        return self._session.run(script, env=env, cwd=cwd, timeout=timeout)

    def put(self, data: bytes, path: str, mode: int | None = None) -> None:
        """Write `data` to `path` atomically (temp file, then rename) through the session."""
        put_through(self, data, path, mode)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class _ProcessPipe:
    """A local `sh` process's stdin/stdout/stderr."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            ["/bin/sh"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(environ) if environ is not None else None,
        )

    def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def read(self, timeout: float) -> tuple[bytes, bytes, bool]:
        assert self.process.stdout is not None and self.process.stderr is not None
        streams = [self.process.stdout, self.process.stderr]
        ready, _, _ = select.select(streams, [], [], timeout)
        out = os.read(streams[0].fileno(), 65536) if streams[0] in ready else b""
        err = os.read(streams[1].fileno(), 65536) if streams[1] in ready else b""
        closed = bool(ready) and not out and not err and self.process.poll() is not None
        return out, err, closed

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class LocalTarget(_SessionTarget):
    """This machine: one local `/bin/sh` carries every step, no SSH."""

    def __init__(self, name: str = "localhost", environ: Mapping[str, str] | None = None):
        self.name = name
        self._environ = environ
        self._session = None

    def _open_session(self) -> ShellSession:
        return ShellSession(_ProcessPipe(self._environ), self.name)


class _ChannelPipe:
    """One paramiko channel running `/bin/sh`."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def send(self, data: bytes) -> None:
        self.channel.sendall(data)

    def read(self, timeout: float) -> tuple[bytes, bytes, bool]:
        channel = self.channel
        if not (channel.recv_ready() or channel.recv_stderr_ready()):
            select.select([channel], [], [], timeout)
        out = channel.recv(65536) if channel.recv_ready() else b""
        err = channel.recv_stderr(65536) if channel.recv_stderr_ready() else b""
        closed = not out and not err and (channel.closed or channel.exit_status_ready())
        return out, err, closed

    def close(self) -> None:
        self.channel.close()


class SSHTarget(_SessionTarget):
    """An SSH host: one Fabric connection, one exec channel running `/bin/sh` for all steps."""

    def __init__(self, host: Host) -> None:
        self.name = host.name
        self.host = host
        self._connection: Any = None
        self._jump: SSHTarget | None = None
        self._session = None

    def connect(self) -> None:
        """Open the connection (idempotent); raise HostUnreachable with the cause."""
        if self._connection is not None:
            return
        from fabric import Connection

        host = self.host
        connect_kwargs: dict[str, Any] = {
            "banner_timeout": host.timeout,
            "auth_timeout": host.timeout,
            "allow_agent": host.key is None and host.password is None,
            "look_for_keys": host.key is None and host.password is None,
        }
        if host.key:
            key = os.path.expanduser(host.key)
            if not os.path.isfile(key):
                raise HostUnreachable(host.name, "auth", f"key file {host.key} not found")
            mode = os.stat(key).st_mode & 0o777
            if mode & 0o077:  # as OpenSSH's client refuses an unprotected private key
                raise HostUnreachable(
                    host.name,
                    "auth",
                    f"key file {host.key} may be read by others (mode {mode:o}): chmod 600 it",
                )
            connect_kwargs["key_filename"] = key
        if host.password:
            connect_kwargs["password"] = host.password
        if host.key_passphrase:
            connect_kwargs["passphrase"] = host.key_passphrase
        if host.jump is not None:
            connect_kwargs["sock"] = self._through_jump(host, host.jump)
        connection = Connection(
            host=host.address,
            user=host.user,
            port=host.port,
            connect_timeout=max(1, math.ceil(host.timeout)),
            connect_kwargs=connect_kwargs,
        )
        _host_keys(connection.client, host)
        try:
            connection.open()
        except Exception as exc:
            connection.close()
            self._close_jump()
            raise classify(host, exc) from exc
        self._connection = connection

    def _through_jump(self, host: Host, jump: Host) -> Any:
        """A channel from the jump host to `host`'s SSH port, for paramiko to talk over."""
        import paramiko

        through = SSHTarget(jump)
        try:
            through.connect()
        except HostUnreachable as exc:
            raise HostUnreachable(
                host.name, exc.cause, f"jump host {jump.address}:{jump.port}: {exc.detail}"
            ) from exc
        self._jump = through
        try:
            return through.transport().open_channel(
                "direct-tcpip", (host.address, host.port), ("127.0.0.1", 0), timeout=host.timeout
            )
        except (paramiko.SSHException, OSError) as exc:
            self._close_jump()
            reason = getattr(exc, "text", None) or str(exc) or type(exc).__name__
            cause = "refused" if "refused" in reason.lower() else "network"
            raise HostUnreachable(
                host.name,
                cause,
                f"{host.address}:{host.port} from jump host {jump.address}: {reason}",
            ) from exc

    def _close_jump(self) -> None:
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    def transport(self) -> Any:
        """The paramiko transport of this host's one connection (opened if need be)."""
        self.connect()
        return self._connection.client.get_transport()

    def _open_session(self) -> ShellSession:
        self.connect()
        try:
            transport = self._connection.client.get_transport()
            channel = transport.open_session(timeout=self.host.timeout)
            channel.exec_command("exec /bin/sh")
        except Exception as exc:
            raise classify(self.host, exc, lost=True) from exc
        return ShellSession(_ChannelPipe(channel), self.name)

    def sftp(self) -> Any:
        """An SFTP client on this host's one connection (Fabric opens it once and caches it)."""
        self.connect()
        try:
            return self._connection.sftp()
        except Exception as exc:
            raise classify(self.host, exc, lost=True) from exc

    def close(self) -> None:
        super().close()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._close_jump()


def _host_keys(client: Any, host: Host) -> None:
    """Apply the host's `host_key_check` policy to a paramiko client (Fabric accepts any key)."""
    import paramiko

    if host.host_key_check == "off":
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return
    path = os.path.expanduser(host.known_hosts)
    if host.host_key_check == "accept-new":
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if not os.path.exists(path):
            with open(path, "a", encoding="utf-8"):
                pass
        client.load_host_keys(path)  # AutoAddPolicy saves new keys back to this file
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return
    if os.path.exists(path):
        client.load_host_keys(path)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())


def classify(host: Host, exc: BaseException, lost: bool = False) -> HostUnreachable:
    """Translate a connection error into HostUnreachable(cause)."""
    import paramiko

    where = f"{host.address}:{host.port}"
    if isinstance(exc, socket.gaierror):
        return HostUnreachable(host.name, "unresolved", f"{host.address}: {exc.strerror or exc}")
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostUnreachable(
            host.name,
            "hostkey",
            f"{where} presented a different host key than {host.known_hosts} holds "
            "(a reinstalled host, or someone in between: check before trusting it)",
        )
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return HostUnreachable(
            host.name,
            "hostkey",
            f"{where} is not in {host.known_hosts}: add its key (ssh-keyscan) or set "
            "host_key_check: accept-new",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return HostUnreachable(host.name, "auth", f"{host.user or ''}@{where}: {exc}")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errors = list(exc.errors.values())
        if errors and all(getattr(e, "errno", None) == errno.ECONNREFUSED for e in errors):
            return HostUnreachable(host.name, "refused", f"nothing listens on {where}")
        return HostUnreachable(host.name, "network", f"{where}: {exc}")
    if isinstance(exc, ConnectionRefusedError):
        return HostUnreachable(host.name, "refused", f"nothing listens on {where}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return HostUnreachable(host.name, "timeout", f"{where} did not answer in {host.timeout:g}s")
    if isinstance(exc, paramiko.SSHException) and str(exc) == "No existing session" and not lost:
        # paramiko's start_client returns silently when its timeout passes mid-handshake,
        # and the next call finds no session: the handshake did not finish in time.
        return HostUnreachable(
            host.name, "timeout", f"{where} did not finish the SSH handshake in {host.timeout:g}s"
        )
    if isinstance(exc, paramiko.SSHException):
        text = str(exc)
        if "banner" in text.lower() or "timeout" in text.lower() or "timed out" in text.lower():
            return HostUnreachable(
                host.name, "timeout", f"{where} sent no SSH banner in {host.timeout:g}s"
            )
        return HostUnreachable(host.name, "lost" if lost else "ssh", f"{where}: {text}")
    if isinstance(exc, OSError):
        return HostUnreachable(host.name, "network", f"{where}: {exc.strerror or exc}")
    return HostUnreachable(host.name, "lost" if lost else "ssh", f"{where}: {exc}")


def open_target(host: Host, environ: Mapping[str, str] | None = None) -> Target:
    """The target for `host`, connected; raise HostUnreachable when it cannot be reached."""
    if host.is_local:
        return LocalTarget(host.name, environ)
    target = SSHTarget(host)
    target.connect()
    return target
