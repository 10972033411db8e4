"""``LocalMail``: start, attach to, restart, clear and stop the local IMAP + SMTP servers."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._proc import (
    LocalMailError,
    free_port,
    imap_ready,
    make_self_signed_cert,
    pid_alive,
    pid_matches,
    port_open,
    read_pid,
    tail,
    terminate,
    wait_until,
)
from .dovecot import DovecotServer, find_dovecot
from .mailboxes import Mailboxes

log = logging.getLogger(__name__)

DEFAULT_PASSWORD = "secret"
DEFAULT_ADDRESSES = (
    "help@school.test",
    "teacher1@school.test",
    "teacher2@school.test",
    "tech1@school.test",
    "tech2@school.test",
)
SERVERS_JSON = "servers.json"
KINDS = ("auto", "dovecot", "pymap")
# The directory that contains the ``mailhelp`` package, for the helper processes' PYTHONPATH.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def default_users(password: str = DEFAULT_PASSWORD) -> dict[str, str]:
    """The five demo/test accounts, all with the same password."""
    return dict.fromkeys(DEFAULT_ADDRESSES, password)


def resolve_kind(kind: str) -> str:
    """``auto`` means Dovecot when its binary is installed, else pymap."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if kind == "auto":
        return "dovecot" if find_dovecot() else "pymap"
    return kind


