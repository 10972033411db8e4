"""`mailhelp run` as a service: sd_notify, `mailhelp status`, SIGTERM and SIGHUP.

The daemon runs in a process of its own against real Dovecot and SMTP, with
NOTIFY_SOCKET pointing at a datagram socket this test binds, as systemd would.
"""

from __future__ import annotations

import ctypes
import email
import email.policy
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import Daemon, mailhelp, outbox, sent_kinds, wait_for_outbox, write_config

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"
HELP = "help@school.test"
TEACHER = "teacher1@school.test"


def teacher_mail(n: int, subject: str) -> bytes:
    raw = (DATA / "teacher_projector.eml").read_bytes()
    return (raw.replace(b"<CAF1234567890projector@mail.gmail.com>",
                        f"<service-{n}-{time.time_ns()}@mail.gmail.com>".encode())
               .replace(b"Projector in room 12 does not turn on", subject.encode()))


def subject_of(raw: bytes) -> str:
    return email.message_from_bytes(raw, policy=email.policy.default)["Subject"]


class Manager:
    """What systemd would be to the daemon: the notification socket it reads, all the
    time (``reading=False``: a manager that reads nothing, whose queue fills up)."""

    def __init__(self, reading: bool = True) -> None:
        self.name = f"@mailhelp-test-{os.getpid()}-{time.time_ns()}"  # abstract: no file
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + self.name[1:])
        self.received: list[str] = []
        self.arrived = threading.Condition()
        self.closed = False
        if reading:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        self.socket.settimeout(0.2)
        while not self.closed:
            try:
                text = self.socket.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.arrived:
                self.received.append(text)
                self.arrived.notify_all()

    def wait_for(self, line: str, timeout: float = 20) -> list[str]:
        """Wait until a datagram holds ``line``; return everything read so far."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not any(line in m.splitlines() for m in self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{line!r} never came; got {self.received}")
                self.arrived.wait(left)
            return list(self.received)

    def fill(self) -> int:
        """Fill this manager's queue to the brim (it reads nothing); how many it took."""
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        taken = 0
        try:
            while True:
                sender.sendto(b"FILLER=1", socket.MSG_DONTWAIT, "\0" + self.name[1:])
                taken += 1
        except BlockingIOError:
            return taken
        finally:
            sender.close()

    def close(self) -> None:
        self.closed = True
        self.socket.close()


class Service(Daemon):
    """`mailhelp run` started the way systemd starts a Type=notify unit."""

    def __init__(self, config: Path, manager: Manager, watchdog_usec: int = 0) -> None:
        env = {**os.environ, "NOTIFY_SOCKET": manager.name}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        super().__init__(config, env)

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        super().wait_for_log(text, timeout)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def terminate(self) -> float:
        """SIGTERM; the seconds it took to exit (it must exit 0)."""
        started = time.monotonic()
        assert self.stop() == 0, self.output()
        return time.monotonic() - started


def status(config: Path) -> tuple[int, dict]:
    done = mailhelp(config, "status", "--json")
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def manager():
    manager = Manager()
    yield manager
    manager.close()


@pytest.fixture
def config(tmp_path, database_url, mail) -> Path:
    templates = tmp_path / "templates"
    templates.mkdir()
    path = write_config(tmp_path, database_url, mail,
                        extra=f'[templates]\ndir = "{templates}"\n')
    done = mailhelp(path, "init")
    assert done.returncode == 0, done.stderr.decode()
    return path


def test_ready_watchdog_status_healthy_and_a_prompt_stop(mail, config, manager):
    service = Service(config, manager, watchdog_usec=1_000_000)
    try:
        manager.wait_for("READY=1")
        manager.wait_for("WATCHDOG=1")  # every half second, while the loop turns in IDLE
        service.wait_for_log("action=imap_connected")
        code, health = status(config)
        assert code == 0, health
        assert health["status"] == "healthy" and health["daemon"]["running"] is True
        assert health["daemon"]["pid"] == service.process.pid
        [mailbox] = health["mailboxes"]
        assert mailbox["connected"] is True and mailbox["mode"] == "idle"
        assert mailbox["folder"] == "INBOX" and mailbox["waiting"] == 0
        assert mailbox["last_check"] and mailbox["last_fetch"] is None

        mail.deliver(HELP, teacher_mail(1, "Printer jam"))
        mail.wait_for_messages(TEACHER, 1, timeout=20)
        text = mailhelp(config, "status")
        assert text.returncode == 0, text.stdout.decode()
        lines = text.stdout.decode().splitlines()
        [line] = [x for x in lines if x.split()[1:2] == ["mailbox"]]
        assert "connected, IDLE" in line and "last fetch" in line and "0 waiting" in line
        assert lines[-1] == "status: healthy"
        assert any(m.startswith("STATUS=127.0.0.1: waiting for mail") for m in
                   manager.received)
    finally:
        # In IDLE when the signal comes: the wait is cut short, well inside 10 s.
        took = service.terminate()
    assert took < 10, f"stopped after {took:.1f}s"
    manager.wait_for("STOPPING=1", timeout=1)
    assert "action=daemon_stop" in service.output()
    code, health = status(config)
    assert code == 1 and health["daemon"]["running"] is False
    assert health["problems"][0].startswith("daemon: stopped")


