"""A seeded stream of realistic mail to the help desk, shaped the way mail clients send it.

The mix: about 68% new requests (plain text, multipart/alternative or HTML-only as
Outlook sends it; UTF-8, ISO-8859-1/-15, windows-1252 and US-ASCII, in quoted-printable,
base64 and 8bit), 25% replies that thread onto an earlier request, 5% requests with a
200 KB attachment, and a few out-of-office replies and bounces.

Every message knows how many mails mailhelp answers it with (``expected_mails``): a new
request gets an acknowledgement and one notification per staff address, a requester's
reply a notification per staff address, an auto-reply or an unrelated bounce nothing.
"""

from __future__ import annotations

import base64
import quopri
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr

HELP = "help@school.test"
STAFF_COUNT = 2
ATTACHMENT_SIZE = 200 * 1024

NEW, REPLY, ATTACHMENT, AUTO_REPLY, BOUNCE = "new", "reply", "attachment", "auto_reply", "bounce"
# What mailhelp sends for each kind: ack + staff notifications, staff notifications, nothing.
EXPECTED_MAILS = {NEW: 1 + STAFF_COUNT, ATTACHMENT: 1 + STAFF_COUNT, REPLY: STAFF_COUNT,
                  AUTO_REPLY: 0, BOUNCE: 0}

FIRST = ["Jane", "Bob", "María", "José", "Jürgen", "Zoë", "François", "Ingrid", "Ahmed", "Mei",
         "Olga", "Søren", "Chloé", "Dmitri", "Priya", "Łukasz", "Ana", "Tom", "Grace", "Kenji"]
LAST = ["Teacher", "Müller", "García", "Nguyen", "O'Brien", "Smith", "Dubois", "Kowalski",
        "Johansson", "Patel", "Schröder", "Martínez", "Brown", "Lefèvre", "Yamada", "Novák"]
DEVICES = ["projector", "printer", "smartboard", "document camera", "Chromebook", "laptop",
           "speakers", "Wi-Fi", "email account", "Google Classroom", "gradebook", "scanner",
           "desktop PC", "headphones cart", "password", "student accounts", "TV", "microphone"]
PROBLEMS = ["does not turn on", "shows no signal", "keeps disconnecting", "is very slow",
            "makes a strange noise", "asks for a password I do not have", "prints blank pages",
            "will not sync", "is missing", "shows an error message", "stopped working",
            "is locked", "flickers", "cannot be found on the network"]
OPENINGS = ["Hi,", "Hello,", "Hi team,", "Good morning,", "Dear help desk,", "Hallo,", "Hola,",
            "Bonjour,"]
SENTENCES = [
    "The {device} in room {room} {problem} since this morning.",
    "I already tried restarting it twice, and I checked every cable.",
    "My students need it for the test on {day}, so this is a bit urgent.",
    "It worked fine last week, then the update was installed.",
    "Could someone come by during my planning period (period {period})?",
    "The error says: \"Device not ready (code 0x{code:04X})\".",
    "Other teachers on the {floor} floor have the same problem.",
    "I am in room {room} until 3:30 pm.",
    "Der Beamer zeigt nur einen blauen Bildschirm, und die Fernbedienung reagiert nicht.",
    "El proyector no enciende y la luz naranja parpadea sin parar.",
    "L'imprimante affiche « bourrage papier » alors qu'il n'y a rien à l'intérieur.",
    "Prüfen Sie bitte auch den Drucker im Lehrerzimmer, er druckt nur Streifen.",
    "Thanks in advance — I really appreciate your help.",
    "This is the third time this month; maybe the {device} needs replacing?",
    "I attached what the screen shows, in case it helps.",
]
REPLIES = [
    "It is still not working, I am afraid. The light is blinking orange now.",
    "Quick update: it works again after lunch, but only on the left screen.",
    "I will be in room {room} all afternoon if someone can come by.",
    "Any news on this? My class starts in twenty minutes.",
    "Leider funktioniert es immer noch nicht. Können Sie heute vorbeikommen?",
    "Sigue sin funcionar; ¿pueden pasar mañana por la mañana?",
    "Here is the exact error message: \"0x{code:04X}: device not responding\".",
]
SIGNATURES = ["\n-- \n{name}\n{subject_taught} teacher, Springfield Middle School\nRoom {room}",
              "\nBest,\n{name}", "\nThanks,\n{first}", "\nMit freundlichen Grüßen\n{name}",
              "\nSent from my iPhone"]
