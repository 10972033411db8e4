"""Process, port and certificate helpers shared by the local mail servers."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class LocalMailError(RuntimeError):
    """A local mail server could not be started, reached or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that nothing listens on right now (small race: it is released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def imap_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """True once the server sends its ``* OK`` greeting.

    Dovecot accepts TCP before its auth process is ready (the greeting waits for it), and
    stopping a master that is still starting children takes 6 s instead of 1 s.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            greeting = b""
            while not greeting.endswith(b"\n") and len(greeting) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                greeting += chunk
            with contextlib.suppress(OSError):
                sock.sendall(b"x LOGOUT\r\n")
            return greeting.startswith(b"* OK")
    except OSError:
        return False


def set_nodelay(client: Any) -> None:
    """Turn off Nagle on an IMAPClient's socket.

    imapclient writes one command in several send() calls (tag, command, arguments);
    with Nagle on, each SEARCH/APPEND waits ~40 ms for pymap's delayed ACK.
    """
    with contextlib.suppress(OSError, AttributeError):
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    check: Callable[[], None] | None = None,
    interval: float = 0.02,
) -> None:
    """Poll ``predicate`` until true; ``check`` may raise to abort early (e.g. process died)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise LocalMailError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def read_pid(path: Path) -> int | None:
    """Read a pid file; None if absent or garbage."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as dead; our own zombie children are reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def pid_matches(pid: int, needle: str) -> bool:
    """True if the process command line contains ``needle``.

    Guards against killing an unrelated process that inherited a stale pid file's pid.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return pid_alive(pid)  # cannot tell (no /proc): assume it is ours
    return needle.encode() in cmdline


def terminate(pid: int, timeout: float = 15.0, what: str = "process") -> None:
    """SIGTERM ``pid``, wait for it to exit, SIGKILL after ``timeout``."""
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s: killing it", what, pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 5.0, f"{what} (pid {pid}) to die")
            return
        time.sleep(0.01)


def tail(path: Path, lines: int = 15) -> str:
    """Last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path})"
    return "\n".join(text.splitlines()[-lines:])


def make_self_signed_cert(directory: Path, hostnames: tuple[str, ...] = ("localhost",)) -> Path:
    """Create ``cert.pem``/``key.pem`` (P-256, 10 years) in ``directory`` unless present.

    The certificate is its own CA, so ``cert.pem`` is also the file clients trust
    (``ssl.create_default_context(cafile=...)``). It names localhost, 127.0.0.1 and ::1
    because Python checks the IP address when connecting to 127.0.0.1. The stdlib cannot
    create certificates, hence the ``openssl`` CLI.
    """
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return cert
    directory.mkdir(parents=True, exist_ok=True)
    san = ",".join([f"DNS:{h}" for h in hostnames] + ["IP:127.0.0.1", "IP:::1"])
    cmd = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        "/CN=mailhelp localmail",
        "-addext",
        f"subjectAltName={san}",
        "-keyout",
        str(key),
        "-out",
        str(cert),
    ]
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError as exc:
        raise LocalMailError("the openssl CLI is needed for the TLS certificate") from exc
    if proc.returncode != 0:
        raise LocalMailError(f"openssl failed: {proc.stderr.strip()}")
    key.chmod(0o600)
    return cert
