"""OAuth 2.0 sign-in against real servers.

A Dovecot of its own whose oauth2 passdb asks a token introspection endpoint that this
test runs on loopback (mailhelp.localmail.oauth2_server, which is also the token
endpoint mailhelp asks), and the SMTP relay taking AUTH XOAUTH2 checked at the same
endpoint. mailhelp runs as its own processes, as an admin would run it.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import stat
import time
from pathlib import Path

import pytest

from mailhelp.localmail.oauth2_server import AuthServer
from tests.helpers import Daemon, mailhelp
from tests.servers import own_servers

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"
HELP, ADMIN, TEACHER = "help@school.test", "admin@school.test", "teacher1@school.test"
USERS = dict.fromkeys((HELP, ADMIN, TEACHER, "teacher2@school.test", "tech1@school.test"),
                      "secret")


@pytest.fixture(scope="module")
def oauth2_servers():
    auth = AuthServer().start()
    try:
        with own_servers(USERS, "OAuth 2.0 tests",
                         {"oauth2_introspection_url": auth.introspection_url},
                         oauth2_introspection_url=auth.introspection_url) as servers:
            servers.auth = auth
            yield servers
    finally:
        auth.stop()


@pytest.fixture
def servers(oauth2_servers):
    auth = oauth2_servers.auth
    auth.lifetime, auth.rotate = 3600.0, False
    auth.revoke()
    auth.grants.clear()
    auth.add_client("desk-app", "app-secret", mailboxes=(HELP,))
    auth.add_client("desk-delegated")
    oauth2_servers.clear_mailboxes()
    return oauth2_servers


def write_config(tmp_path: Path, database_url: str, servers, oauth2: str,
                 smtp_auth: str = "oauth2") -> Path:
    path = tmp_path / "mailhelp.toml"
    path.write_text(f"""
[helpdesk]
name = "Springfield SD Help Desk"
address = "{HELP}"
admin = "{ADMIN}"
[database]
url = "{database_url}"
[staff]
addresses = ["tech1@school.test"]
[storage]
attachments_dir = "{tmp_path / 'attachments'}"
[imap]
host = "{servers.imap_host}"
port = {servers.imap_port}
security = "none"
username = "{HELP}"
auth = "oauth2"
timeout = "10s"
[smtp]
host = "{servers.smtp_host}"
port = {servers.smtp_port}
security = "none"
username = "{HELP}"
auth = "{smtp_auth}"
password = "{USERS[HELP]}"
retry_delay = "1s"
timeout = "10s"
[oauth2]
token_url = "{servers.auth.token_url}"
{oauth2}
""")
    return path


def delegated(servers, tmp_path: Path) -> str:
    """[oauth2] for a refresh token that `mailhelp oauth2 authorize` would have written."""
    token_file = tmp_path / "refresh-token"
    token_file.write_text(servers.auth.issue_refresh_token(HELP, "desk-delegated") + "\n")
    token_file.chmod(0o600)
    return f'provider = "microsoft"\nclient_id = "desk-delegated"\n' \
           f'refresh_token_file = "{token_file}"\n'


def initialised(config: Path) -> Path:
    done = mailhelp(config, "init")
    assert done.returncode == 0, done.stderr.decode()
    return config


def teacher_mail(servers, n: int = 1) -> None:
    raw = (DATA / "teacher_projector.eml").read_bytes().replace(
        b"<CAF1234567890projector@mail.gmail.com>",
        f"<projector-{n}-{time.time_ns()}@mail.gmail.com>".encode())
    client = servers.imap(HELP)  # a person's password login, beside mailhelp's OAuth
    try:
        client.append("INBOX", raw)
    finally:
        client.logout()


def grants(servers, kind: str) -> int:
    return sum(1 for grant, _ in servers.auth.grants if grant == kind)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def test_client_credentials_sign_in_fetches_and_sends(servers, tmp_path, database_url,
                                                      monkeypatch):
    monkeypatch.setenv("DESK_APP_SECRET", "app-secret")
    config = initialised(write_config(tmp_path, database_url, servers, """