TAUGHT = ["Math", "Science", "English", "History", "Art", "Music", "PE", "Spanish", "German"]
# (charset, transfer encoding) of text parts, weighted as mail clients send them.
ENCODINGS = [("utf-8", "quoted-printable")] * 5 + [("utf-8", "base64")] * 2 + [
    ("utf-8", "8bit"), ("iso-8859-1", "quoted-printable"), ("iso-8859-15", "8bit"),
    ("windows-1252", "quoted-printable"), ("us-ascii", "7bit")]
OUTLOOK_STYLE = (
    "<style><!--\n@font-face {font-family:\"Cambria Math\"; panose-1:2 4 5 3 5 4 6 3 2 4;}\n"
    "@font-face {font-family:Calibri; panose-1:2 15 5 2 2 2 4 3 2 4;}\n"
    "p.MsoNormal, li.MsoNormal, div.MsoNormal {margin:0cm; font-size:11.0pt;"
    " font-family:\"Calibri\",sans-serif;}\n"
    "span.EmailStyle17 {mso-style-type:personal-compose; font-family:\"Calibri\",sans-serif;"
    " color:windowtext;}\n.MsoChpDefault {mso-style-type:export-only;"
    " font-family:\"Calibri\",sans-serif;}\n"
    "@page WordSection1 {size:612.0pt 792.0pt; margin:72.0pt 72.0pt 72.0pt 72.0pt;}\n"
    "div.WordSection1 {page:WordSection1;}\n--></style>")


@dataclass(frozen=True)
class Teacher:
    name: str
    address: str
    client: str  # gmail | outlook | apple | thunderbird


@dataclass(frozen=True)
class Generated:
    """One message to the help desk and what mailhelp should answer it with."""

    index: int
    kind: str
    raw: bytes
    message_id: str
    sender: str
    subject: str
    replies_to: int | None = None  # index of the request a reply threads onto

    @property
    def expected_mails(self) -> int:
        return EXPECTED_MAILS[self.kind]


# Called with a request's Message-ID; returns (ticket number, acknowledgement's Message-ID)
# once mailhelp has acknowledged it, so that a reply can answer the acknowledgement.
TicketLookup = Callable[[str], "tuple[int, str] | None"]


