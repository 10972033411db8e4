"""Outgoing mail as the bytes SMTP sends: the standard email package, policy.default
with CRLF line ends (``email.policy.SMTP``).

One change often mails the same words to several people (a new ticket's notification
goes to every staff member), and building a MIME message costs far more than sending
it. So the MIME body (text and HTML parts, attachments) is built and serialised once
per content, and each mail gets its own header block (To, Message-ID, ...) in front
of it. A header that is short printable ASCII is written as it is, which is exactly
what the policy writes for it; anything else goes through the policy's header
classes, which encode (RFC 2047) and fold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email import contentmanager
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import EmailPolicy
from functools import lru_cache

from ..db.storage import safe_filename
from ..delivery.templating import Rendered
from .parse import Attachment

MAX_LINE = 78  # RFC 5322's recommended line length, the policy's max_line_length
_PLAIN = re.compile(r"[\x20-\x7e]*")
_MESSAGE_ID = re.compile(r"<[\x21-\x7e]+>")
_ID_HEADERS = ("message-id", "in-reply-to", "references")


class _ReusedHeaders:
    """The policy's header_factory, reusing header objects (immutable) for values seen
    before: every body carries the same few Content-Type and encoding headers, and
    parsing them again is a third of what building a body costs."""

    def __init__(self) -> None:
        self.registry = HeaderRegistry()
        self.make = lru_cache(maxsize=256)(self.registry)

    def __call__(self, name: str, value: str):
        return self.make(name, value)

    def __getitem__(self, name: str):
        return self.registry[name]


class _BodyPolicy(EmailPolicy):
    """policy.default for SMTP, remembering how it folded a header: the same few part
    headers are folded for every body."""

    def fold_binary(self, name: str, value) -> bytes:
        return _folded(self, name, value, type(value))


@lru_cache(maxsize=256)
def _folded(policy: EmailPolicy, name: str, value, _type: type) -> bytes:
    return EmailPolicy.fold_binary(policy, name, value)


BODY_POLICY = _BodyPolicy(linesep="\r\n", header_factory=_ReusedHeaders())  # as SMTP_POLICY
# The boundary between the text and HTML parts, the same in every body so that the
# multipart header is reused too. It cannot occur in a part's encoded form: '=' is
# escaped in quoted-printable and '_' is not in base64's alphabet, so only a text sent
# as it is (short lines) could hold it; then the generator picks a random one.
BOUNDARY = "=_mailhelp_b1e7d4c0a9f2"


# How policy.default picks a text part's transfer encoding (7bit, 8bit, quoted-printable
# or base64) and encodes it. Private to the email package, so looked up with a default:
# without it every body takes the package's own (slower) road.
_encode_text = getattr(contentmanager, "_encode_text", None)


def body(rendered: Rendered, attachments: Sequence[Attachment] = (), logo=None) -> bytes:
    """The MIME entity of a mail (MIME-Version, Content-Type, the parts), serialised.
    ``logo`` (data, subtype, cid) goes with the HTML part as an inline image."""
    if logo is not None:
        return _by_package(rendered, attachments, logo)
    if not attachments and _encode_text is not None \
            and BOUNDARY not in rendered.text and BOUNDARY not in rendered.html:
        return _alternative(rendered.text, rendered.html)
    return _by_package(rendered, attachments)


def _alternative(text: str, html: str) -> bytes:
    """The text and HTML alternatives, written out as the email package writes the
    message that ``_by_package`` builds (a test holds the two byte for byte equal):
    a tenth of the time, for the body nearly every mail has."""
    out = [b"MIME-Version: 1.0\r\n",
           f'Content-Type: multipart/alternative; boundary="{BOUNDARY}"\r\n\r\n'.encode()]
    # add_alternative() leaves a MIME-Version header on the part it adds.
    for subtype, content, extra in (("plain", text, ""), ("html", html, "MIME-Version: 1.0\r\n")):
        cte, data = _encode_text(content, "utf-8", None, BODY_POLICY)
        out.append(f'--{BOUNDARY}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
                   f"Content-Transfer-Encoding: {cte}\r\n{extra}\r\n".encode())
        # The encoded lines end in "\n" alone; 8bit text keeps its bytes as surrogates.
        out.append(data.replace("\n", "\r\n").encode("ascii", "surrogateescape") + b"\r\n")
    out.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(out)


def _by_package(rendered: Rendered, attachments: Sequence[Attachment] = (), logo=None) -> bytes:
    mail = EmailMessage(policy=BODY_POLICY)
    mail.set_content(rendered.text)
    mail.add_alternative(rendered.html, subtype="html")
    if logo is not None:
        # multipart/alternative [text/plain, multipart/related [text/html, image]]
        mail.get_payload()[1].add_related(logo.data, maintype="image", subtype=logo.subtype,
                                          cid=f"<{logo.cid}>", disposition="inline",
                                          filename=f"logo.{logo.subtype}")
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        if maintype.lower() in ("message", "multipart"):
            # The email package takes only a parsed message for these, and would write an
            # attached message in base64, which MIME forbids: its bytes go as a file.
            maintype, subtype = "application", "octet-stream"
        mail.add_attachment(attachment.payload, maintype=maintype or "application",
                            subtype=subtype or "octet-stream",
                            filename=safe_filename(attachment.filename))
    if not attachments and logo is None and BOUNDARY not in rendered.text \
            and BOUNDARY not in rendered.html:
        mail.set_boundary(BOUNDARY)
    return mail.as_bytes()


def complete(raw: bytes, text: str | None, html: str | None) -> bytes:
    """An outbox row's mail: its bytes, or its header block and the body built now."""
    if text is None:
        return raw
    return raw + _shared_body(Rendered("", text, html or ""))


