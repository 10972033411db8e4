"""An MTA pipe alias with the daemon running: ``mailhelp ingest`` hands each message to
``mailhelp run`` over [ingest] socket. Real Dovecot, real SMTP, real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Daemon, mailhelp, outbox, sent_kinds, write_config
from tests.integration.test_end_to_end import HELP, append, parsed, teacher_mail, tickets

pytestmark = pytest.mark.integration


def socket_config(tmp_path: Path, database_url: str, mail, *, imap: bool = True) -> Path:
    path = write_config(tmp_path, database_url, mail, extra=f"""
        [ingest]
        socket = "{tmp_path / 'ingest.sock'}"
        """)
    if not imap:  # the pipe is the only way in: no [imap] section at all
        text = path.read_text()
        start = text.index("[imap]")
        path.write_text(text[:start] + text[text.index("[smtp]"):])
    assert mailhelp(path, "init").returncode == 0
    return path


def test_a_piped_message_is_handed_to_the_daemon_beside_its_mailbox(mail, tmp_path,
                                                                     database_url):
    config = socket_config(tmp_path, database_url, mail)
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("action=imap_connected")
        daemon.wait_for_log("action=ingest_listen")
        append(mail, teacher_mail(1, "From the mailbox"))
        mail.wait_for_messages("teacher1@school.test", 1, timeout=10)
        done = mailhelp(config, "ingest", stdin=teacher_mail(2, "Through the pipe"))
        assert done.returncode == 0, done.stderr.decode()
        # Answered once recorded: the ticket is there when ingest exits.
        assert sorted(t["subject"] for t in tickets(config)) == [
            "From the mailbox", "Through the pipe"]
        acks = mail.wait_for_messages("teacher1@school.test", 2, timeout=10)
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert "action=ingest_alone" not in done.stderr.decode()
    assert sorted(parsed(a)["Subject"] for a in acks) == [
        "[#1] From the mailbox", "[#2] Through the pipe"]
    assert not (tmp_path / "ingest.sock").exists()  # removed on a clean stop


def test_pipe_only_daemon_takes_replies_and_survives_a_kill(mail, tmp_path, database_url):
    config = socket_config(tmp_path, database_url, mail, imap=False)
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("action=ingest_listen")
        assert "folder=- host=-" in daemon.output()
        request = teacher_mail(3, "Smartboard pen missing")
        done = mailhelp(config, "ingest", stdin=request)
        assert done.returncode == 0, done.stderr.decode()
        [ack] = mail.wait_for_messages("teacher1@school.test", 1, timeout=10)
        reply = (b"From: Jane Teacher <teacher1@school.test>\nTo: help@school.test\n"
                 b"Subject: Re: " + parsed(ack)["Subject"].encode() + b"\n"
                 b"Message-ID: <reply-3@school.test>\nIn-Reply-To: "
                 + parsed(ack)["Message-ID"].encode() + b"\n\nFound it, thanks.\n")
        assert mailhelp(config, "ingest", stdin=reply).returncode == 0
        [ticket] = tickets(config)
        shown = json.loads(mailhelp(config, "tickets", "show", str(ticket["id"]),
                                    "--json").stdout)
        assert [m["kind"] for m in shown["messages"] if m["direction"] == "in"] == [
            "request", "reply"]
        daemon.process.kill()  # a crash: the socket file stays, nobody listens
        daemon.process.wait()
    finally:
        daemon.stop()
    assert (tmp_path / "ingest.sock").exists()
    # With the daemon gone, ingest does the work itself, mail included.
    alone = mailhelp(config, "ingest", stdin=teacher_mail(4, "Laptop cart locked"))
    assert alone.returncode == 0, alone.stderr.decode()
    assert "action=ingest_alone" in alone.stderr.decode()
    assert len(tickets(config)) == 2
    acks = mail.wait_for_messages("teacher1@school.test", 2, timeout=10)
    assert "[#2] Laptop cart locked" in {parsed(a)["Subject"] for a in acks}
    # A new daemon takes the dead one's socket over.
    again = Daemon(config)
    try:
        again.wait_for_log("action=ingest_listen")
        done = mailhelp(config, "ingest", stdin=teacher_mail(5, "Printer offline"))
        assert done.returncode == 0 and "action=ingest_alone" not in done.stderr.decode()
        assert len(tickets(config)) == 3
    finally:
        assert again.stop() == 0, again.output()
    # Stopped, the desk sends nothing more: one ack per ticket, each row sent once.
    assert sent_kinds(outbox(database_url, to="teacher1@school.test")) == ["ack"] * 3
    assert len(mail.messages("teacher1@school.test")) == 3
    assert mail.messages(HELP) == []  # nothing went through the mailbox


def test_a_second_daemon_on_the_same_socket_is_refused(mail, tmp_path, database_url):
    config = socket_config(tmp_path, database_url, mail, imap=False)
    first = Daemon(config)
    try:
        first.wait_for_log("action=ingest_listen")
        second = mailhelp(config, "run", timeout=30)
        assert second.returncode == 2
        assert b"another mailhelp daemon listens on" in second.stderr
        assert b"Traceback" not in second.stderr
        done = mailhelp(config, "ingest", stdin=teacher_mail(6, "Still served"))
        assert done.returncode == 0 and len(tickets(config)) == 1
    finally:
        assert first.stop() == 0, first.output()
