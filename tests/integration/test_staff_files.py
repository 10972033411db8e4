"""The teacher's files reach staff (issue 18): the new-ticket notification in each
technician's INBOX carries the request's files, byte for byte; a message forwarded as
an attachment is shown in the notification (its From, Date, Subject and text) and its
own files are carried; a teacher's reply with a forward shows it the same way.

One desk for the module (one `mailhelp init`): each test counts the mail it adds."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage

import pytest

from tests import mailclients
from tests.helpers import mailhelp, write_config
from tests.integration.test_conversations import JANE, TECH2, Desk, parsed, plain

pytestmark = pytest.mark.integration

TECH1 = "tech1@school.test"
TEACHER = "teacher1@school.test"
# Bytes a text-minded step would change: NUL, CR, LF alone, high bytes.
PDF = b"%PDF-1.7\r\n%\xe2\xe3\xcf\xd3\r\n1 0 obj\n<< /Type /Catalog >>\x00\x0d\x0a\xff" \
    + bytes(range(256)) + b"\n%%EOF\n"
SCREENSHOT = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 4


@pytest.fixture(scope="module")
def desk(tmp_path_factory, module_database_url, mail_servers_session) -> Desk:
    mail_servers_session.clear_mailboxes()
    config = write_config(tmp_path_factory.mktemp("desk"), module_database_url,
                          mail_servers_session, extra='[helpdesk]\ntimezone = "America/Chicago"\n')
    done = mailhelp(config, "init")
    assert done.returncode == 0, done.stderr.decode()
    return Desk(mail_servers_session, config, module_database_url)


def _with_files(raw: bytes, *files: tuple[str, str, bytes] | EmailMessage) -> bytes:
    """``raw`` with files added as a mail client attaches them: (name, type, bytes), or a
    message (attached as message/rfc822, "forward as attachment")."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    for file in files:
        if isinstance(file, EmailMessage):
            message.add_attachment(file)
        else:
            name, content_type, data = file
            maintype, _, subtype = content_type.partition("/")
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes(policy=email.policy.SMTP)


def _phishing() -> EmailMessage:
    """The mail a teacher forwards to ask whether it is real, with its own attachment."""
    message = EmailMessage()
    message["From"] = "IT Support Team <support@quota-check.example>"
    message["To"] = "teacher1@school.test"
    message["Date"] = "Fri, 20 Nov 2026 09:15:00 -0600"
    message["Subject"] = "Your mailbox is 98% full"
    message["Message-ID"] = "<quota-1@quota-check.example>"
    message.set_content("Dear user,\n\nyour mailbox is almost full. Open the attached form "
                        "and log in within 24 hours.\n\nIT Support Team")
    message.add_attachment(SCREENSHOT, maintype="image", subtype="png",
                           filename="mailbox-usage.png")
    return message


def _files(raw: bytes) -> dict[str, bytes]:
    return {part.get_filename(): part.get_content()
            for part in parsed(raw).iter_attachments()}


def _new_notifications(desk: Desk, before: dict[str, int]) -> dict[str, bytes]:
    """Each technician's one new mail since ``before`` (their INBOX counts)."""
    return {tech: desk.inbox(tech, before[tech] + 1)[-1] for tech in (TECH1, TECH2)}


def _counts(desk: Desk) -> dict[str, int]:
    return {tech: len(desk.inbox(tech)) for tech in (TECH1, TECH2)}


def test_a_new_requests_pdf_is_attached_to_every_staff_notification(desk):
    before = _counts(desk)
    desk.send(_with_files(
        mailclients.new_message(JANE, "Printer prints garbage",
                                "Room 12's printer prints this instead of my worksheet."),
        ("worksheet.pdf", "application/pdf", PDF)))
    for tech, note in _new_notifications(desk, before).items():
        assert "Printer prints garbage" in parsed(note)["Subject"], tech
        assert _files(note) == {"worksheet.pdf": PDF}, tech
        assert f"worksheet.pdf (application/pdf, {len(PDF)} bytes)" in plain(note)
    # The file is kept on the ticket too, as before.
    ticket = desk.tickets()[-1]
    [kept] = desk.ticket(ticket["id"])["messages"][0]["attachments"]
    assert (kept["filename"], kept["size"]) == ("worksheet.pdf", len(PDF))


