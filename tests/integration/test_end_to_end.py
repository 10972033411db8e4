"""One teacher's message, from the help mailbox to the acknowledgement in their INBOX.

Real Dovecot, real SMTP, the real command line in a fresh process.
"""

from __future__ import annotations

import email
import email.policy
import json
import time
from pathlib import Path

import pytest

from tests.helpers import Daemon, mailhelp, outbox, sent_kinds, wait_for_outbox, write_config

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"
HELP = "help@school.test"


def teacher_mail(n: int = 1, subject: str = "Projector in room 12 does not turn on") -> bytes:
    raw = (DATA / "teacher_projector.eml").read_bytes()
    return (raw.replace(b"<CAF1234567890projector@mail.gmail.com>",
                        f"<projector-{n}-{time.time_ns()}@mail.gmail.com>".encode())
               .replace(b"Projector in room 12 does not turn on", subject.encode()))


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def append(mail, raw: bytes, user: str = HELP) -> None:
    client = mail.imap(user)
    try:
        client.append("INBOX", raw)
    finally:
        client.logout()


def tickets(config: Path) -> list[dict]:
    done = mailhelp(config, "tickets", "list", "--json")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.fixture
def config(tmp_path, database_url, mail) -> Path:
    path = write_config(tmp_path, database_url, mail)
    done = mailhelp(path, "init")
    assert done.returncode == 0, done.stderr.decode()
    return path


def test_a_new_message_becomes_a_ticket_and_an_acknowledgement(mail, config, database_url):
    original = teacher_mail()
    append(mail, original)
    done = mailhelp(config, "run", "--once")
    assert done.returncode == 0, done.stderr.decode()
    assert b"processed 1 message(s)" in done.stdout

    [ticket] = tickets(config)
    assert ticket["requester"] == "teacher1@school.test"
    assert ticket["subject"] == "Projector in room 12 does not turn on"
    assert ticket["status"] == "new"
    assert ticket["participants"] == ["teacher2@school.test"]

    [ack_raw] = mail.wait_for_messages("teacher1@school.test", 1)
    ack = parsed(ack_raw)
    original_id = parsed(original)["Message-ID"]
    assert ack["Subject"] == f"[#{ticket['id']}] Projector in room 12 does not turn on"
    assert ack["In-Reply-To"] == original_id
    assert original_id in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All"
    assert ack["Message-ID"].endswith("@school.test>")
    assert ack["From"].addresses[0].addr_spec == HELP
    assert ack.get_body(("plain",)) is not None and ack.get_body(("html",)) is not None

    for staff in ("tech1@school.test", "tech2@school.test"):
        [note_raw] = mail.wait_for_messages(staff, 1)
        note = parsed(note_raw)
        assert f"[#{ticket['id']}]" in note["Subject"] and "Jane Teacher" in note["Subject"]
        assert "No signal" in note.get_body(("plain",)).get_content()
        assert note["Auto-Submitted"] == "auto-generated"

    [moved] = mail.messages(HELP, "mailhelp/processed")
    assert moved == original.replace(b"\n", b"\r\n") or parsed(moved)["Message-ID"] == original_id
    assert mail.messages(HELP, "INBOX") == []

    shown = json.loads(mailhelp(config, "tickets", "show", str(ticket["id"]), "--json").stdout)
    kinds = [m["kind"] for m in shown["messages"]]
    assert kinds == ["request", "ack", "notification", "notification"]
    assert shown["messages"][0]["attachments"] == [
        {"filename": "no signal.png", "content_type": "image/png", "size": 70, "id": 1}]

    # Running again changes nothing: no ticket, no mail, nothing moved.
    again = mailhelp(config, "run", "--once")
    assert again.returncode == 0 and b"processed 0 message(s)" in again.stdout
    assert b"sent 0 mail(s)" in again.stdout
    assert tickets(config) == [ticket]
    # Both passes are over, so the outbox is final: one of each, each sent once.
    assert sent_kinds(outbox(database_url)) == ["ack", "notification", "notification"]
    assert len(mail.messages("teacher1@school.test")) == 1
    assert len(mail.messages(HELP, "mailhelp/processed")) == 1


def test_the_same_message_twice_makes_one_ticket(mail, config, database_url):
    original = teacher_mail()
    append(mail, original)
    append(mail, original)  # e.g. delivered to two aliases of the help mailbox
    assert mailhelp(config, "run", "--once").returncode == 0
    assert len(tickets(config)) == 1
    assert len(mail.messages(HELP, "mailhelp/processed")) == 2
    assert sent_kinds(outbox(database_url, to="teacher1@school.test")) == ["ack"]
    assert len(mail.messages("teacher1@school.test")) == 1


def test_a_message_already_ingested_is_not_recorded_twice(mail, config, database_url):
    original = teacher_mail()
    assert mailhelp(config, "ingest", stdin=original).returncode == 0
    append(mail, original)  # the move after an earlier commit never happened
    assert mailhelp(config, "run", "--once").returncode == 0
    assert len(tickets(config)) == 1
    assert mail.messages(HELP, "INBOX") == []
    assert sent_kinds(outbox(database_url, to="teacher1@school.test")) == ["ack"]
    assert len(mail.messages("teacher1@school.test")) == 1


