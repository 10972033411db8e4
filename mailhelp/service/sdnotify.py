"""systemd's notification protocol (sd_notify), for ``Type=notify`` units.

One datagram per message, ``KEY=value`` lines, to the AF_UNIX socket systemd names in
$NOTIFY_SOCKET (a path, or an abstract name written with a leading ``@``). Outside
systemd the variable is unset and every call does nothing, so the daemon needs no
special case and no dependency.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    """Tells the service manager how the daemon is doing: READY, STATUS, WATCHDOG."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        environ = dict(os.environ if environ is None else environ)
        self.address = _address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog = _watchdog_interval(environ)
        self.socket: socket.socket | None = None
        self.last_ping = 0.0
        self.last_status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram; False (logged once at debug level) when it could not go."""
        if self.address is None:
            return False
        try:
            if self.socket is None:
                self.socket = socket.socket(socket.AF_UNIX,
                                            socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never waits: a manager that reads no more (its queue of datagrams full)
            # must not stop the daemon's loop, nor its answer to SIGTERM.
            self.socket.sendto("\n".join(lines).encode(), socket.MSG_DONTWAIT, self.address)
            return True
        except OSError as error:
            # The manager went away (a test's socket, a stopped systemd) or is not
            # reading: the daemon goes on; it only loses these reports.
            log.debug("action=sd_notify_failed error=%s", error)
            return False

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))
        self.last_status = status or self.last_status

    def status(self, text: str) -> None:
        if text != self.last_status:
            self.last_status = text
            self.send(f"STATUS={text}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd 253+ tell this reload from an earlier one.
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={now}", "STATUS=reloading the configuration")

    def reloaded(self, status: str) -> None:
        self.last_status = status
        self.send("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def alive(self) -> None:
        """WATCHDOG=1, at most every half of WATCHDOG_USEC (and never without one).

        Called from the daemon's loop, never from a thread of its own: a loop that is
        stuck stops the pings, and systemd restarts the service.
        """
        if self.watchdog is None:
            return
        now = time.monotonic()
        if now - self.last_ping >= self.watchdog / 2:
            self.last_ping = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):  # Linux's abstract namespace: a NUL byte, then the name
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.warning("action=sd_notify_unsupported socket=%s (only AF_UNIX sockets are spoken)",
                value)
    return None


def _watchdog_interval(environ: dict[str, str]) -> float | None:
    """Seconds in WATCHDOG_USEC, when it is meant for this process (WATCHDOG_PID)."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000