def test_a_forwarded_message_is_shown_in_the_notification_with_its_files(desk):
    before = _counts(desk)
    desk.send(_with_files(
        mailclients.new_message(JANE, "Is this mail real?", "I got this today. Is it real?"),
        _phishing()))
    notes = _new_notifications(desk, before)
    for tech, note in notes.items():
        text = plain(note)
        block = text[text.index("Attached message"):text.index("End of attached message")]
        for line in ("From: IT Support Team <support@quota-check.example>",
                     "To: teacher1@school.test",
                     "Date: Fri 20 Nov 2026 09:15 CST",  # the desk's zone, America/Chicago
                     "Subject: Your mailbox is 98% full",
                     "your mailbox is almost full. Open the attached form",
                     f"mailbox-usage.png (image/png, {len(SCREENSHOT)} bytes)"):
            assert line in block, (tech, line)
        assert "I got this today. Is it real?" in text[:text.index("Attached message")]
        html = parsed(note).get_body(("html",)).get_content()
        assert "Attached message" in html and "support@quota-check.example" in html
        files = _files(note)
        # The forward itself, as a .eml that opens as the original, then its file.
        assert list(files) == ["Your mailbox is 98% full.eml", "mailbox-usage.png"], tech
        assert files["mailbox-usage.png"] == SCREENSHOT
        forwarded = parsed(files["Your mailbox is 98% full.eml"])
        assert forwarded["Message-ID"] == "<quota-1@quota-check.example>"
        [inner] = list(forwarded.iter_attachments())
        assert inner.get_content() == SCREENSHOT
    # The ticket keeps the .eml itself, the same bytes as staff got.
    number = desk.tickets()[-1]["id"]
    [kept] = desk.ticket(number)["messages"][0]["attachments"]
    assert (kept["filename"], kept["content_type"], kept["size"]) == (
        "Your mailbox is 98% full.eml", "message/rfc822",
        len(files["Your mailbox is 98% full.eml"]))


def test_a_teacher_reply_with_a_eml_file_shows_the_forward_too(desk):
    """The reply path, with the .eml sent as a plain file (application/octet-stream),
    as some webmail clients attach a saved message."""
    ack, _ = desk.open_ticket(subject="Strange invoice mail")
    opened = len(desk.tickets())
    before = _counts(desk)
    saved = _phishing().as_bytes(policy=email.policy.SMTP)
    desk.send(_with_files(mailclients.gmail(ack, JANE, "Here is the mail I meant."),
                          ("invoice-mail.eml", "application/octet-stream", saved)))
    tickets = desk.tickets()
    number = tickets[-1]["id"]
    for tech, note in _new_notifications(desk, before).items():
        assert "replied" in parsed(note)["Subject"], tech
        text = plain(note)
        assert "Here is the mail I meant." in text
        block = text[text.index("Attached message: invoice-mail.eml"):]
        assert "Subject: Your mailbox is 98% full" in block and "Date: Fri 20 Nov" in block
        files = _files(note)
        assert files == {"invoice-mail.eml": saved, "mailbox-usage.png": SCREENSHOT}, tech
    assert len(tickets) == opened  # on the ticket: a reply, not a new request
    assert json.loads(mailhelp(desk.config, "tickets", "show", str(number), "--json")
                      .stdout)["status"] == "open"


def test_the_commands_listed_to_staff_include_take(desk):
    before = _counts(desk)
    desk.send(mailclients.new_message(JANE, "Smartboard pen", "The pen does not write."))
    note = _new_notifications(desk, before)[TECH1]
    assert "#assign ADDRESS #take" in plain(note)
    assert "#take" in parsed(note).get_body(("html",)).get_content()
