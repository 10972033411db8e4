"""mailhelp status, the state file it reads, and the sd_notify messages the daemon sends."""

from __future__ import annotations

import json
import os
import socket
import stat
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailhelp import status as status_module
from mailhelp.cli import main
from mailhelp.db.migrate import upgrade
from mailhelp.db.session import Database
from mailhelp.service.livestate import LiveState, MailboxRecord, read_state, state_path
from mailhelp.service.pipeline import Arrival, Pipeline
from mailhelp.service.sdnotify import Notifier
from tests.helpers import desk_config

NOW = datetime.now(UTC).replace(microsecond=0)
REQUEST = ("From: Jane <teacher1@school.test>\nTo: help@school.test\nSubject: Wifi\n"
           "Message-ID: <wifi-{n}@school.test>\n\nNo wifi in room 3.\n")
GARBAGE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64 + b"\r\n"


class Desk:
    """A desk with a database and a config file, and no daemon expected (no [imap])."""

    def __init__(self, tmp_path: Path, database_url: str, extra: str = "") -> None:
        self.config = desk_config(tmp_path, database_url, extra)
        self.db = Database(database_url)
        upgrade(self.db)
        self.path = tmp_path / "mailhelp.toml"
        self.path.write_text(f'[helpdesk]\naddress = "help@school.test"\n[database]\n'
                             f'url = "{database_url}"\n[storage]\n'
                             f'attachments_dir = "{tmp_path / "att"}"\n{extra}')

    def mail(self, raw: bytes, at: datetime) -> None:
        Pipeline(self.config, self.db, lambda: at).accept([Arrival(raw, "ingest")])

    def status(self, capsys, *args: str) -> tuple[int, str]:
        code = main(["--config", str(self.path), "status", *args])
        return code, capsys.readouterr().out


@pytest.fixture
def desk(tmp_path, database_url):
    desk = Desk(tmp_path, database_url)
    yield desk
    desk.db.dispose()


def item(health, name: str):
    return next(i for i in health.items if i.name == name)


def test_a_quiet_desk_is_healthy(desk, capsys):
    code, out = desk.status(capsys)
    assert code == 0, out
    assert out.splitlines()[-1] == "status: healthy"
    assert "outbox           0 queued" in out
    assert "oauth2 token     not used (password sign-in)" in out
    code, out = desk.status(capsys, "--json")
    data = json.loads(out)
    assert code == 0 and data["status"] == "healthy" and data["problems"] == []
    assert data["outbox"]["queued"] == 0 and data["failed_messages"]["count"] == 0
    assert data["daemon"]["running"] is False  # none expected: no [imap], no socket


def test_mail_queued_longer_than_the_threshold_is_degraded(desk, capsys):
    desk.mail(REQUEST.format(n=1).encode(), NOW - timedelta(minutes=30))
    health = status_module.collect(desk.config, NOW)
    assert item(health, "outbox").ok and health.healthy  # queued, but not late yet
    desk.mail(REQUEST.format(n=2).encode(), NOW - timedelta(hours=2))
    health = status_module.collect(desk.config, NOW)
    outbox = item(health, "outbox")
    assert not outbox.ok and not health.healthy
    assert outbox.facts["queued"] >= 2 and outbox.facts["oldest_age_seconds"] >= 7200
    assert "later than 1h" in outbox.detail
    code, out = desk.status(capsys, "--json")
    data = json.loads(out)
    assert code == 1 and data["status"] == "degraded"
    assert data["outbox"]["ok"] is False and data["problems"][0].startswith("outbox: ")
    # A longer threshold, given on the command line, lets it pass.
    code, out = desk.status(capsys, "--outbox-age", "3h")
    assert code == 0, out


def test_a_failed_message_is_degraded_until_it_is_old(desk, capsys):
    desk.mail(GARBAGE, NOW - timedelta(hours=1))
    code, out = desk.status(capsys)
    assert code == 1
    line = next(x for x in out.splitlines() if "failed messages" in x)
    assert line.startswith("DEGRADED") and "1 in the failed folder" in line
    assert "mailhelp failed list" in line
    data = json.loads(desk.status(capsys, "--json")[1])
    assert data["failed_messages"]["count"] == 1 and data["failed_messages"]["recent"] == 1
    assert data["failed_messages"]["latest_error"]
    later = status_module.collect(desk.config, NOW + timedelta(days=8))
    assert item(later, "failed messages").ok
    assert item(later, "failed messages").facts["count"] == 1