class TeacherMail:
    """Deterministic for a given seed: the same kinds, senders and bytes every run."""

    def __init__(self, seed: int = 1, teachers: int = 150) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.teachers = [self._teacher(i) for i in range(teachers)]
        self.requests: list[Generated] = []
        self.count = 0
        self.base = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)

    def _teacher(self, i: int) -> Teacher:
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = f"{first[0]}{last}".lower().encode("ascii", "ignore").decode()
        local = "".join(c for c in local if c.isalnum()) + str(i)
        client = rng.choices(["gmail", "outlook", "apple", "thunderbird"], [4, 4, 2, 1])[0]
        return Teacher(f"{first} {last}", f"{local}@school.test", client)

    def messages(self, n: int, ticket_of: TicketLookup | None = None) -> Iterator[Generated]:
        for _ in range(n):
            yield self.next(ticket_of)

    def next(self, ticket_of: TicketLookup | None = None) -> Generated:
        """The next message of the stream."""
        rng = self.rng
        draw = rng.random()
        if draw < 0.005:
            kind = BOUNCE
        elif draw < 0.015:
            kind = AUTO_REPLY
        elif draw < 0.065:
            kind = ATTACHMENT
        elif draw < 0.315 and self.requests:
            kind = REPLY
        else:
            kind = NEW
        index = self.count
        self.count += 1
        when = self.base + timedelta(seconds=37 * index)
        if kind == REPLY:
            # Most replies answer a recent request, some an older one.
            recent = self.requests[-40:] if rng.random() < 0.8 else self.requests
            generated = self._reply(index, rng.choice(recent), when, ticket_of)
        elif kind == AUTO_REPLY:
            generated = self._auto_reply(index, when)
        elif kind == BOUNCE:
            generated = self._bounce(index, when)
        else:
            generated = self._request(index, kind, when)
            self.requests.append(generated)
        return generated

    # -- the kinds ------------------------------------------------------------------------

    def _request(self, index: int, kind: str, when: datetime) -> Generated:
        rng = self.rng
        teacher = rng.choice(self.teachers)
        facts = self._facts(teacher)
        subject = rng.choice([
            "{Device} in room {room} {problem}", "Problem with the {device}",
            "{device} {problem}", "Help: {device} in {room}", "Urgent: {device}",
            "Question about my {device}", "{Device} im Raum {room} defekt",
            "Problema con el {device} (aula {room})"]).format(**facts)
        lines = [rng.choice(OPENINGS), ""]
        for _ in range(rng.randint(1, 5)):
            lines.append(rng.choice(SENTENCES).format(**facts))
        lines.append(rng.choice(SIGNATURES).format(**facts))
        text = "\n".join(lines) + "\n"
        # One request in ten copies a colleague (who becomes a participant).
        cc = [rng.choice([t for t in self.teachers if t is not teacher])] \
            if rng.random() < 0.1 else []
        message_id = self._message_id(teacher, index)
        headers = self._headers(teacher, subject, message_id, when, cc=cc)
        attachment = None
        if kind == ATTACHMENT:
            name, ctype = rng.choice([("screenshot.png", "image/png"),
                                      ("Fehlermeldung.pdf", "application/pdf"),
                                      ("IMG_2041.JPG", "image/jpeg")])
            attachment = (name, ctype, rng.randbytes(ATTACHMENT_SIZE))
        body = self._body(teacher, text, attachment)
        return Generated(index, kind, headers + body, message_id, teacher.address, subject)

    def _reply(self, index: int, request: Generated, when: datetime,
               ticket_of: TicketLookup | None) -> Generated:
        rng = self.rng
        teacher = next(t for t in self.teachers if t.address == request.sender)
        facts = self._facts(teacher)
        prefix = rng.choice(["Re: ", "RE: ", "AW: ", "Re: "])
        subject, in_reply_to = prefix + request.subject, request.message_id
        references = [request.message_id]
        found = ticket_of(request.message_id) if ticket_of else None
        if found is not None:
            # The teacher answers the acknowledgement, as a mail client would.
            ticket, ack_id = found
            subject, in_reply_to = f"{prefix}[#{ticket}] {request.subject}", ack_id
            references.append(ack_id)
        if teacher.client == "outlook" and rng.random() < 0.3:
            # Some Outlook replies carry only Thread-Index: References is all there is.
            in_reply_to = ""
        text = "\n".join([rng.choice(REPLIES).format(**facts), "",
                          rng.choice(SIGNATURES).format(**facts), "",
                          f"On Mon, Nov 23, 2026 at 8:12 AM {teacher.name} <{teacher.address}>"
                          " wrote:", *(f"> {line}" for line in self._text_of(request))]) + "\n"
        message_id = self._message_id(teacher, index)
        headers = self._headers(teacher, subject, message_id, when, in_reply_to=in_reply_to,
                                references=references)
        body = self._body(teacher, text, None)
        return Generated(index, REPLY, headers + body, message_id, teacher.address, subject,
                         replies_to=request.index)

    def _auto_reply(self, index: int, when: datetime) -> Generated:
        teacher = self.rng.choice(self.teachers)
        subject = self.rng.choice(["Automatic reply: Projector", "Out of Office",
                                   "Abwesenheitsnotiz: Drucker"])
        message_id = self._message_id(teacher, index)
        headers = self._headers(teacher, subject, message_id, when,
                                extra=["Auto-Submitted: auto-replied",
                                       "X-Auto-Response-Suppress: All"])
        text = (f"I am out of the office until Monday with limited access to email.\n"
                f"For urgent matters please contact the front office.\n\n{teacher.name}\n")
        return Generated(index, AUTO_REPLY, headers + self._plain(text, "utf-8",
                                                                  "quoted-printable"),
                         message_id, teacher.address, subject)

    def _bounce(self, index: int, when: datetime) -> Generated:
        rng = self.rng
        lost = f"<{rng.getrandbits(64):016x}@mail.example.net>"
        message_id = f"<bounce.{self.seed}.{index}.{rng.getrandbits(32):08x}@mx.school.test>"
        boundary = f"report-{rng.getrandbits(48):012x}"
        head = "\r\n".join([
            "Return-Path: <>", "From: Mail Delivery System <MAILER-DAEMON@mx.school.test>",
            f"To: {HELP}", "Subject: Undelivered Mail Returned to Sender",
            f"Date: {format_datetime(when)}", f"Message-ID: {message_id}", "MIME-Version: 1.0",
            f'Content-Type: multipart/report; report-type=delivery-status; '
            f'boundary="{boundary}"', "Auto-Submitted: auto-replied", "", ""])
        body = "\r\n".join([
            f"--{boundary}", "Content-Type: text/plain; charset=us-ascii", "",
            "This is the mail system at host mx.school.test.", "",
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients.", "",
            "<nobody@nowhere.example>: host nowhere.example said: 550 5.1.1 User unknown", "",
            f"--{boundary}", "Content-Type: message/delivery-status", "",
            "Reporting-MTA: dns; mx.school.test", "",
            "Final-Recipient: rfc822; nobody@nowhere.example", "Action: failed",
            "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 User unknown", "",
            f"--{boundary}", "Content-Type: text/rfc822-headers", "",
            "From: someone@mail.example.net", "To: nobody@nowhere.example",
            "Subject: Field trip forms", f"Message-ID: {lost}", "",
            f"--{boundary}--", ""])
        return Generated(index, BOUNCE, (head + body).encode(), message_id,
                         "mailer-daemon@mx.school.test", "Undelivered Mail Returned to Sender")

    # -- pieces ---------------------------------------------------------------------------

    def _facts(self, teacher: Teacher) -> dict:
        rng = self.rng
        device = rng.choice(DEVICES)
        return {"device": device, "Device": device[0].upper() + device[1:],
                "room": rng.choice(["12", "104", "2B", "Lab 3", "Gym", "Library", "215"]),
                "problem": rng.choice(PROBLEMS),
                "day": rng.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]),
                "period": rng.randint(1, 7), "code": rng.getrandbits(16),
                "floor": rng.choice(["first", "second", "third"]),
                "name": teacher.name, "first": teacher.name.split()[0],
                "subject_taught": rng.choice(TAUGHT)}

    def _message_id(self, teacher: Teacher, index: int) -> str:
        token = f"{self.seed}x{index}x{self.rng.getrandbits(40):010x}"
        domain = {"gmail": "mail.gmail.com", "outlook": "SN6PR04MB4007.namprd04.prod.outlook.com",
                  "apple": "icloud.com", "thunderbird": "school.test"}[teacher.client]
        return f"<{token}@{domain}>"

    def _headers(self, teacher: Teacher, subject: str, message_id: str, when: datetime, *,
                 cc: list[Teacher] = (), in_reply_to: str = "", references: list[str] = (),
                 extra: list[str] = ()) -> bytes:
        lines = [f"Return-Path: <{teacher.address}>",
                 f"From: {_address(teacher.name, teacher.address)}",
                 f"To: {_address('Springfield SD Help Desk', HELP)}"]
        if cc:
            lines.append("Cc: " + ", ".join(_address(t.name, t.address) for t in cc))
        lines += [f"Subject: {_header(subject)}", f"Date: {format_datetime(when)}",
                  f"Message-ID: {message_id}"]
        if in_reply_to:
            lines.append(f"In-Reply-To: {in_reply_to}")
        if references:
            lines.append("References: " + " ".join(references))
        if teacher.client == "outlook":
            lines += ["Thread-Topic: " + _header(subject.split(": ", 1)[-1]),
                      "X-MS-Exchange-Organization-SCL: -1", "X-MS-Has-Attach: ",
                      "Content-Language: en-US"]
        elif teacher.client == "apple":
            lines.append("X-Mailer: iPhone Mail (21F90)")
        elif teacher.client == "thunderbird":
            lines.append("User-Agent: Mozilla Thunderbird")
        lines += [*extra, "MIME-Version: 1.0"]
        return ("\r\n".join(lines) + "\r\n").encode("ascii")

    def _body(self, teacher: Teacher, text: str,
              attachment: tuple[str, str, bytes] | None) -> bytes:
        """The Content-Type line onwards: the structure the teacher's client sends."""
        rng = self.rng
        charset, cte = rng.choice(ENCODINGS)
        if charset == "us-ascii":
            text = text.encode("ascii", "replace").decode()
        elif charset != "utf-8":
            text = text.encode(charset, "replace").decode(charset)
        shape = {"outlook": rng.choice(["html", "alternative"]),
                 "gmail": "alternative", "apple": rng.choice(["plain", "alternative"]),
                 "thunderbird": "plain"}[teacher.client]
        if shape == "plain":
            content = self._plain(text, charset, cte)
        else:
            html = _html(text, outlook=teacher.client == "outlook")
            if shape == "html":
                content = _part("text/html", html, charset, cte)
            else:
                boundary = f"alt-{rng.getrandbits(60):015x}"
                content = _multipart("alternative", boundary, [
                    _part("text/plain", text, charset, cte), _part("text/html", html, charset,
                                                                   cte)])
        if attachment is None:
            return content
        name, ctype, payload = attachment
        boundary = f"mixed-{rng.getrandbits(60):015x}"
        encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
        attached = (f'Content-Type: {ctype}; name="{name}"\r\n'
                    f'Content-Disposition: attachment; filename="{name}"\r\n'
                    "Content-Transfer-Encoding: base64\r\n\r\n").encode() + encoded
        return _multipart("mixed", boundary, [content, attached])

    def _plain(self, text: str, charset: str, cte: str) -> bytes:
        return _part("text/plain", text, charset, cte)

    @staticmethod
    def _text_of(request: Generated) -> list[str]:
        """The request's text lines for quoting (a rough, cheap rendering)."""
        return [f"(original message {request.message_id}: {request.subject})",
                "The device in the room does not work since this morning."]