provider = "microsoft"
tenant = "school.test"
client_id = "desk-app"
client_secret_env = "DESK_APP_SECRET"
"""))
    checked = mailhelp(config, "check")
    teacher_mail(servers)
    done = mailhelp(config, "run", "--once")
    lines = checked.stdout.decode()
    assert checked.returncode == 0, lines + checked.stderr.decode()
    assert re.search(rf"ok  +oauth2 +token for {HELP} from client_credentials \(microsoft\), "
                     r"expires 20\d\d-", lines), lines
    assert re.search(rf"ok  +imap +logged in as {HELP}", lines), lines
    assert re.search(rf"ok  +smtp +logged in as {HELP}", lines), lines
    assert done.returncode == 0, done.stderr.decode()
    assert b"processed 1 message(s)" in done.stdout
    [ack] = servers.wait_for_messages(TEACHER, 1)
    assert email.message_from_bytes(ack)["From"].endswith(f"<{HELP}>")
    assert grants(servers, "client_credentials") >= 2
    dovecot_log = (servers.state_dir / "dovecot.log").read_text()
    assert f"Login: user=<{HELP}>, method=XOAUTH2" in dovecot_log
    assert servers.auth.introspected.count(HELP) >= 3  # IMAP (check, run) and SMTP


def test_a_token_that_expires_is_refreshed_while_the_daemon_runs(servers, tmp_path,
                                                                 database_url):
    servers.auth.lifetime = 4.0
    config = initialised(write_config(tmp_path, database_url, servers,
                                      delegated(servers, tmp_path)))
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("action=imap_connected")
        teacher_mail(servers, 1)
        servers.wait_for_messages(TEACHER, 1, timeout=20)
        first = set(servers.auth.access_tokens)
        # Its tokens run out (by the provider's clock as by mailhelp's), and the
        # connection drops: the daemon signs in again with a new one.
        wait_until(lambda: not any(servers.auth.active(t) for t in first), 10,
                   "the first tokens expire")
        servers.auth.lifetime = 3600.0
        refreshed = grants(servers, "refresh_token")
        servers.restart_imap()
        wait_until(lambda: daemon.output().count("action=imap_connected") >= 2, 30,
                   "the daemon signs in again")
        assert grants(servers, "refresh_token") > refreshed
        # The provider withdraws a token before the time it gave: refused, replaced once.
        servers.auth.expire_access_tokens()
        servers.restart_imap()
        wait_until(lambda: daemon.output().count("action=imap_connected") >= 3, 30,
                   "the daemon signs in after a refused token")
        assert "action=oauth2_token_refused server=imap" in daemon.output()
        teacher_mail(servers, 2)
        servers.wait_for_messages(TEACHER, 2, timeout=20)
    finally:
        daemon.stop()
    assert "oauth2_token_failed" not in daemon.output()
    from mailhelp import config as config_module
    from mailhelp.oauth2.health import read_health

    health = read_health(config_module.load(config))
    assert health is not None and not health.degraded and health.method == "refresh_token"


def test_a_rotated_refresh_token_is_written_back(servers, tmp_path, database_url):
    servers.auth.rotate = True
    config = write_config(tmp_path, database_url, servers, delegated(servers, tmp_path))
    token_file = tmp_path / "refresh-token"
    original = token_file.read_text().strip()
    initialised(config)
    after_init = token_file.read_text().strip()
    assert after_init != original and original not in servers.auth.refresh_tokens
    teacher_mail(servers)
    done = mailhelp(config, "run", "--once")  # the sender process refreshes too
    assert done.returncode == 0, done.stderr.decode()
    servers.wait_for_messages(TEACHER, 1)
    latest = token_file.read_text().strip()
    assert latest != after_init and list(servers.auth.refresh_tokens) == [latest]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert grants(servers, "refresh_token") == 3  # init, run --once, its sender


def test_a_revoked_grant_alarms_the_admin_and_degrades(servers, tmp_path, database_url):
    # The alarm goes out by SMTP: here with the mailbox's password, since a revoked
    # grant would stop mail sent with its tokens too (then only the log and status tell).
    config = initialised(write_config(tmp_path, database_url, servers,
                                      delegated(servers, tmp_path), smtp_auth="password"))
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("action=imap_connected")
        servers.auth.revoke(HELP)  # the grant is withdrawn (a password change, an admin)
        servers.restart_imap()
        [alarm] = servers.wait_for_messages(ADMIN, 1, timeout=60)
        wait_until(lambda: daemon.output().count("action=oauth2_token_failed") >= 2, 30,
                   "a log line at each attempt")
    finally:
        daemon.stop()
    log = daemon.output()
    assert "permanent=yes error=token endpoint" in log and "invalid_grant" in log
    message = email.message_from_bytes(alarm, policy=email.policy.default)
    assert message["Subject"] and message["To"] == ADMIN
    text = message.get_body(("plain",)).get_content()
    assert HELP in text and "invalid_grant" in text and "oauth2 authorize" in text
    assert len(servers.messages(ADMIN)) == 1  # once a day, however many attempts

    from mailhelp import config as config_module
    from mailhelp.oauth2.health import health_path, read_health

    loaded = config_module.load(config)
    health = read_health(loaded)
    assert health.degraded and health.permanent and "invalid_grant" in health.error
    assert json.loads(Path(health_path(loaded)).read_text())["state"] == "failing"
    checked = mailhelp(config, "check")
    assert checked.returncode == 1
    assert re.search(r"FAIL +oauth2 +token endpoint .* invalid_grant", checked.stdout.decode())


def test_token_command(servers, tmp_path, database_url):
    token = servers.auth.mint(HELP)
    secret_file = tmp_path / "token"
    secret_file.write_text(token + "\n")
    config = initialised(write_config(tmp_path, database_url, servers,
                                      f'token_command = "cat {secret_file}"'))
    config.write_text(config.read_text().replace(
        f'token_url = "{servers.auth.token_url}"\n', ""))
    teacher_mail(servers)
    done = mailhelp(config, "-v", "run", "--once")
    assert done.returncode == 0, done.stderr.decode()
    servers.wait_for_messages(TEACHER, 1)
    assert token.encode() not in done.stdout + done.stderr  # the secret is never logged
    assert b"action=oauth2_token method=command" in done.stderr
    checked = mailhelp(config, "check")
    assert re.search(r"ok  +oauth2 +token for .* from command \(token_command\), expiry not "
                     r"known", checked.stdout.decode()), checked.stdout.decode()
    assert not grants(servers, "client_credentials") and not grants(servers, "refresh_token")
