"""Issue 15 over real Dovecot and SMTP: a staff member proven by the server they log in
to, a forged one who is not, and bounces through the signed return path."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
from email.message import EmailMessage

import pytest
from sqlalchemy import create_engine, select

from mailhelp.db.models import Outbox, Suppression
from tests.helpers import mailhelp, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
# The test relay is the district's server here: it writes Authentication-Results for
# clients that log in, and removes any that claim its id (RFC 8601 section 5).
RELAY_TRUSTED = ('[authentication]\ntrusted_authserv_ids = ["localmail.test"]\n'
                 'unauthenticated_staff = "note"\n')


def message(sender: str, subject: str, body: str, extra: dict | None = None,
            in_reply_to: str = "") -> EmailMessage:
    made = EmailMessage()
    for name, value in (extra or {}).items():
        made[name] = value
    made["From"], made["To"], made["Subject"] = sender, HELP, subject
    made["Message-ID"] = email.utils.make_msgid(domain="school.test")
    if in_reply_to:
        made["In-Reply-To"] = made["References"] = in_reply_to
    made.set_content(body)
    return made


def submit(mail, made: EmailMessage, login: str | None = None) -> None:
    with smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=10) as smtp:
        if login:
            smtp.login(login, mail.users[login])
        smtp.send_message(made)


def run_once(config) -> None:
    done = mailhelp(config, "run", "--once")
    assert done.returncode == 0, done.stderr.decode()


def show(config, number: int) -> dict:
    return json.loads(mailhelp(config, "tickets", "show", str(number), "--json").stdout)


def test_forged_staff_mail_is_a_note_and_a_real_answer_is_relayed(mail, tmp_path, database_url):
    config = write_config(tmp_path, database_url, mail, extra=RELAY_TRUSTED)
    assert mailhelp(config, "init").returncode == 0
    submit(mail, message("Jane Teacher <teacher1@school.test>", "Printer jam", "It jams."))
    run_once(config)
    [ack] = mail.wait_for_messages("teacher1@school.test", 1, timeout=10)
    ack_id = email.message_from_bytes(ack, policy=email.policy.default)["Message-ID"]
    # Through the same server, without logging in, in tech1's name, with a claim of the
    # server's own verdict that the server removes.
    forged = message("Sam Tech <tech1@school.test>", "Re: [#1] Printer jam",
                     "#cc evil@attacker.test\nPlease confirm your password at "
                     "https://evil.example/login", in_reply_to=ack_id,
                     extra={"Authentication-Results":
                            "localmail.test; auth=pass smtp.auth=tech1@school.test"})
    submit(mail, forged)
    run_once(config)
    ticket = show(config, 1)
    assert ticket["participants"] == [] and ticket["status"] == "new"
    assert [m["kind"] for m in ticket["messages"]].count("relay") == 0
    # The real tech1, logged in to the server, answers: relayed to the teacher.
    submit(mail, message("Sam Tech <tech1@school.test>", "Re: [#1] Printer jam",
                         "On my way with a new drum.", in_reply_to=ack_id),
           login="tech1@school.test")
    run_once(config)
    ticket = show(config, 1)
    assert ticket["status"] == "pending"
    [relay] = [m for m in ticket["messages"] if m["kind"] == "relay"]
    assert relay["to"] == ["teacher1@school.test"]
    answers = mail.wait_for_messages("teacher1@school.test", 2, timeout=10)
    assert b"On my way with a new drum." in answers[-1]
    assert not any(b"evil.example" in raw for raw in mail.messages("teacher1@school.test"))


def test_a_real_bounce_comes_back_to_the_signed_return_path(mail, tmp_path, database_url):
    from mailhelp.localmail import free_port

    port = free_port()
    relay = mail.smtp_relay(port=port, bounce_domains=("gone.test",)).start()
    try:
        config = write_config(tmp_path, database_url, mail, smtp_port=port)
        assert mailhelp(config, "init").returncode == 0
        mail.deliver(HELP, message("ghost@gone.test", "Printer jam", "It jams.").as_bytes())
        run_once(config)  # the ack goes out, and comes back as a DSN to its return path
        # A forged one too: to the plain help address, naming a teacher, quoting nothing
        # we signed.
        mail.deliver(HELP, (
            b"From: MAILER-DAEMON@attacker.test\nTo: help@school.test\nSubject: failure\n"
            b"Message-ID: <f@attacker.test>\nX-Failed-Recipients: teacher1@school.test\n"
            b"In-Reply-To: <0.0.0.mailhelp.t1@school.test>\n\n550 user unknown\n"),
            mail_from="")
        run_once(config)
    finally:
        relay.stop()
    kinds = [m["kind"] for m in show(config, 1)["messages"]]
    assert kinds.count("bounce") == 1
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            suppressed = connection.scalars(select(Suppression.address)).all()
            [ack] = connection.execute(select(Outbox).where(Outbox.kind == "ack")).all()
    finally:
        engine.dispose()
    assert suppressed == ["ghost@gone.test"]
    assert ack.status == "bounced" and ack.mail_from.startswith("help+bounce-")
