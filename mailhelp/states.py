"""The desk's vocabulary: the states a ticket, an outbox row and a stored message pass
through. ``StrEnum`` members are their own database values (``TicketStatus.OPEN ==
"open"``), so columns stay plain strings and older rows read unchanged."""

from __future__ import annotations

from enum import StrEnum


class TicketStatus(StrEnum):
    NEW = "new"  # made from a request, nobody has answered yet
    OPEN = "open"  # the requester wrote again, or staff reopened it
    PENDING = "pending"  # staff answered; waiting for the requester
    RESOLVED = "resolved"  # staff say it is done; a survey may follow
    CLOSED = "closed"  # resolved and left alone long enough, or closed by staff

    @property
    def is_done(self) -> bool:
        return self in DONE


DONE = frozenset({TicketStatus.RESOLVED, TicketStatus.CLOSED})


class OutboxStatus(StrEnum):
    QUEUED = "queued"  # waiting for (another) attempt
    SENT = "sent"  # the relay accepted it
    FAILED = "failed"  # refused for good, or out of attempts
    BOUNCED = "bounced"  # sent, then a signed bounce came back for it
    SUPPRESSED = "suppressed"  # recorded, never sent (a limit, or a recent bounce)


class RawState(StrEnum):
    NEW = "new"  # stored, not yet applied (a crash leaves these to redo)
    PROCESSED = "processed"  # applied: its ticket changes are committed
    FAILED = "failed"  # could not be applied; kept for `mailhelp failed`
    # Taken, and left on no ticket:
    SPAM = "spam"  # the spam filter's score said so
    OUTSIDER = "outsider"  # from outside [helpdesk] requester_domains; answered once
    DUPLICATE = "duplicate"  # its Message-ID was recorded already
    IGNORED = "ignored"  # automatic mail on no ticket, a loop, a bounce not of ours
