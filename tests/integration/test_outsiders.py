"""Who may open a ticket (issue 16): an outsider gets one polite answer and no ticket,
their message waits in the outsiders folder, and a colleague a technician CC'd still
reaches the ticket. Over real Dovecot and SMTP."""

from __future__ import annotations

import email
import email.policy
import json

import pytest
from sqlalchemy import create_engine, select

from mailhelp.db.models import Outbox
from tests.helpers import mailhelp, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
# The relay delivers mail for other domains into this mailbox: the parent's, here.
PARENTS_MAILBOX = "teacher2@school.test"


def deliver(mail, raw: str) -> None:
    client = mail.imap(HELP)
    try:
        client.append("INBOX", raw.encode())
    finally:
        client.logout()


def outsider_mail(n: int, sender: str = "Pat Parent <parent@gmail.test>") -> str:
    return (f"From: {sender}\nTo: {HELP}\nSubject: My son's Chromebook {n}\n"
            f"Message-ID: <parent-{n}@gmail.test>\n\nIt will not charge.\n")


def test_an_outsider_gets_one_answer_and_no_ticket(mail, tmp_path, database_url):
    from mailhelp.localmail import free_port

    port = free_port()
    relay = mail.smtp_relay(port=port, outside_mailbox=PARENTS_MAILBOX).start()
    try:
        config = write_config(tmp_path, database_url, mail, smtp_port=port, extra=(
            '[helpdesk]\nrequester_domains = ["school.test"]\n'))
        assert mailhelp(config, "init").returncode == 0
        deliver(mail, outsider_mail(1))
        deliver(mail, outsider_mail(2))  # the same day: kept, not answered again
        done = mailhelp(config, "run", "--once")
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    finally:
        relay.stop()
    assert json.loads(mailhelp(config, "tickets", "list", "--json").stdout) == []
    kept = mail.messages(HELP, "mailhelp/outsiders")
    assert len(kept) == 2 and mail.messages(HELP, "INBOX") == []
    [answer] = mail.wait_for_messages(PARENTS_MAILBOX, 1, timeout=10)
    parsed = email.message_from_bytes(answer, policy=email.policy.default)
    assert parsed["To"] == "parent@gmail.test"
    assert parsed["In-Reply-To"] == "<parent-1@gmail.test>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert "district address" in parsed.get_body(("plain",)).get_content()
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(Outbox.kind, Outbox.status)).all()
    finally:
        engine.dispose()
    assert rows == [("outsider", "sent")]


def test_a_colleague_cc_d_by_staff_is_no_outsider(mail, tmp_path, database_url):
    config = write_config(tmp_path, database_url, mail, extra=(
        '[helpdesk]\nrequester_domains = ["school.test"]\noutsiders = "ignore"\n'))
    assert mailhelp(config, "init").returncode == 0
    deliver(mail, "From: teacher1@school.test\nTo: help@school.test\nSubject: Printer\n"
                  "Message-ID: <p1@school.test>\n\nIt jams.\n")
    deliver(mail, "From: tech1@school.test\nTo: help@school.test\nSubject: Re: [#1] Printer\n"
                  "Message-ID: <p2@school.test>\n\n#cc vendor@printfix.test\n"
                  "Our vendor will come by.\n")
    assert mailhelp(config, "run", "--once").returncode == 0
    deliver(mail, "From: vendor@printfix.test\nTo: help@school.test\n"
                  "Subject: Re: [#1] Printer\nMessage-ID: <p3@printfix.test>\n\n"
                  "I can come on Tuesday.\n")
    deliver(mail, outsider_mail(3, "stranger@printfix.test"))
    assert mailhelp(config, "run", "--once").returncode == 0
    shown = json.loads(mailhelp(config, "tickets", "show", "1", "--json").stdout)
    assert [m["from"] for m in shown["messages"] if m["direction"] == "in"][-1] == \
        "vendor@printfix.test"
    assert len(json.loads(mailhelp(config, "tickets", "list", "--json").stdout)) == 1
    assert len(mail.messages(HELP, "mailhelp/outsiders")) == 1
