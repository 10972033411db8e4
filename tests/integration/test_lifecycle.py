"""Tickets move on by themselves, and teachers answer the survey: driven only by
``mailhelp run --once --now ...`` at successive instants, over real IMAP and SMTP."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests import mailclients
from tests.helpers import mailhelp, settled_outbox, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
JANE = "Jane Teacher <teacher1@school.test>"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def plain(raw: bytes) -> str:
    return parsed(raw).get_body(("plain",)).get_content().replace("\r\n", "\n")


class Clock:
    def __init__(self, mail, config) -> None:
        self.mail, self.config = mail, config

    def run(self, delta: timedelta) -> str:
        done = mailhelp(self.config, "run", "--once", "--now", (T0 + delta).isoformat())
        assert done.returncode == 0, done.stderr.decode()
        settled_outbox(self.config)
        return done.stdout.decode()

    def arrive(self, raw: bytes, delta: timedelta) -> str:
        client = self.mail.imap(HELP)
        try:
            client.append("INBOX", raw)
        finally:
            client.logout()
        return self.run(delta)

    def jane(self) -> list[bytes]:
        return self.mail.messages("teacher1@school.test")

    def ticket(self) -> dict:
        return json.loads(mailhelp(self.config, "tickets", "show", "1", "--json").stdout)


@pytest.fixture
def clock(tmp_path, database_url, mail) -> Clock:
    config = write_config(tmp_path, database_url, mail,
                          extra="[survey]\nafter_auto_resolve = true\n")
    assert mailhelp(config, "init").returncode == 0
    return Clock(mail, config)


def open_and_answer(clock: Clock) -> None:
    """Jane writes, Sam answers and waits for her: the ticket is pending."""
    clock.arrive(mailclients.new_message(JANE, "Wifi in room 3", "No wifi since Monday."),
                 timedelta(0))
    note = clock.mail.wait_for_messages("tech1@school.test", 1)[-1]
    clock.arrive(mailclients.gmail(note, "Sam Tech <tech1@school.test>",
                                   "Please restart the access point and tell me."),
                 timedelta(minutes=5))
    assert clock.ticket()["status"] == "pending"


def test_pending_reminder_auto_resolved_survey_closed(clock):
    open_and_answer(clock)
    clock.run(timedelta(days=3, minutes=6))  # reminder
    clock.run(timedelta(days=3, minutes=7))  # nothing new: it ran once
    clock.run(timedelta(days=7, minutes=6))  # auto-resolved, with a notice
    assert clock.ticket()["status"] == "resolved"
    clock.run(timedelta(days=7, hours=1, minutes=6))  # survey
    clock.run(timedelta(days=10, hours=1, minutes=6))  # closed
    ticket = clock.ticket()
    assert ticket["status"] == "closed" and ticket["closed_at"].startswith("2026-12-03")
    assert ticket["survey"]["sent_at"].startswith("2026-11-30T09:06")
    clock.run(timedelta(days=40))  # and nothing more, ever
    subjects = [parsed(m)["Subject"] for m in clock.jane()]
    assert subjects == [
        "[#1] Wifi in room 3",  # the acknowledgement
        "[#1] Wifi in room 3",  # Sam's answer
        "[#1] Waiting for your answer: Wifi in room 3",
        "[#1] Resolved: Wifi in room 3",
        "[#1] How did we do? Wifi in room 3",
    ]


def survey_mail(clock: Clock) -> bytes:
    open_and_answer(clock)
    clock.arrive(mailclients.gmail(clock.mail.messages("tech1@school.test")[-1],
                                   "Sam Tech <tech1@school.test>", "#resolve"),
                 timedelta(minutes=10))
    clock.run(timedelta(hours=2))
    [survey] = [m for m in clock.jane() if "How did we do?" in parsed(m)["Subject"]]
    return survey


def test_answer_by_the_mailto_link(clock):
    survey = survey_mail(clock)
    # Exactly the message a mail client composes from the link: a new message, no
    # In-Reply-To, no References, to the link's address with its subject and body.
    answer = mailclients.mailto_link(survey, JANE, "4 - Good")
    output = clock.arrive(answer, timedelta(hours=3))
    assert "processed 1 message(s) (0 failed)" in output
    ticket = clock.ticket()
    assert ticket["survey"]["rating"] == 4 and ticket["status"] == "resolved"
    assert len(json.loads(mailhelp(clock.config, "tickets", "list", "--json").stdout)) == 1
    thanks = clock.mail.wait_for_messages("teacher1@school.test", 5)[-1]
    assert parsed(thanks)["Subject"] == "[#1] Thank you for your rating"
    assert "4 - Good" in plain(thanks)


def test_answer_by_a_plain_reply(clock):
    survey = survey_mail(clock)
    reply = mailclients.apple_mail(survey, JANE, "4 - quick fix, thanks")
    clock.arrive(reply, timedelta(hours=3))
    ticket = clock.ticket()
    assert ticket["survey"]["rating"] == 4
    assert ticket["survey"]["comment"] == "quick fix, thanks"
    assert ticket["status"] == "resolved"
    assert ticket["messages"][-2]["kind"] == "survey_response"
    # The latest answer counts.
    clock.arrive(mailclients.ios_mail(survey, JANE, "5"), timedelta(hours=4))
    assert clock.ticket()["survey"]["rating"] == 5