def test_a_revoked_token_is_degraded(desk, monkeypatch):
    monkeypatch.setattr(status_module, "token_health", lambda config: {
        "ok": False, "expires_at": (NOW - timedelta(minutes=5)).isoformat(),
        "detail": "refresh token revoked (invalid_grant)"})
    health = status_module.collect(desk.config, NOW)
    token = item(health, "oauth2 token")
    assert not token.ok and "invalid_grant" in token.detail and not health.healthy
    assert health.as_json()["token"]["ok"] is False
    monkeypatch.setattr(status_module, "token_health", lambda config: {
        "ok": True, "expires_at": NOW + timedelta(minutes=50), "detail": ""})
    assert status_module.collect(desk.config, NOW).healthy


def test_a_token_the_provider_revoked_is_read_from_the_sign_in_record(tmp_path, database_url):
    from mailhelp.oauth2 import health as oauth2_health

    desk = Desk(tmp_path, database_url, '[smtp]\nhost = "127.0.0.1"\nusername = "help"\n'
                'auth = "oauth2"\n[oauth2]\ntoken_command = "echo token"\n')
    assert item(status_module.collect(desk.config, NOW), "oauth2 token").detail == \
        "no token got yet"
    oauth2_health.record_failure(desk.config, "refresh_token", "invalid_grant: revoked",
                                 True, NOW)
    health = status_module.collect(desk.config, NOW)
    token = item(health, "oauth2 token")
    assert not token.ok and not health.healthy and "invalid_grant: revoked" in token.detail
    assert health.as_json()["token"]["permanent"] is True
    desk.db.dispose()


def test_a_database_that_cannot_be_read_is_degraded(tmp_path, capsys):
    (tmp_path / "broken.db").write_bytes(b"not a database" * 100)
    config = tmp_path / "mailhelp.toml"
    config.write_text(f'[helpdesk]\naddress = "help@school.test"\n[database]\n'
                      f'url = "sqlite:///{tmp_path / "broken.db"}"\n')
    assert main(["--config", str(config), "status"]) == 1
    assert "DEGRADED database" in capsys.readouterr().out


def test_a_database_file_that_is_not_there_is_not_made(tmp_path, capsys):
    config = tmp_path / "mailhelp.toml"
    config.write_text('[helpdesk]\naddress = "help@school.test"\n[database]\n'
                      'url = "sqlite:///nowhere.db"\n')
    assert main(["--config", str(config), "status"]) == 1
    assert "no database at" in capsys.readouterr().out
    assert not (tmp_path / "nowhere.db").exists() and not Path("nowhere.db").exists()


# The daemon's side of it: the state file.

def daemon_desk(tmp_path, database_url) -> Desk:
    return Desk(tmp_path, database_url, '[imap]\nhost = "127.0.0.1"\nusername = "help"\n')


def test_the_daemon_is_expected_when_there_is_a_mailbox(tmp_path, database_url):
    desk = daemon_desk(tmp_path, database_url)
    health = status_module.collect(desk.config, NOW)
    daemon = item(health, "daemon")
    assert not daemon.ok and "not running" in daemon.detail
    assert daemon.facts["state_file"] == state_path(desk.config)
    desk.db.dispose()


def published(config, **mailbox) -> LiveState:
    live = LiveState(state_path(config), config_path="mailhelp.toml")
    live.status = "127.0.0.1: waiting for mail (idle)"
    live.mailboxes.append(MailboxRecord(account="help@127.0.0.1:993/INBOX", folder="INBOX",
                                        **mailbox))
    live.write()
    return live


def test_a_connected_daemon_is_healthy_and_one_that_is_not_is_degraded(tmp_path,
                                                                       database_url):
    desk = daemon_desk(tmp_path, database_url)
    published(desk.config, connected=True, mode="idle", since=NOW.isoformat(),
              last_check=NOW.isoformat(), waiting=0)
    health = status_module.collect(desk.config)
    assert health.healthy, health.lines()
    mailbox = item(health, "mailbox INBOX")
    assert "connected, IDLE" in mailbox.detail and "0 waiting" in mailbox.detail
    assert health.as_json()["mailboxes"][0]["mode"] == "idle"
    published(desk.config, connected=False, since=NOW.isoformat(),
              error="[Errno 111] Connection refused", waiting=3)
    health = status_module.collect(desk.config)
    mailbox = item(health, "mailbox INBOX")
    assert not mailbox.ok and "Connection refused" in mailbox.detail
    assert "3 waiting" in mailbox.detail and not health.healthy
    desk.db.dispose()