class LocalMail(Mailboxes):
    """Handle on a running set of local mail servers (IMAP: Dovecot or pymap; SMTP relay).

    Create with :meth:`start` or :meth:`attach`; everything needed to reconnect from
    another process is in ``STATE_DIR/servers.json``.
    """

    def __init__(self, info: Mapping[str, Any]) -> None:
        self.info: dict[str, Any] = dict(info)
        self.kind: str = info["kind"]
        self.state_dir = Path(info["state_dir"])
        self.imap_host: str = info["imap_host"]
        self.imap_port: int = info["imap_port"]
        self.imaps_port: int | None = info.get("imaps_port")
        self.smtp_host: str = info["smtp_host"]
        self.smtp_port: int | None = info.get("smtp_port")
        self.users: dict[str, str] = dict(info["users"])
        self.ca_file: str | None = info.get("ca_file")
        self.lmtp_socket: str | None = info.get("lmtp_socket")
        self._dovecot: DovecotServer | None = None
        if self.kind == "dovecot":
            self._dovecot = DovecotServer(
                Path(info["dovecot_config"]),
                Path(info["dovecot_runtime_dir"]),
                self.imap_host,
                self.imap_port,
                int(info["imaps_port"]),
            )

    # -- creation --------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        state_dir: str | os.PathLike[str] | None = None,
        kind: str = "auto",
        *,
        host: str = "127.0.0.1",
        imap_port: int = 0,
        imaps_port: int = 0,
        smtp_port: int = 0,
        users: Mapping[str, str] | None = None,
        password: str = DEFAULT_PASSWORD,
        smtp: bool = True,
        smtp_starttls: bool = False,
        detach: bool = False,
        timeout: float = 30.0,
    ) -> LocalMail:
        """Start IMAP (+ SMTP) servers and return once they accept connections.

        Ports 0 mean "pick a free one". ``detach=False`` (tests): the servers are stopped
        when this process exits (atexit; the Python helpers also notice if it is killed).
        ``detach=True`` (the CLI): they run until ``stop``.
        """
        kind = resolve_kind(kind)
        if state_dir is None:
            state = Path(tempfile.mkdtemp(prefix="mailhelp-localmail-", dir="/tmp"))
            owns_state_dir = True
        else:
            owns_state_dir = False
            state = Path(state_dir).resolve()
            if (state / SERVERS_JSON).exists():
                old = cls.attach(state)
                if any(old.status().values()):
                    raise LocalMailError(f"servers already run for {state}; stop them first")
                old.stop()  # leftovers of a crashed run
            state.mkdir(parents=True, exist_ok=True)
        users = dict(users) if users else default_users(password)
        info: dict[str, Any] = {
            "kind": kind,
            "state_dir": str(state),
            "imap_host": host,
            "imap_port": imap_port or free_port(host),
            "imaps_port": None,
            "smtp_host": host,
            "smtp_port": (smtp_port or free_port(host)) if smtp else None,
            "users": users,
            "ca_file": None,
            "lmtp_socket": None,
            "smtp_starttls": smtp_starttls,
            "watch_pid": None if detach else os.getpid(),
            "remove_state_dir": owns_state_dir,  # we made it, so stop() deletes it
        }
        if kind == "dovecot" or smtp_starttls:
            info["ca_file"] = str(make_self_signed_cert(state / "tls"))
        if kind == "dovecot":
            info["imaps_port"] = imaps_port or free_port(host)
            server = DovecotServer.create(
                state,
                users,
                host=host,
                imap_port=info["imap_port"],
                imaps_port=info["imaps_port"],
                cert_file=state / "tls" / "cert.pem",
                key_file=state / "tls" / "key.pem",
            )
            info["lmtp_socket"] = str(server.lmtp_socket)
            info["dovecot_config"] = str(server.config)
            info["dovecot_runtime_dir"] = str(server.runtime_dir)
        self = cls(info)
        self._write_json()
        try:
            if smtp:
                self._launch("smtp")  # in parallel with the IMAP start; it needs no IMAP yet
            self.start_imap(timeout)
            if smtp:
                self._wait_helper("smtp", self.smtp_port, timeout)
        except BaseException:
            self.stop()
            raise
        if not detach:
            atexit.register(self.stop)
        return self

    @classmethod
    def attach(cls, state_dir: str | os.PathLike[str]) -> LocalMail:
        """Handle on servers started by another process (reads ``servers.json``)."""
        path = Path(state_dir) / SERVERS_JSON
        try:
            return cls(json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise LocalMailError(f"no {path}: start the servers first") from exc

    def __enter__(self) -> LocalMail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"LocalMail(kind={self.kind!r}, imap={self.imap_host}:{self.imap_port}, "
            f"imaps={self.imaps_port}, smtp={self.smtp_port}, state_dir='{self.state_dir}')"
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start_imap(self, timeout: float = 30.0) -> float:
        """Start the IMAP server (same ports, same mail); seconds until it accepted."""
        t0 = time.monotonic()
        if self._dovecot is not None:
            self._dovecot.start(timeout)
        else:
            self._launch("pymap")
            self._wait_helper("pymap", self.imap_port, timeout)
        return time.monotonic() - t0

    def stop_imap(self, timeout: float = 15.0) -> None:
        """Stop the IMAP server; Dovecot keeps the mail on disk, pymap loses it."""
        if self._dovecot is not None:
            self._dovecot.stop(timeout)
        else:
            self._stop_helper("pymap", timeout)

    def restart_imap(self, timeout: float = 30.0) -> float:
        """Real stop + start of the IMAP server process; returns the seconds it took."""
        t0 = time.monotonic()
        self.stop_imap(timeout)
        self.start_imap(timeout)
        return time.monotonic() - t0

    def start_smtp(self, timeout: float = 30.0) -> None:
        """(Re)start the SMTP relay process on its port."""
        if self.smtp_port is None:
            raise LocalMailError("these servers were started without SMTP")
        self._launch("smtp")
        self._wait_helper("smtp", self.smtp_port, timeout)

    def stop_smtp(self, timeout: float = 15.0) -> None:
        self._stop_helper("smtp", timeout)

    def stop(self) -> None:
        """Stop everything this state dir runs and delete Dovecot's mail (idempotent)."""
        atexit.unregister(self.stop)  # no-op for attached handles
        self._stop_helper("smtp")
        if self._dovecot is not None:
            self._dovecot.remove()
        else:
            self._stop_helper("pymap")
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / SERVERS_JSON).unlink()
        if self.info.get("remove_state_dir"):
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def status(self) -> dict[str, bool]:
        """Which servers accept connections: ``{"imap": bool, "smtp": bool}``."""
        if self._dovecot is not None:
            imap_up = self._dovecot.is_running()
        else:
            imap_up = self._helper_pid("pymap") is not None
        smtp_up = self._helper_pid("smtp") is not None
        return {
            "imap": imap_up and port_open(self.imap_host, self.imap_port),
            "smtp": smtp_up
            and self.smtp_port is not None
            and port_open(self.smtp_host, self.smtp_port),
        }

    # -- helper processes (pymap, SMTP relay) ----------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def _helper_pid(self, name: str) -> int | None:
        pid = read_pid(self._pid_file(name))
        if pid is not None and pid_alive(pid) and pid_matches(pid, "mailhelp.localmail"):
            return pid
        return None

    def _launch(self, name: str) -> None:
        """Run ``python -m mailhelp.localmail _serve NAME``; it forks a daemon and exits."""
        if self._helper_pid(name) is not None:
            raise LocalMailError(f"{name} already runs for {self.state_dir}")
        self._pid_file(name).unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "mailhelp.localmail",
            "_serve",
            name,
            "--state-dir",
            str(self.state_dir),
        ]
        if self.info.get("watch_pid"):
            cmd += ["--parent-pid", str(self.info["watch_pid"])]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")])
        )
        log_file = self.state_dir / f"{name}.log"
        with open(log_file, "ab") as out:
            # The launcher forks the real server and exits, so no Popen object outlives this
            # call (pytest would report "subprocess still running" ResourceWarnings).
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.state_dir,
                timeout=60,
                check=False,
            )
        if proc.returncode != 0:
            raise LocalMailError(f"{name} helper failed to start:\n{tail(log_file)}")

    def _wait_helper(self, name: str, port: int | None, timeout: float) -> None:
        assert port is not None

        def check() -> None:
            pid = read_pid(self._pid_file(name))
            if pid is None or not pid_alive(pid):
                raise LocalMailError(
                    f"{name} died during start:\n{tail(self.state_dir / f'{name}.log')}"
                )

        host = self.imap_host if name == "pymap" else self.smtp_host
        probe = imap_ready if name == "pymap" else port_open
        wait_until(lambda: probe(host, port), timeout, f"{name} on port {port}", check)

    def _stop_helper(self, name: str, timeout: float = 15.0) -> None:
        pid = self._helper_pid(name)
        if pid is not None:
            terminate(pid, timeout, name)
        self._pid_file(name).unlink(missing_ok=True)

    def _write_json(self) -> None:
        tmp = self.state_dir / f".{SERVERS_JSON}.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(self.state_dir / SERVERS_JSON)

    # -- data ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """What ``servers.json`` holds."""
        return dict(self.info)

    def write_env(self, path: str | os.PathLike[str]) -> Path:
        """Write ``LOCALMAIL_*=value`` lines (shell-quoted) for ``source`` or CI env files."""
        values = {
            "KIND": self.kind,
            "STATE_DIR": str(self.state_dir),
            "IMAP_HOST": self.imap_host,
            "IMAP_PORT": self.imap_port,
            "IMAPS_PORT": self.imaps_port or "",
            "SMTP_HOST": self.smtp_host,
            "SMTP_PORT": self.smtp_port or "",
            "CA_FILE": self.ca_file or "",
            "USERS": ",".join(self.users),
            "PASSWORD": next(iter(self.users.values()), ""),
        }
        out = Path(path)
        out.write_text("".join(f"LOCALMAIL_{k}={shlex.quote(str(v))}\n" for k, v in values.items()))
        return out
