"""What held up in the review of issue 15, kept as regression tests: header injection,
path traversal, template injection and escaping, SQL, the survey's signed links."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta

from mailhelp.db.models import Attachment, Message, Outbox, Ticket
from mailhelp.desk import surveys
from mailhelp.web.site import EXPIRED, INVALID, OK, check_link
from tests.helpers import mail_of
from tests.security.desk import NOW, mail


def sent(row: Outbox) -> email.message.EmailMessage:
    return email.message_from_bytes(mail_of(row), policy=email.policy.default)


def test_encoded_line_breaks_in_headers_inject_nothing(make_desk):
    desk = make_desk()
    desk.send(mail(sender="=?utf-8?q?Jane=0D=0ABcc=3A_evil=40attacker=2Etest?= "
                          "<teacher1@school.test>",
                   subject="=?utf-8?q?Printer=0D=0ABcc=3A_evil=40attacker=2Etest?="))
    for row in desk.rows(Outbox):
        assert "evil@attacker.test" not in row.recipients
        head = mail_of(row).split(b"\r\n\r\n", 1)[0]
        assert not any(line.lower().startswith(b"bcc:") for line in head.split(b"\r\n"))


def test_attachment_names_cannot_leave_their_folder(make_desk):
    desk = make_desk()
    raw = email.message.EmailMessage()
    raw["From"], raw["To"], raw["Subject"] = "teacher1@school.test", "help@school.test", "Log"
    raw["Message-ID"] = "<traversal@x.test>"
    raw.set_content("See the log.")
    raw.add_attachment(b"x", maintype="text", subtype="plain",
                       filename="../../../../etc/cron.d/evil")
    raw.add_attachment(b"y", maintype="text", subtype="plain", filename="..\\..\\boot.ini")
    desk.send(raw.as_bytes())
    names = [a.filename for a in desk.rows(Attachment)]
    assert len(names) == 2 and not any("/" in n or "\\" in n or n.startswith(".")
                                       for n in names)


def test_what_people_write_is_never_a_template_and_is_escaped_in_html(make_desk):
    desk = make_desk()
    desk.send(mail(subject="{{ helpdesk.address }} {% raw %}<script>alert(1)</script>",
                   body="{{ 7*7 }} <img src=x onerror=alert(1)> <script>alert(2)</script>"))
    [note] = desk.rows(Outbox, Outbox.kind == "notification")[:1]
    message = sent(note)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "{{ 7*7 }}" in text and "49" not in text
    assert "{{ helpdesk.address }}" in message["Subject"]


def test_sql_in_a_subject_is_only_text(make_desk):
    desk = make_desk()
    subject = "x'); DROP TABLE tickets; --"
    desk.send(mail(subject=subject))
    [ticket] = desk.rows(Ticket)
    assert ticket.subject == subject
    assert desk.rows(Message, Message.subject == subject)


def test_survey_links_are_signed_and_expire():
    secret, token = "s" * 32, "abcdefghijklmnop"
    expires = NOW + timedelta(days=30)
    signed = surveys.sign(secret, token, 5, expires)
    assert check_link(secret, signed, NOW).status == OK
    assert check_link(secret, signed, expires + timedelta(seconds=1)).status == EXPIRED
    assert check_link("t" * 32, signed, NOW).status == INVALID
    token_part, rating, stamp, mac = signed.split(".")
    assert check_link(secret, f"{token_part}.1.{stamp}.{mac}", NOW).status == INVALID
    other_mac = ("A" if mac[0] != "A" else "B") + mac[1:]
    assert check_link(secret, f"{token_part}.{rating}.{stamp}.{other_mac}", NOW).status \
        == INVALID