def test_a_manager_that_reads_nothing_never_holds_up_the_daemon(mail, config):
    """systemd's queue of notifications is short (ten datagrams); a manager that stops
    reading it must cost the daemon its reports, never its loop or its prompt stop.
    (A blocking send once kept it from stopping on SIGTERM: killed after 30 s.)"""
    deaf = Manager(reading=False)
    assert deaf.fill() > 0  # full before the daemon's first word
    service = Service(config, deaf, watchdog_usec=100_000)  # a ping every 50 ms
    try:
        service.wait_for_log("action=imap_connected")
        mail.deliver(HELP, teacher_mail(1, "Projector"))
        mail.wait_for_messages(TEACHER, 1, timeout=20)  # the loop still turns
    finally:
        took = service.terminate()
        deaf.close()
    assert took < 10, f"stopped after {took:.1f}s"
    assert "action=daemon_stop" in service.output()


def test_imap_down_is_degraded_and_the_daemon_is_ready_all_the_same(tmp_path, database_url,
                                                                     mail, manager):
    from mailhelp.localmail import free_port

    path = write_config(tmp_path, database_url, mail)
    assert mailhelp(path, "init").returncode == 0
    closed = write_config(tmp_path, database_url, mail, extra=f"[imap]\nport = {free_port()}")
    service = Service(closed, manager)
    try:
        # Ready, so that systemd does not restart it in a loop while the server is away.
        received = manager.wait_for("READY=1")
        assert any("imap disconnected" in m for m in received), received
        code, health = status(closed)
        assert code == 1, health
        assert health["daemon"]["running"] is True
        [mailbox] = health["mailboxes"]
        assert mailbox["ok"] is False and mailbox["connected"] is False
        assert "refused" in mailbox["error"].lower()
        assert any(p.startswith("mailbox INBOX: ") for p in health["problems"])
    finally:
        assert service.terminate() < 10


def test_sighup_takes_a_changed_template_for_the_next_mail(mail, config, manager):
    templates = config.parent / "templates"
    write_ack(templates, "First wording")
    service = Service(config, manager)
    try:
        manager.wait_for("READY=1")
        service.wait_for_log("action=imap_connected")
        mail.deliver(HELP, teacher_mail(1, "Beamer"))
        [first] = mail.wait_for_messages(TEACHER, 1, timeout=20)
        assert subject_of(first) == "First wording [#1] Beamer"

        write_ack(templates, "Second wording")
        service.signal(signal.SIGHUP)
        service.wait_for_log("action=reload ")
        manager.wait_for("RELOADING=1")
        mail.deliver(HELP, teacher_mail(2, "Laptop"))
        mail.wait_for_messages(TEACHER, 2, timeout=20)
        wait_for_outbox(config, 2, to=TEACHER)
    finally:
        assert service.terminate() < 10
    # Stopped, it sends nothing more: one ack per message, each sent once.
    assert sent_kinds(outbox(config, to=TEACHER)) == ["ack", "ack"]
    assert sorted(subject_of(a) for a in mail.messages(TEACHER)) == [
        "First wording [#1] Beamer", "Second wording [#2] Laptop"]


def test_sighup_with_a_config_that_no_longer_loads_keeps_the_old_one(mail, config, manager):
    service = Service(config, manager)
    good = config.read_text()
    try:
        manager.wait_for("READY=1")
        service.wait_for_log("action=imap_connected")
        config.write_text(good + "\n[imap\nport = \n")
        service.signal(signal.SIGHUP)
        service.wait_for_log("action=reload_failed")
        assert "not valid TOML" in service.output()
        code, health = status(_copy(config, good))
        assert code == 1 and health["reload"]["ok"] is False
        assert "not valid TOML" in health["reload"]["error"]
        # The desk goes on with the configuration it had.
        mail.deliver(HELP, teacher_mail(1, "Still answered"))
        [ack] = mail.wait_for_messages(TEACHER, 1, timeout=20)
        assert subject_of(ack) == "[#1] Still answered"
        config.write_text(good)
        service.signal(signal.SIGHUP)
        service.wait_for_log("action=reload ")
        assert status(_copy(config, good))[0] == 0
    finally:
        assert service.terminate() < 10


