"""outsiders.py: who may open a ticket, on the test database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailhelp.db.models import Outbox, Ticket
from tests.security.desk import NOW, mail

DOMAINS = '[helpdesk]\nrequester_domains = ["school.test", "district.test"]\n'


def test_people_of_the_districts_domains_and_staff_open_tickets(make_desk):
    desk = make_desk(DOMAINS + '[authentication]\nunauthenticated_staff = "trust"\n',
                     staff=("tech1@school.test", "contractor@itfirm.test"))
    for sender in ("teacher1@school.test", "nurse@district.test", "contractor@itfirm.test"):
        assert desk.send(mail(sender=sender)).outcome.action == "new_ticket", sender
    result = desk.send(mail(sender="parent@gmail.test"))
    assert result.outcome.action == "outsider" and result.state == "outsider"
    assert len(desk.rows(Ticket)) == 3


@pytest.mark.parametrize(("policy", "tickets", "answers"), [
    ("reply", 0, 1), ("ignore", 0, 0), ("accept", 2, 0)])
def test_the_outsiders_policy(make_desk, policy, tickets, answers):
    desk = make_desk(DOMAINS + f'outsiders = "{policy}"\n')
    desk.send(mail(sender="parent@gmail.test", subject="One"))
    desk.send(mail(sender="parent@gmail.test", subject="Two"))
    assert len(desk.rows(Ticket)) == tickets
    assert len(desk.rows(Outbox, Outbox.kind == "outsider")) == answers


def test_one_answer_a_day(make_desk):
    desk = make_desk(DOMAINS)
    desk.send(mail(sender="parent@gmail.test", subject="One"))
    desk.pipeline.clock = lambda: NOW + timedelta(days=1, seconds=1)
    desk.send(mail(sender="parent@gmail.test", subject="Two"))
    answers = desk.rows(Outbox, Outbox.kind == "outsider")
    assert [a.recipients for a in answers] == [["parent@gmail.test"]] * 2
    assert all(a.ticket_id is None and a.mail_from.startswith("help+bounce-") for a in answers)


def test_without_domains_anyone_opens_a_ticket(make_desk):
    desk = make_desk()
    assert desk.send(mail(sender="parent@gmail.test")).outcome.action == "new_ticket"
