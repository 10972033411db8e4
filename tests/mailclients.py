"""Replies shaped the way real mail clients put them on the wire.

Each builder takes the message being answered (raw bytes, as the client's user
received it) and returns the raw reply. The shapes follow what Gmail, Outlook,
Apple Mail and iOS Mail send: their threading headers (or the lack of them),
their quote headers, and their MIME structure.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import time
from email.message import EmailMessage

HELP = "help@school.test"


def _original(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    return body.get_content() if body else ""


def _quoted(text: str) -> str:
    return "\n".join(("> " + line) if line else ">" for line in text.splitlines())


def _ids(original: EmailMessage) -> tuple[str, str]:
    references = f"{original.get('References', '')} {original['Message-ID']}".strip()
    return original["Message-ID"], references


def _unique(tag: str) -> str:
    return f"{tag}{time.time_ns()}"


def gmail(raw: bytes, sender: str, text: str, *, to: str = HELP, cc: str = "") -> bytes:
    """Gmail: In-Reply-To and References, multipart/alternative, "On ... wrote:" wrapped."""
    original = _original(raw)
    in_reply_to, references = _ids(original)
    quoted = _quoted(_text_of(original))
    name = original["From"].addresses[0].display_name
    plain = (f"{text}\n\nOn Mon, Nov 23, 2026 at 8:12 AM {name} <\n{HELP}> wrote:\n\n"
             f"{quoted}\n")
    html = (f'<div dir="ltr">{text.replace(chr(10), "<br>")}</div><br>'
            f'<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Nov 23, 2026 '
            f"at 8:12 AM {name} &lt;{HELP}&gt; wrote:<br></div><blockquote class="
            f'"gmail_quote">{_text_of(original)}</blockquote></div>')
    boundary = _unique("0000000000")
    lines = [
        f"From: {sender}", f"Date: Mon, 23 Nov 2026 09:{time.time_ns() % 60:02d}:00 -0500",
        f"Message-ID: <CA+{_unique('gm')}@mail.gmail.com>",
        f"Subject: Re: {original['Subject']}", f"To: {to}",
        *([f"Cc: {cc}"] if cc else []),
        f"In-Reply-To: {in_reply_to}", f"References: {references}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"', "",
        f"--{boundary}", 'Content-Type: text/plain; charset="UTF-8"', "", plain,
        f"--{boundary}", 'Content-Type: text/html; charset="UTF-8"', "", html,
        f"--{boundary}--", "",
    ]
    return "\r\n".join(lines).replace("\n", "\r\n").replace("\r\r\n", "\r\n").encode()


def outlook(raw: bytes, sender: str, text: str, *, to: str = HELP) -> bytes:
    """Outlook (desktop, some Exchange setups): no In-Reply-To, no References, "RE:",
    a From:/Sent:/To:/Subject: block above the unquoted original, an HTML part."""
    original = _original(raw)
    sent_from = original["From"]
    block = (f"{text}\n\n________________________________\nFrom: {sent_from}\n"
             f"Sent: Monday, November 23, 2026 8:12 AM\nTo: {original['To']}\n"
             f"Subject: {original['Subject']}\n\n{_text_of(original)}")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"RE: {original['Subject']}"
    message["Date"] = "Mon, 23 Nov 2026 14:30:00 +0000"
    message["Message-ID"] = f"<{_unique('DM6PR')}@DM6PR01MB.namprd01.prod.outlook.com>"
    message["Thread-Topic"] = str(original["Subject"])
    message["Thread-Index"] = "AQHZ1234abcd=="
    message["X-MS-Has-Attach"] = ""
    message["Content-Language"] = "en-US"
    message.set_content(block)
    html = "<html><body><div>" + text.replace("\n", "<br>") + "</div><hr>" + \
        f"<b>From:</b> {sent_from}<br><b>Sent:</b> Monday, November 23, 2026 8:12 AM<br>" + \
        f"<b>Subject:</b> {original['Subject']}<br><br>{_text_of(original)}</body></html>"
    message.add_alternative(html, subtype="html")
    return message.as_bytes(policy=email.policy.SMTP)


def apple_mail(raw: bytes, sender: str, text: str, *, to: str = HELP) -> bytes:
    """Apple Mail on macOS: References and In-Reply-To, text/plain us-ascii, quoted with
    "> On <date>, <name> wrote:" inside the quote."""
    original = _original(raw)
    in_reply_to, references = _ids(original)
    name = original["From"].addresses[0].display_name
    body = (f"{text}\n\n> On Nov 23, 2026, at 08:12, {name} <{HELP}> wrote:\n> \n"
            f"{_quoted(_text_of(original))}\n\n")
    lines = [
        "Content-Type: text/plain;\n\tcharset=us-ascii", "Content-Transfer-Encoding: 7bit",
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.600.62\\))",
        f"Subject: Re: {original['Subject']}", f"From: {sender}",
        f"In-Reply-To: {in_reply_to}", "Date: Mon, 23 Nov 2026 10:05:11 -0500",
        f"Message-Id: <{_unique('A1B2C3D4')}@school.test>", f"References: {references}",
        f"To: {to}", "X-Mailer: Apple Mail (2.3774.600.62)", "", body,
    ]
    return "\n".join(lines).replace("\n", "\r\n").encode()


def ios_mail(raw: bytes, sender: str, text: str, *, to: str = HELP) -> bytes:
    """iOS Mail on a phone: like Apple Mail, with "Sent from my iPhone" and the quote
    header as the first quoted line."""
    original = _original(raw)
    in_reply_to, references = _ids(original)
    name = original["From"].addresses[0].display_name
    body = (f"{text}\n\nSent from my iPhone\n\n> On Nov 23, 2026, at 8:12 AM, {name} "
            f"<{HELP}> wrote:\n> \n{_quoted(_text_of(original))}\n")
    lines = [
        "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
        f"From: {sender}", "Mime-Version: 1.0 (1.0)", "Date: Mon, 23 Nov 2026 10:07:42 -0500",
        f"Subject: Re: {original['Subject']}", f"Message-Id: <{_unique('ios')}@school.test>",
        f"References: {references}", f"In-Reply-To: {in_reply_to}", f"To: {to}",
        "X-Mailer: iPhone Mail (21E236)", "", body,
    ]
    return "\n".join(lines).replace("\n", "\r\n").encode()


def new_message(sender: str, subject: str, text: str, *, to: str = HELP, cc: str = "",
                extra_headers: str = "") -> bytes:
    """A fresh message (no threading headers), as a teacher writes one."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = "Mon, 23 Nov 2026 08:12:45 -0500"
    message["Message-ID"] = f"<{_unique('new')}@school.test>"
    message.set_content(text)
    raw = message.as_bytes(policy=email.policy.SMTP)
    if extra_headers:
        raw = extra_headers.replace("\n", "\r\n").encode() + raw
    return raw



def mailto_link(raw: bytes, sender: str, label: str) -> bytes:
    """What any mail client composes when ``sender`` follows the link of the HTML part
    of ``raw`` whose mailto: address holds ``label`` ("4 - Good"): a new message (no
    In-Reply-To, no References) to the link's address, with its subject and body."""
    from urllib.parse import parse_qs, unquote, urlparse

    html = _original(raw).get_body(("html",)).get_content()
    link = next(part.split('"')[0] for part in html.split('href="')[1:]
                if part.startswith("mailto:") and label.replace(" ", "%20") in part)
    target = urlparse(link.replace("&amp;", "&"))
    query = parse_qs(target.query)
    answer = EmailMessage()
    answer["From"] = sender
    answer["To"] = unquote(target.path)
    answer["Subject"] = query["subject"][0]
    answer["Message-ID"] = email.utils.make_msgid(domain="school.test")
    answer.set_content(query["body"][0])
    return answer.as_bytes(policy=email.policy.SMTP)
