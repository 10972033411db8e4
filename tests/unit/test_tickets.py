"""tickets.set_status: the allowed changes of status are data, and nothing else passes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailhelp.db.models import Ticket
from mailhelp.desk.tickets import TRANSITIONS, TransitionError, set_status
from mailhelp.errors import MailhelpError
from mailhelp.states import TicketStatus

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def test_every_status_has_its_transitions_and_none_leads_back_to_new():
    assert set(TRANSITIONS) == set(TicketStatus)
    assert all(TicketStatus.NEW not in allowed for allowed in TRANSITIONS.values())
    assert all(status not in allowed for status, allowed in TRANSITIONS.items())


@pytest.mark.parametrize("status", [s for s in TicketStatus if s != TicketStatus.NEW])
def test_no_ticket_goes_back_to_new(status):
    # Refused before anything is written: no transaction is needed to see it.
    ticket = Ticket(id=42, status=status)
    with pytest.raises(TransitionError, match=f"#42: no change of status from {status} to new"):
        set_status(None, None, ticket, "new", "tech1@school.test", NOW)
    assert ticket.status == status and issubclass(TransitionError, MailhelpError)


def test_the_same_status_again_is_no_change():
    ticket = Ticket(id=42, status="open")
    set_status(None, None, ticket, TicketStatus.OPEN, "tech1@school.test", NOW)
    assert ticket.status == "open"