def test_sighup_opens_a_new_log_file_after_logrotate_moved_it(tmp_path, database_url, mail,
                                                               manager):
    log_file = tmp_path / "mailhelp.log"
    path = write_config(tmp_path, database_url, mail, extra=f'[log]\nfile = "{log_file}"')
    assert mailhelp(path, "init").returncode == 0
    service = Service(path, manager)
    try:
        manager.wait_for("READY=1")
        wait_for_text(log_file, "action=imap_connected")
        log_file.rename(tmp_path / "mailhelp.log.1")  # what logrotate does
        service.signal(signal.SIGHUP)
        wait_for_text(log_file, "action=reload ")
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    finally:
        assert service.terminate() < 10
    assert "action=daemon_stop" in log_file.read_text()
    assert "action=reload" not in (tmp_path / "mailhelp.log.1").read_text()


def wait_for_text(path: Path, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} never came into {path}"
        time.sleep(0.05)


def _copy(config: Path, text: str) -> Path:
    """A readable copy of the config for `status` to run with (the file itself is broken
    on purpose); same database, so the same state file."""
    copy = config.parent / "status.toml"
    copy.write_text(text)
    return copy


def test_sigterm_in_a_backlog_finishes_the_batch_and_loses_nothing(mail, tmp_path,
                                                                    database_url, manager):
    path = write_config(tmp_path, database_url, mail, extra="[imap]\nbatch_size = 5")
    assert mailhelp(path, "init").returncode == 0
    client = mail.imap(HELP)
    try:
        for n in range(100):
            client.append("INBOX", teacher_mail(n, f"Backlog {n}"))
    finally:
        client.logout()
    service = Service(path, manager)
    try:
        service.wait_for_log("action=new_ticket")
    finally:
        took = service.terminate()
    assert took < 10, f"stopped after {took:.1f}s"
    taken = len(json.loads(mailhelp(path, "tickets", "list", "--json").stdout))
    # Every ticket's message left the inbox, and every other one is still there.
    assert len(mail.messages(HELP, "mailhelp/processed")) == taken
    assert 0 < taken < 100  # stopped inside the backlog, after a whole batch
    assert len(mail.messages(HELP, "INBOX")) == 100 - taken
    done = mailhelp(path, "run", "--once")
    assert done.returncode == 0, done.stderr.decode()
    assert len(json.loads(mailhelp(path, "tickets", "list", "--json").stdout)) == 100


# Run a command with PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN) set (linux/prctl.h, Linux 6.3+):
# no mapping may be made writable and executable, or executable later, from here on.
UNDER_MDWE = """
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""
WRITE_AND_EXECUTE = "import mmap; mmap.mmap(-1, 4096, prot=7)"  # read | write | exec


def test_the_desk_works_under_memory_deny_write_execute(mail, config):
    """The unit sets MemoryDenyWriteExecute=yes. The kernel's own switch for it (which
    systemd uses where the kernel has it) holds for this process and what it runs."""
    if ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) < 0:  # PR_GET_MDWE
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")

    def under_mdwe(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", UNDER_MDWE, *args], capture_output=True,
                              cwd=config.parent, timeout=60)

    refused = under_mdwe("-c", WRITE_AND_EXECUTE)  # the switch is really on
    assert refused.returncode == 1 and b"PermissionError" in refused.stderr
    mail.deliver(HELP, teacher_mail(1, "Under MDWE"))
    done = under_mdwe("-m", "mailhelp", "--config", str(config), "run", "--once")
    assert done.returncode == 0, done.stderr.decode()
    assert b"processed 1 message(s) (0 failed)" in done.stdout
    mail.wait_for_messages(TEACHER, 1, timeout=20)


def write_ack(directory: Path, wording: str) -> None:
    (directory / "ack.txt.j2").write_text(
        f"Subject: {wording} [{{{{ tag }}}}] {{{{ ticket.subject }}}}\n\n"
        f"{wording}: we have your request.\n")
    (directory / "ack.html.j2").write_text(f"<p>{wording}: we have your request.</p>\n")
