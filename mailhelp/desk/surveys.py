"""Satisfaction surveys: tokens, the one-click links, and reading an answer. Pure.

A survey is answered by mail from any client: each rating is a ``mailto:`` link
that composes a new message to ``help+survey-TOKEN@...`` with the token in the
subject and body as well, since such a message carries no In-Reply-To. A plain
reply to the survey mail works too: its first word or line is the rating.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from ..mail.parse import Inbound

RATINGS = {5: "Excellent", 4: "Good", 3: "Okay", 2: "Poor", 1: "Bad"}
_LABELS = {"excellent": 5, "great": 5, "super": 5, "good": 4, "gut": 4, "okay": 3, "ok": 3,
           "fine": 3, "poor": 2, "bad": 1, "terrible": 1, "awful": 1}
TOKEN = re.compile(r"survey-([a-z2-7]{26})\b", re.I)
# Possessive runs of whitespace (*+): with plain ones, "rating" and 20,000 spaces took 5 s.
_FIRST = re.compile(r"^\s*+(?:rating\s*+[:=]?\s*+)?(?:([1-5])(?!\d|[.,]\d)(?:\s*+/\s*+5)?"
                    r"|([a-z]+)\b)[\s\-–—:,.!)]*+(.*)$", re.I | re.S)
_COMMENT_PREFIX = re.compile(r"^\s*+comment\s*+(?:\(optional\)\s*+)?:\s*", re.I)
MAX_ANSWER = 20_000  # characters of a reply read for a rating and a comment


@dataclass(frozen=True)
class Answer:
    rating: int
    comment: str
    by_number: bool = False  # "4 ..." rather than "good ..."


def new_token() -> str:
    """26 base32 characters: 128 bits, unguessable, safe in an address and a subject."""
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def reply_address(help_address: str, token: str) -> str:
    local, _, domain = help_address.partition("@")
    return f"{local}+survey-{token}@{domain}"


def mailto_links(help_address: str, tag: str, token: str) -> list[dict]:
    """One link per rating, newest first: what the survey templates show."""
    to = reply_address(help_address, token)
    links = []
    for rating, label in RATINGS.items():
        subject = f"[{tag}] Survey answer: {rating} - {label} (survey-{token})"
        body = (f"Rating: {rating} - {label}\n\nComment (optional): \n\n\n"
                f"Please leave the next line in: it tells us which ticket you rate.\n"
                f"survey-{token}\n")
        links.append({"rating": rating, "label": label,
                      "mailto": f"mailto:{to}?subject={quote(subject)}&body={quote(body)}"})
    return links


def token_in(inbound: Inbound) -> str:
    """The survey token an answer carries: plus address, subject or body; else ''."""
    places = [a.address for a in (*inbound.to, *inbound.cc)]
    places += list(inbound.headers.get("delivered-to", ()))
    places += [inbound.subject, inbound.text[:4000]]
    for place in places:
        found = TOKEN.search(place)
        if found:
            return found.group(1).lower()
    return ""


def named(inbound: Inbound) -> bool:
    """Whether the message is addressed to a survey (its token in an address or the
    subject: a reply to the survey mail, or a rating link's message), not just quoting
    one."""
    places = [a.address for a in (*inbound.to, *inbound.cc)]
    places += [*inbound.headers.get("delivered-to", ()), inbound.subject]
    return any(TOKEN.search(place) for place in places)


def read_answer(text: str) -> Answer | None:
    """``"4 - quick fix, thanks"`` -> Answer(4, "quick fix, thanks"); None if no rating."""
    lines = [line for line in text[:MAX_ANSWER].replace("\r\n", "\n").split("\n")
             if not TOKEN.search(line) and not line.startswith("Please leave the next line")]
    body = "\n".join(lines).strip()
    match = _FIRST.match(body)
    if not match:
        return None
    number, word, rest = match.groups()
    rating = int(number) if number else _LABELS.get((word or "").lower())
    if rating is None:
        return None
    if number and rest and _label_first(rest):
        rest = rest.split(None, 1)[1] if " " in rest.strip() else ""  # "5 - Great" -> ""
    comment = "\n".join(_COMMENT_PREFIX.sub("", line) for line in rest.split("\n"))
    return Answer(rating, comment.strip(" \n-–—:,."), by_number=bool(number))


def _label_first(rest: str) -> bool:
    first = rest.strip().split(None, 1)
    return bool(first) and first[0].strip(".,!").lower() in (
        label.lower() for label in RATINGS.values())


# Signed web links (mailhelp serve) --------------------------------------------------

def sign(secret: str, token: str, rating: int, expires: datetime) -> str:
    """A link token: survey token, rating and expiry, with an HMAC over them."""
    payload = f"{token}.{rating}.{int(expires.timestamp())}"
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:16]
    return f"{payload}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def verify(secret: str, signed: str, now: datetime) -> tuple[str, int] | None:
    """(survey token, rating) from a link token that is genuine and not expired."""
    try:
        token, rating, expires, mac = signed.split(".")
        expected = sign(secret, token, int(rating),
                        datetime.fromtimestamp(int(expires), tz=now.tzinfo))
    except (ValueError, OverflowError, OSError):
        return None
    if not hmac.compare_digest(expected.rsplit(".", 1)[1], mac):
        return None
    if now.timestamp() > int(expires) or int(rating) not in RATINGS:
        return None
    return token, int(rating)


def web_links(base_url: str, secret: str, token: str, expires: datetime) -> list[dict]:
    return [{"rating": rating, "label": label,
             "url": f"{base_url.rstrip('/')}/{sign(secret, token, rating, expires)}"}
            for rating, label in RATINGS.items()]