def test_auto_replies_get_no_ticket_and_no_answer(mail, config, database_url):
    append(mail, (DATA / "out_of_office.eml").read_bytes())
    assert mailhelp(config, "run", "--once").returncode == 0
    assert tickets(config) == []
    assert len(mail.messages(HELP, "mailhelp/processed")) == 1
    assert outbox(database_url) == []  # the pass is over and nothing was queued
    assert mail.messages("teacher1@school.test") == []


def test_spam_goes_to_the_spam_folder_without_a_ticket(mail, config):
    flagged = b"X-Spam-Flag: YES\nMIME-Version: 1.0"
    append(mail, teacher_mail().replace(b"MIME-Version: 1.0", flagged))
    assert mailhelp(config, "run", "--once").returncode == 0
    assert tickets(config) == []
    assert len(mail.messages(HELP, "mailhelp/spam")) == 1
    assert mail.messages(HELP, "INBOX") == []


def test_unparsable_message_goes_to_the_failed_folder(mail, config):
    append(mail, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64 + b"\r\n")
    append(mail, teacher_mail())
    done = mailhelp(config, "run", "--once")
    # The pass goes on past the bad message, and its exit code says one failed.
    assert done.returncode == 1, done.stderr.decode()
    assert b"processed 2 message(s) (1 failed)" in done.stdout
    assert len(tickets(config)) == 1
    assert len(mail.messages(HELP, "mailhelp/failed")) == 1
    failed = json.loads(mailhelp(config, "failed", "list", "--json").stdout)
    assert len(failed) == 1 and "Outlook .msg" in failed[0]["error"]


def test_uidvalidity_change_rereads_without_duplicates(mail, config, database_url):
    from sqlalchemy import create_engine, text

    append(mail, teacher_mail())
    assert mailhelp(config, "run", "--once").returncode == 0
    # The server rebuilt its index: the old UIDs mean nothing now, and the message
    # that was processed comes back into the inbox.
    client = mail.imap(HELP)
    client.select_folder("mailhelp/processed")
    client.copy(client.search("ALL"), "INBOX")
    client.logout()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE mailbox_state SET uidvalidity = uidvalidity + 1000"))
    engine.dispose()
    done = mailhelp(config, "run", "--once")
    assert done.returncode == 0
    assert b"uidvalidity_changed" in done.stderr
    assert len(tickets(config)) == 1
    assert mail.messages(HELP, "INBOX") == []


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_imap_over_tls(mail, tmp_path, database_url, security):
    if mail.imaps_port is None:
        pytest.fail(f"{mail.kind} servers have no TLS")
    port = mail.imaps_port if security == "tls" else mail.imap_port
    config = write_config(tmp_path, database_url, mail, extra=f"""
        [imap]
        security = "{security}"
        port = {port}
        ca_file = "{mail.ca_file}"
        """)
    assert mailhelp(config, "init").returncode == 0
    append(mail, teacher_mail())
    done = mailhelp(config, "run", "--once")
    assert done.returncode == 0, done.stderr.decode()
    assert len(tickets(config)) == 1
    # Without the CA the certificate is refused, with a message saying so.
    untrusted = write_config(tmp_path, database_url, mail, extra=f"""
        [imap]
        security = "{security}"
        port = {port}
        """)
    done = mailhelp(untrusted, "run", "--once")
    assert done.returncode == 1 and b"CERTIFICATE_VERIFY_FAILED" in done.stderr


def test_daemon_in_idle_acknowledges_within_two_seconds(mail, config):
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("action=imap_connected")
        time.sleep(0.5)  # let it settle into IDLE
        started = time.monotonic()
        mail.deliver(HELP, teacher_mail())
        mail.wait_for_messages("teacher1@school.test", 1, timeout=2)
        elapsed = time.monotonic() - started
        assert elapsed < 2, f"acknowledged after {elapsed:.2f}s"
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert "action=daemon_stop" in daemon.output()


def test_daemon_survives_a_dovecot_restart(mail, config, database_url):
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("action=imap_connected")
        mail.deliver(HELP, teacher_mail(1, "Before the restart"))
        mail.wait_for_messages("teacher1@school.test", 1, timeout=20)
        mail.restart_imap()
        mail.deliver(HELP, teacher_mail(2, "After the restart"))
        mail.wait_for_messages("teacher1@school.test", 2, timeout=60)
        # Nothing is left for the daemon to do: both messages filed, both acks sent.
        mail.wait_for_messages(HELP, 2, "mailhelp/processed", timeout=20)
        assert mail.messages(HELP) == []
        wait_for_outbox(database_url, 2, to="teacher1@school.test")
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert sent_kinds(outbox(database_url, to="teacher1@school.test")) == ["ack", "ack"]
    acks = mail.messages("teacher1@school.test")
    assert "action=imap_disconnected" in daemon.output()
    subjects = sorted(parsed(a)["Subject"] for a in acks)
    assert subjects == ["[#1] Before the restart", "[#2] After the restart"]
    assert len(tickets(config)) == 2


