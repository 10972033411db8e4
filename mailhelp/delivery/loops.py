"""What a mail loop looks like, asked of the message an automatic mail would answer.

A person may write many separate requests in an hour; a machine answering our mail
writes the same words again, or answers the desk's own Message-IDs. Only mail that
answers such a message is held by the limits (outbox.hold_reason), so that a busy
teacher is still acknowledged and two help desks still stop.
"""

from __future__ import annotations

import re
from datetime import datetime
from difflib import SequenceMatcher

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db.models import Message
from ..desk.batch import Batch
from ..mail import signing

# Texts at least this alike (difflib's ratio) are the same text with a number changed.
ALIKE = 0.9
COMPARED_CHARS = 2000  # of each text: a loop repeats itself from the first line
EARLIER = 50  # earlier messages from the sender compared, the latest first

_messages = Message.__table__
_TRIGGER = select(_messages.c.id, _messages.c.from_address, _messages.c.in_reply_to,
                  _messages.c.references, _messages.c.body).where(
    _messages.c.direction == "in").limit(1)
_EARLIER = select(_messages.c.body).where(_messages.c.direction == "in").order_by(
    _messages.c.id.desc()).limit(EARLIER)


def loop_sign(tx: Session, answered: str, address: str, since: datetime) -> str:
    """Why the message ``answered`` (a Message-ID), from ``address``, looks like part of
    a loop, or '': it answers a Message-ID the desk signed, or says what the same sender
    said since ``since``. Mail about no incoming message of that sender is no loop."""
    if not answered:
        return ""
    Batch.of(tx).write_all()  # the batch's own messages are compared too
    run = tx.connection().execute
    trigger = run(_TRIGGER.where(_messages.c.message_id == answered)).first()
    if trigger is None or (trigger.from_address or "").lower() != address.lower():
        return ""
    key = signing.desk_key(tx)
    if any(signing.signed_ticket(key, value) is not None
           for value in (trigger.in_reply_to or "", *(trigger.references or ()))):
        return "it answers the desk's own automatic mail"
    text = normalised(trigger.body)
    earlier = run(_EARLIER.where(_messages.c.from_address == trigger.from_address,
                                 _messages.c.created_at >= since,
                                 _messages.c.id != trigger.id)).scalars()
    if any(alike(text, normalised(body)) for body in earlier):
        return "its text repeats an earlier message from the same sender"
    return ""


def normalised(text: str | None) -> str:
    """The words of a text, with numbers (ticket numbers, times) and spacing left out."""
    text = (text or "")[:COMPARED_CHARS].lower()
    return " ".join(re.sub(r"\d+", "0", text).split())


def alike(one: str, other: str) -> bool:
    if one == other:
        return True
    if not one or not other:
        return False
    matcher = SequenceMatcher(None, one, other, autojunk=False)
    return matcher.quick_ratio() >= ALIKE and matcher.ratio() >= ALIKE