def test_a_state_file_not_rewritten_lately_or_of_a_gone_process_is_degraded(tmp_path,
                                                                            database_url):
    desk = daemon_desk(tmp_path, database_url)
    published(desk.config, connected=True, mode="idle")
    later = datetime.now(UTC) + status_module.STALE_AFTER + timedelta(seconds=5)
    daemon = item(status_module.collect(desk.config, later), "daemon")
    assert not daemon.ok and daemon.detail.startswith("not responding")
    live = published(desk.config, connected=True, mode="idle")
    live.pid = 2**22 + 12345  # above pid_max: no such process
    live.write()
    daemon = item(status_module.collect(desk.config), "daemon")
    assert not daemon.ok and daemon.detail.startswith("gone without stopping")
    live.stopped()
    daemon = item(status_module.collect(desk.config), "daemon")
    assert not daemon.ok and daemon.detail.startswith("stopped")
    desk.db.dispose()


def test_a_reload_that_failed_is_degraded(tmp_path, database_url):
    desk = daemon_desk(tmp_path, database_url)
    live = published(desk.config, connected=True, mode="idle")
    live.reload_error = "mailhelp.toml: not valid TOML: Expected '=' (at line 3)"
    live.write()
    health = status_module.collect(desk.config)
    assert not item(health, "reload").ok
    assert health.as_json()["reload"]["error"].startswith("mailhelp.toml: not valid TOML")
    desk.db.dispose()


def test_the_state_file_is_private_and_replaced_whole(tmp_path):
    path = tmp_path / "mailhelp.db-status.json"
    old = os.umask(0o022)
    try:
        live = LiveState(str(path))
        live.write()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    inode = path.stat().st_ino
    live.set_status("working")
    assert path.stat().st_ino != inode  # a new file renamed over the old
    assert read_state(str(path))["status"] == "working"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left
    assert read_state(str(tmp_path / "missing.json")) is None


def test_where_the_state_is_kept(tmp_path):
    sqlite = desk_config(tmp_path, f"sqlite:///{tmp_path}/desk.db")
    assert state_path(sqlite) == f"{tmp_path}/desk.db-status.json"
    postgres = desk_config(tmp_path, "postgresql+psycopg://u@localhost/desk")
    assert state_path(postgres) == f"{tmp_path}/att/daemon-status.json"


# sd_notify, spoken to a datagram socket the test binds.

@pytest.fixture
def manager():
    """A stand-in for systemd's notification socket, at a path and at an abstract name."""
    directory = tempfile.mkdtemp(prefix="mh-", dir="/tmp")  # a socket path is short
    sockets = []

    def bind(address: str) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(address.replace("@", "\0", 1) if address.startswith("@") else address)
        listener.settimeout(5)
        sockets.append(listener)
        return listener

    yield directory, bind
    for listener in sockets:
        listener.close()
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    os.rmdir(directory)


def test_notify_to_a_path_and_to_an_abstract_socket(manager):
    directory, bind = manager
    for address in (f"{directory}/notify", f"@mailhelp-test-{os.getpid()}"):
        listener = bind(address)
        notifier = Notifier({"NOTIFY_SOCKET": address})
        notifier.ready("connected")
        assert listener.recv(4096) == b"READY=1\nSTATUS=connected"
        notifier.status("connected")  # unchanged: not sent again
        notifier.status("down")
        notifier.stopping()
        assert listener.recv(4096) == b"STATUS=down"
        assert listener.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
        notifier.close()


def test_watchdog_pings_at_half_the_interval_and_only_for_this_process(manager):
    directory, bind = manager
    listener = bind(f"{directory}/notify")
    address = f"{directory}/notify"
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "4000000",
                         "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog == 4.0
    notifier.alive()
    notifier.alive()  # within half the interval: not sent again
    notifier.ready()
    notifier.close()
    assert listener.recv(4096) == b"WATCHDOG=1"
    assert listener.recv(4096) == b"READY=1"
    assert Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "4000000",
                     "WATCHDOG_PID": "1"}).watchdog is None
    assert Notifier({"NOTIFY_SOCKET": address}).watchdog is None


def test_no_socket_no_noise_and_a_gone_manager_is_no_error(manager):
    directory, _ = manager
    assert not Notifier({}).send("READY=1")
    gone = Notifier({"NOTIFY_SOCKET": f"{directory}/nobody"})
    assert gone.enabled and not gone.send("READY=1")
    gone.close()