def test_mail_waits_in_the_outbox_while_smtp_is_down(mail, tmp_path, database_url):
    from mailhelp.localmail import free_port

    port = free_port()
    config = write_config(tmp_path, database_url, mail, smtp_port=port)
    assert mailhelp(config, "init").returncode == 0
    append(mail, teacher_mail(1, "First while SMTP is down"))
    append(mail, teacher_mail(2, "Second while SMTP is down"))
    done = mailhelp(config, "run", "--once")
    assert done.returncode == 0, done.stderr.decode()
    assert b"processed 2 message(s)" in done.stdout and b"sent 0 mail(s)" in done.stdout
    assert len(tickets(config)) == 2
    assert mail.messages(HELP, "INBOX") == []

    daemon = Daemon(config)
    relay = mail.smtp_relay(port=port)
    try:
        daemon.wait_for_log("action=send_deferred")
        relay.start()
        mail.wait_for_messages("teacher1@school.test", 2, timeout=30)
        mail.wait_for_messages("tech1@school.test", 2, timeout=10)
        wait_for_outbox(database_url, 6)
    finally:
        assert daemon.stop() == 0, daemon.output()
        relay.stop()
    # Each row waited, was sent once when the relay came back, and nothing else was.
    rows = outbox(database_url)
    assert sorted(sent_kinds(rows)) == ["ack"] * 2 + ["notification"] * 4
    assert relay.delivered == sum(len(row["recipients"]) for row in rows) == 6
    acks = mail.messages("teacher1@school.test")
    assert sorted(parsed(a)["Subject"] for a in acks) == [
        "[#1] First while SMTP is down", "[#2] Second while SMTP is down"]


# The test relay is the receiving server that vouches for staff here (it writes
# Authentication-Results for clients that log in): what `check` asks of a desk.
VOUCHED = ('[authentication]\ntrusted_authserv_ids = ["localmail.test"]\n'
           'unauthenticated_staff = "note"\n')


def test_check_passes_against_the_test_servers(mail, tmp_path, database_url):
    config = write_config(tmp_path, database_url, mail, extra=VOUCHED)
    assert mailhelp(config, "init").returncode == 0
    done = mailhelp(config, "check")
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    names = [line.split()[1] for line in lines]
    assert {"config", "database", "storage", "templates", "imap", "smtp"} <= set(names)
    assert not any(line.startswith("FAIL") for line in lines), lines
    assert [line.split()[1] for line in lines if line.startswith("warn")] == []


def test_check_names_the_failing_login(mail, tmp_path, database_url):
    config = write_config(tmp_path, database_url, mail, imap_password="wrong", extra=VOUCHED)
    assert mailhelp(config, "init").returncode == 1
    done = mailhelp(config, "check")
    assert done.returncode == 1
    failing = [line for line in done.stdout.decode().splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and failing[0].split()[1] == "imap"
    assert "login refused for help@school.test" in failing[0]
    assert "wrong" not in done.stdout.decode()


def test_failed_retry_after_a_fix(mail, tmp_path, database_url):
    # The attachments folder cannot be made (a file stands in its place): a message with
    # a file fails, goes to the failed folder, and `run --once` says so in its exit code.
    blocked = tmp_path / "attachments"
    blocked.write_text("not a folder")
    config = write_config(tmp_path, database_url, mail)
    assert mailhelp(config, "init").returncode == 0
    append(mail, teacher_mail())
    done = mailhelp(config, "run", "--once")
    assert done.returncode == 1 and b"(1 failed)" in done.stdout
    [failed] = json.loads(mailhelp(config, "failed", "list", "--json").stdout)
    assert "attachments" in failed["error"]
    assert len(mail.messages(HELP, "mailhelp/failed")) == 1
    # The admin fixes it and retries.
    blocked.unlink()
    retry = mailhelp(config, "failed", "retry")
    assert retry.returncode == 0, retry.stdout.decode() + retry.stderr.decode()
    assert len(tickets(config)) == 1
    assert mail.messages(HELP, "mailhelp/failed") == []
    assert len(mail.messages(HELP, "mailhelp/processed")) == 1
    assert len(mail.wait_for_messages("teacher1@school.test", 1)) == 1
    assert json.loads(mailhelp(config, "failed", "list", "--json").stdout) == []


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _dead(pid: int, timeout: float) -> bool:
    """Gone, or a zombie nobody reaps (PID 1 in a container may not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_the_sender_process_ends_with_the_daemon(mail, config, how):
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("action=imap_connected")
        [sender] = _children(daemon.process.pid)
        if how == "sigkill":
            daemon.process.kill()  # as a crash would: no chance to stop the sender
            daemon.process.wait()
        else:
            assert daemon.stop() == 0, daemon.output()
        assert _dead(sender, timeout=5), f"sender {sender} outlived the daemon ({how})"
    finally:
        daemon.stop()