def _header(value: str) -> str:
    return value if value.isascii() else Header(value, "utf-8").encode()


def _address(name: str, address: str) -> str:
    return formataddr((name, address), charset="utf-8")


def _html(text: str, outlook: bool) -> str:
    import html

    paragraphs = "".join(f'<p class="MsoNormal">{html.escape(line) or "&nbsp;"}</p>\r\n'
                         for line in text.splitlines())
    if outlook:
        return ('<html xmlns:o="urn:schemas-microsoft-com:office:office"><head>'
                '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
                f"{OUTLOOK_STYLE}</head><body lang=\"EN-US\"><div class=\"WordSection1\">"
                f"{paragraphs}</div></body></html>")
    return f'<div dir="ltr">{paragraphs}</div>'


def _part(ctype: str, text: str, charset: str, cte: str) -> bytes:
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode(charset, "replace")
    if cte == "quoted-printable":
        data = quopri.encodestring(data).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    elif cte == "base64":
        data = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = f'Content-Type: {ctype}; charset="{charset}"\r\nContent-Transfer-Encoding: {cte}\r\n'
    return head.encode() + b"\r\n" + data


def _multipart(subtype: str, boundary: str, parts: list[bytes]) -> bytes:
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()]
    for part in parts:
        out += [f"--{boundary}\r\n".encode(), part, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def big_attachment_message(size: int, seed: int = 7) -> bytes:
    """One teacher's request with a single attachment of ``size`` bytes (the memory test)."""
    rng = random.Random(seed)
    boundary = "big-attachment-boundary"
    head = "\r\n".join([
        'From: "Jane Teacher" <teacher1@school.test>', f"To: {HELP}",
        "Subject: Recording of the lesson where the smartboard froze",
        "Date: Mon, 23 Nov 2026 08:12:45 -0500", f"Message-ID: <big.{seed}.{size}@school.test>",
        "MIME-Version: 1.0", f'Content-Type: multipart/mixed; boundary="{boundary}"', "", ""])
    text = _part("text/plain", "Hi,\n\nthe recording of the lesson is attached.\n\nJane\n",
                 "utf-8", "quoted-printable")
    attached = (b'Content-Type: video/mp4; name="lesson.mp4"\r\n'
                b'Content-Disposition: attachment; filename="lesson.mp4"\r\n'
                b"Content-Transfer-Encoding: base64\r\n\r\n"
                + base64.encodebytes(rng.randbytes(size)).replace(b"\n", b"\r\n"))
    return head.encode() + _multipart("mixed", boundary, [text, attached])
