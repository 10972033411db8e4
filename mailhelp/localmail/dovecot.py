"""Run a private Dovecot 2.3 instance (IMAP, IMAPS, LMTP) from a generated config file."""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from ._proc import (
    LocalMailError,
    imap_ready,
    pid_alive,
    pid_matches,
    port_open,
    read_pid,
    tail,
    terminate,
    wait_until,
)

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parent.parent / "localmail_dovecot.conf"

# Services that chroot by default; chroot() needs root, so a non-root instance turns it off.
_CHROOTED_SERVICES = ("anvil", "imap-login", "ipc", "old-stats", "aggregator")


def find_dovecot() -> str | None:
    """Path of the ``dovecot`` binary, also when /usr/sbin is not on a non-root PATH."""
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot", "/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _ensure_mail_user() -> tuple[str, str]:
    """Return (user, group) that owns the mail when Dovecot runs as root.

    Dovecot refuses to access mail as root, so a ``vmail`` system user is created if
    missing (as the Dovecot wiki recommends); ``nobody`` is the fallback.
    """
    for _attempt in range(2):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam("vmail")
            return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        cmd = [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "vmail",
        ]
        try:
            # A concurrent run may win the race: re-check getpwnam instead of trusting rc.
            subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not create the vmail user (%s); using nobody", exc)
            break
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_name, grp.getgrgid(nobody.pw_gid).gr_name


def _privileges(runtime: Path) -> str:
    """Config lines for the users Dovecot runs as; chowns the mail dir as needed."""
    lines = ["first_valid_uid = 1", "first_valid_gid = 1"]
    if os.geteuid() == 0:
        mail_user, mail_group = _ensure_mail_user()
        try:  # Debian's dovecot-core creates these for the unprivileged helper processes
            internal_entry = pwd.getpwnam("dovecot")
            login = pwd.getpwnam("dovenull").pw_name
            internal = internal_entry.pw_name
            internal_group = grp.getgrgid(internal_entry.pw_gid).gr_name
        except KeyError:
            internal, internal_group, login = mail_user, mail_group, mail_user
        lines += [
            f"default_internal_user = {internal}",
            f"default_internal_group = {internal_group}",
            f"default_login_user = {login}",
            f"mail_uid = {mail_user}",
            f"mail_gid = {mail_group}",
        ]
        entry = pwd.getpwnam(mail_user)
        os.chown(runtime / "mail", entry.pw_uid, entry.pw_gid)
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        lines += [
            f"default_internal_user = {me}",
            f"default_internal_group = {group}",
            f"default_login_user = {me}",
        ]
        lines += [f"service {name} {{\n  chroot =\n}}" for name in _CHROOTED_SERVICES]
    return "\n".join(lines)


def _check_user_line(address: str, password: str) -> None:
    for value in (address, password):
        if any(c in value for c in ":\n\r"):
            raise ValueError(f"user names and passwords may not contain ':' or newlines: {value!r}")


def _with_oauth2(text: str, runtime: Path, introspection_url: str) -> str:
    """The config with an oauth2 passdb for XOAUTH2/OAUTHBEARER beside the passwords."""
    ext = runtime / "dovecot-oauth2.conf.ext"
    ext.write_text(
        "introspection_mode = post\n"
        f"introspection_url = {introspection_url}\n"
        # Nothing but the introspection answer decides: is it active, and whose is it.
        "force_introspection = yes\n"
        "username_attribute = username\n"
        "active_attribute = active\n"
        "active_value = true\n")
    ext.chmod(0o644)
    text = text.replace("auth_mechanisms = plain login",
                        "auth_mechanisms = plain login xoauth2 oauthbearer")
    text = text.replace("  driver = passwd-file\n  args = scheme=PLAIN",
                        "  driver = passwd-file\n  mechanisms = plain login\n"
                        "  args = scheme=PLAIN")
    return text + (f"\npassdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                   f"  args = {ext}\n}}\n")