@lru_cache(maxsize=16)
def _shared_body(rendered: Rendered) -> bytes:
    """Mails of one change that say the same (a notification to each staff member) are
    sent one after the other: their body is built once."""
    return body(rendered)


def headers(fields: Iterable[tuple[str, str]]) -> bytes:
    """Header lines for ``(name, value)`` pairs; a line break in a value is refused."""
    lines = []
    for name, value in fields:
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name}: a value may not contain a line break")
        if len(name) + 2 + len(value) <= MAX_LINE and _PLAIN.fullmatch(value):
            lines.append(f"{name}: {value}\r\n".encode("ascii"))
        elif name.lower() in _ID_HEADERS:
            lines.append(id_list(name, value.split()))
        elif name.lower() == "subject" and _foldable(value):
            lines.append(_fold_words(name, value.split(" ")))
        else:
            lines.append(_by_policy(name, value))
    return b"".join(lines)


def id_list(name: str, ids: Sequence[str]) -> bytes:
    """Message ids (Message-ID, In-Reply-To, References) folded between ids, as RFC 5322
    allows; an id is never split, so a long one makes a long line, as with the policy."""
    if not ids or not all(_MESSAGE_ID.fullmatch(i) and len(i) < 900 for i in ids):
        return _by_policy(name, " ".join(ids))
    return _fold_words(name, ids)


def _fold_words(name: str, words: Sequence[str]) -> bytes:
    lines, line = [], f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > MAX_LINE and line.strip() != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _foldable(value: str) -> bool:
    """Plain ASCII words with single spaces: folding at the spaces loses nothing."""
    return (bool(_PLAIN.fullmatch(value)) and "=?" not in value and "  " not in value
            and value == value.strip() and all(len(w) < MAX_LINE - 1 for w in value.split(" ")))


@lru_cache(maxsize=2048)
def _by_policy(name: str, value: str) -> bytes:
    """Encoded and folded by the policy's header classes (names and subjects repeat:
    the same teacher's name is in many mails' From and To)."""
    return SMTP_POLICY.fold_binary(name, SMTP_POLICY.header_factory(name, value))
