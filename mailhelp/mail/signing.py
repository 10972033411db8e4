"""Message-IDs and return paths that only this desk can make.

A bounce is believed only when it comes back to an address we signed or names a
Message-ID we signed: otherwise anyone could write "your mail to the teacher
bounced" and silence her. Both carry a random nonce (``secrets``), the ticket, and
an HMAC of the two under the desk's own key (made at ``init``, kept in the
database): ``<nonce.mac.mailhelp.t42@domain>`` and
``help+bounce-nonce-42-mac@domain``. From the return path the Message-ID is made
again, so the outbox row it names is found by an exact match.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..db.models import Key

NONCE_HEX = 16
MAC_HEX = 12
_MESSAGE_ID = re.compile(r"<([0-9a-f]{16})\.([0-9a-f]{12})\.mailhelp\.t(\d{1,9})@([^<>@\s]+)>")
_KEYS: dict[str, bytes] = {}  # database URL -> its key, read once per process


def desk_key(tx: Session) -> bytes:
    """The desk's signing key, made on first use where ``init`` has not made one."""
    url = str(tx.get_bind().url)
    found = _KEYS.get(url)
    if found is None:
        value = tx.scalar(select(Key.value).where(Key.name == "signing"))
        if value is None:
            # Kept only once it is committed (read back next time): this transaction may
            # yet roll back, and the mail it signs with it goes then too.
            value = secrets.token_hex(32)
            tx.execute(insert(Key).values(name="signing", value=value))
            return bytes.fromhex(value)
        found = _KEYS[url] = bytes.fromhex(value)
    return found


def _mac(key: bytes, nonce: str, ticket_id: int) -> str:
    return hmac.new(key, f"{nonce}.{ticket_id}".encode(), hashlib.sha256).hexdigest()[:MAC_HEX]


def message_id(key: bytes, ticket_id: int, domain: str, nonce: str | None = None) -> str:
    nonce = nonce or secrets.token_hex(NONCE_HEX // 2)
    return f"<{nonce}.{_mac(key, nonce, ticket_id)}.mailhelp.t{ticket_id}@{domain}>"


def signed_ticket(key: bytes, value: str) -> int | None:
    """The ticket a Message-ID of ours names, if its MAC checks; else None."""
    found = _MESSAGE_ID.fullmatch(value.strip())
    if found is None:
        return None
    nonce, mac, ticket = found.group(1), found.group(2), int(found.group(3))
    return ticket if hmac.compare_digest(mac, _mac(key, nonce, ticket)) else None


def return_path(help_address: str, our_message_id: str) -> str:
    """The envelope sender of one mail: bounces of it come back here."""
    found = _MESSAGE_ID.fullmatch(our_message_id)
    if found is None:
        return help_address
    local, _, domain = help_address.partition("@")
    nonce, mac, ticket = found.group(1), found.group(2), found.group(3)
    return f"{local}+bounce-{nonce}-{ticket}-{mac}@{domain}"


def returned_message_id(key: bytes, address: str, help_address: str) -> str | None:
    """The Message-ID whose bounces go to ``address``, if it is a return path we signed."""
    local, _, domain = help_address.lower().partition("@")
    found = re.fullmatch(re.escape(local) + r"\+bounce-([0-9a-f]{16})-(\d{1,9})-([0-9a-f]{12})@"
                         + re.escape(domain), address.strip().strip("<>").lower())
    if found is None:
        return None
    nonce, ticket, mac = found.group(1), int(found.group(2)), found.group(3)
    if not hmac.compare_digest(mac, _mac(key, nonce, ticket)):
        return None
    return message_id(key, ticket, domain, nonce)