class DovecotServer:
    """One private Dovecot instance: ``config`` in the state dir, data in ``runtime_dir``."""

    def __init__(
        self,
        config: Path,
        runtime_dir: Path,
        host: str,
        imap_port: int,
        imaps_port: int,
        binary: str | None = None,
    ) -> None:
        self.config = Path(config)
        self.runtime_dir = Path(runtime_dir)
        self.host = host
        self.imap_port = imap_port
        self.imaps_port = imaps_port
        self.binary = binary or find_dovecot() or "dovecot"
        self.log_file = self.config.with_name("dovecot.log")
        self._out_file = self.config.with_name("dovecot.out")

    @classmethod
    def create(
        cls,
        state_dir: Path,
        users: Mapping[str, str],
        *,
        host: str,
        imap_port: int,
        imaps_port: int,
        cert_file: Path,
        key_file: Path,
        oauth2_introspection_url: str | None = None,
        imap_settings: str = "",
    ) -> DovecotServer:
        """Write users file and config; the runtime dir is a fresh world-readable /tmp dir.

        ``oauth2_introspection_url``: also take SASL XOAUTH2 and OAUTHBEARER, each token
        checked at that RFC 7662 endpoint (Dovecot's oauth2 passdb, POST mode).
        ``imap_settings``: the lines of the ``protocol imap`` block instead of the test
        suites' own (e.g. a connection limit and capabilities of another server's).
        """
        binary = find_dovecot()
        if binary is None:
            raise LocalMailError(
                "dovecot is not installed (Debian: apt-get install dovecot-imapd dovecot-lmtpd)"
            )
        for address, password in users.items():
            _check_user_line(address, password)
        # Not under state_dir: pytest's tmp_path is root-only (0700) and the unprivileged
        # auth/imap processes must reach the users file and mail; socket paths must be short.
        runtime = Path(tempfile.mkdtemp(prefix="mailhelp-dovecot-", dir="/tmp"))
        runtime.chmod(0o755)
        for sub in ("run", "state", "mail"):
            (runtime / sub).mkdir()
        users_file = runtime / "users"
        users_file.write_text(
            "".join(f"{addr.lower()}:{{PLAIN}}{pw}::::::\n" for addr, pw in users.items())
        )
        users_file.chmod(0o644)
        domain = next(iter(users)).rpartition("@")[2] if users else "localhost"
        values = {
            "RUNTIME_DIR": str(runtime),
            "HOST": host,
            "LOG_FILE": str(Path(state_dir) / "dovecot.log"),
            "CERT_FILE": str(cert_file),
            "KEY_FILE": str(key_file),
            "IMAP_PORT": str(imap_port),
            "IMAPS_PORT": str(imaps_port),
            "POSTMASTER": f"postmaster@{domain}",
            "PRIVILEGES": _privileges(runtime),
        }
        text = TEMPLATE.read_text()
        for name, value in values.items():
            text = text.replace(f"@{name}@", value)
        if oauth2_introspection_url:
            text = _with_oauth2(text, runtime, oauth2_introspection_url)
        if imap_settings:
            # A test's own limits and capabilities, to behave like a hosted server.
            default = "  mail_max_userip_connections = 200\n}"
            if default not in text:
                raise LocalMailError("dovecot.conf template: no protocol imap block to change")
            text = text.replace(default, imap_settings.rstrip("\n") + "\n}", 1)
        config = Path(state_dir) / "dovecot.conf"
        server = cls(config, runtime, host, imap_port, imaps_port, binary)
        config.write_text(text.replace("@INSTANCE@", server.instance))
        return server

    @property
    def lmtp_socket(self) -> Path:
        """Unix socket where Dovecot accepts LMTP deliveries."""
        return self.runtime_dir / "run" / "lmtp"

    @property
    def pid_file(self) -> Path:
        return self.runtime_dir / "run" / "master.pid"

    def pid(self) -> int | None:
        """Pid of the running master process, else None."""
        pid = read_pid(self.pid_file)
        if pid is not None and pid_alive(pid) and pid_matches(pid, "dovecot"):
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 30.0) -> float:
        """Start the master (it daemonises itself); return seconds until IMAP accepted."""
        if self.is_running():
            raise LocalMailError(f"Dovecot already runs (pid {self.pid()}) for {self.config}")
        t0 = time.monotonic()
        with open(self._out_file, "ab") as out:
            # Output to a file, never a pipe: the daemonised master keeps it open and
            # subprocess.run(capture_output=True) would wait forever.
            proc = subprocess.run(
                [self.binary, "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if proc.returncode != 0:
            raise LocalMailError(
                f"dovecot -c {self.config} exited {proc.returncode}:\n"
                f"{tail(self._out_file)}\n{tail(self.log_file)}"
            )

        def check() -> None:
            pid = read_pid(self.pid_file)
            if pid is not None and not pid_alive(pid):
                raise LocalMailError(f"Dovecot died during start:\n{tail(self.log_file)}")

        wait_until(
            lambda: self.lmtp_socket.exists() and imap_ready(self.host, self.imap_port),
            timeout,
            f"Dovecot on {self.host}:{self.imap_port}",
            check,
        )
        elapsed = time.monotonic() - t0
        log.info(
            "Dovecot started in %.2f s (imap %d, imaps %d)",
            elapsed,
            self.imap_port,
            self.imaps_port,
        )
        return elapsed

    @property
    def instance(self) -> str:
        """Dovecot ``instance_name``: its processes are titled ``dovecot-INSTANCE/NAME``."""
        return f"mailhelp-{self.runtime_dir.name.rsplit('-', 1)[-1]}"

    def _leftover_pids(self) -> list[int]:
        """Processes of this instance that outlived the master (found by their title)."""
        marker = f"dovecot-{self.instance}/".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().startswith(marker):
                    found.append(int(entry.name))
        return found

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the master and every process of this instance (clients get BYE); keeps mail."""
        pid = self.pid()
        if pid is not None:
            terminate(pid, timeout, "Dovecot")
        # The master only sends SIGQUIT to imap processes: they stop accepting but keep serving
        # connected clients (an IDLE session would survive the "restart" on the old process).
        # SIGTERM makes them send "* BYE Server shutting down." and exit.
        for leftover in self._leftover_pids():
            terminate(leftover, 5.0, f"Dovecot process {leftover}")
        if pid is not None:
            wait_until(
                lambda: not port_open(self.host, self.imap_port, 0.2),
                timeout,
                f"port {self.imap_port} to close",
            )

    def remove(self) -> None:
        """Stop and delete the runtime dir (mail included)."""
        self.stop()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
