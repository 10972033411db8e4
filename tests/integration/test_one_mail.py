"""Fewer, better-addressed mail (issue 18), over real Dovecot and SMTP, driven by mail
and the CLI: with ``[survey] delay = "0s"`` the survey is part of the resolved notice
(one mail), ``[survey] thank_you = false`` sends nothing after a rating, each mail
greets the person it is addressed to, a staff member's mail of one ticket makes one
References chain, and an out-of-office on no ticket still counts for ``away_after``.

One desk for the module (one `mailhelp init`); each test counts the mail it adds. The
last test renders the one-mail resolution in headless Chromium."""

from __future__ import annotations

import email
import email.policy
import email.utils
import os
import struct
import subprocess
import zlib
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from tests import mailclients
from tests.helpers import mailhelp, outbox, write_config
from tests.integration.test_conversations import BOB, HELP, JANE, TECH1, TECH2, Desk, parsed, plain

pytestmark = pytest.mark.integration

IN_CI = os.environ.get("CI") == "true"
CHROMIUM = Path("/usr/bin/chromium")
TEACHER, COLLEAGUE, TECH1_ADDRESS = ("teacher1@school.test", "teacher2@school.test",
                                     "tech1@school.test")
LOGO_RGB = (255, 102, 0)  # a colour nothing else in the mail has: seen on screen, it is the logo
BRAND = (0x1A, 0x5F, 0xB4)  # the default brand colour of the rating buttons
SURVEY_SITE = "https://help.school.test/survey"  # signed one-click links (mailhelp serve)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def desk(tmp_path_factory, module_database_url, mail_servers_session) -> Desk:
    mail_servers_session.clear_mailboxes()
    directory = tmp_path_factory.mktemp("desk")
    logo = directory / "logo.png"
    logo.write_bytes(png(180, 48, LOGO_RGB))
    config = write_config(directory, module_database_url, mail_servers_session, extra=(
        f'[helpdesk]\nlogo = "{logo}"\n'
        '[survey]\ndelay = "0s"\nthank_you = false\n'
        f'base_url = "{SURVEY_SITE}"\nsecret = "correct horse battery staple"\n'))
    done = mailhelp(config, "init")
    assert done.returncode == 0, done.stderr.decode()
    return Desk(mail_servers_session, config, module_database_url)


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()


def _run(desk: Desk, *args: str) -> None:
    done = mailhelp(desk.config, *args)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def open_ticket(desk: Desk, sender: str, subject: str, text: str,
                cc: str = "") -> tuple[bytes, bytes]:
    """Desk.open_ticket with words of its own: the same words again from one sender
    within the hour look like a loop, and its acknowledgement would be held."""
    address = email.utils.parseaddr(sender)[1]
    acks_before, notes_before = len(desk.inbox(address)), len(desk.inbox(TECH1_ADDRESS))
    desk.send(mailclients.new_message(sender, subject, text, cc=cc))
    return (desk.inbox(address, acks_before + 1)[-1],
            desk.inbox(TECH1_ADDRESS, notes_before + 1)[-1])


# The one-mail resolution -------------------------------------------------------------

def test_a_one_visit_fix_is_three_mails_and_a_rating_sends_nothing_more(desk):
    """Request, answer with #resolve: the teacher's INBOX holds the acknowledgement, the
    answer and one resolved mail with the survey in it; answering it with "5" records
    the rating, and with thank_you = false nothing more is sent."""
    ack, note = open_ticket(desk, JANE, "Projector in room 12",
                            "The projector shows 'No signal'.\nJane", cc=BOB)
    desk.send(mailclients.gmail(note, TECH1, "#resolve\nThe cable was loose; it works now."))
    acked, answer, resolved = (parsed(m) for m in desk.inbox(TEACHER, 3))
    assert acked["Message-ID"] == parsed(ack)["Message-ID"]
    assert plain(answer.as_bytes()).startswith("The cable was loose; it works now.")
    assert resolved["Subject"] == "[#1] Resolved: Projector in room 12"
    text = plain(resolved.as_bytes())
    assert text.startswith('Hello Jane,\n\nTicket #1 ("Projector in room 12") is resolved.')
    assert "How did we do?" in text and "5 - Excellent: mailto:help+survey-" in text
    assert html_of(resolved).count('href="mailto:help+survey-') == 5
    assert html_of(resolved).count(f'href="{SURVEY_SITE}/') == 5
    assert f"5 - Excellent: {SURVEY_SITE}/" in text
    # A plain reply goes to the help address: "still broken" reopens (next test).
    assert resolved["Reply-To"] is None
    kinds = [row["kind"] for row in outbox(desk.database_url, to=TEACHER)]
    assert kinds == ["ack", "relay", "survey"]
    ticket = desk.ticket(1)
    assert ticket["status"] == "resolved" and ticket["survey"]["sent_at"] is not None
    assert ticket["survey"]["rating"] is None
    # The survey job (due at once) found the survey sent and sent nothing.
    _run(desk, "run", "--once")
    assert len(desk.inbox(TEACHER, 3)) == 3
    # The colleague: the answer, and a resolved notice of their own, without the survey.
    relay, theirs = (parsed(m) for m in desk.inbox(COLLEAGUE, 2))
    assert relay["Message-ID"] == answer["Message-ID"]
    assert theirs["To"] == "Bob <teacher2@school.test>"
    colleague_text = plain(theirs.as_bytes())
    assert colleague_text.startswith("Hello Bob,\n") and "Jane" not in colleague_text
    assert "Hello Bob," in html_of(theirs) and "Jane" not in html_of(theirs)
    assert "How did we do?" not in colleague_text and "survey-" not in colleague_text
    # "5", answered from the mail client: recorded, and no thank-you.
    sent_before = outbox(desk.database_url)
    desk.send(mailclients.gmail(desk.inbox(TEACHER)[-1], JANE, "5"))
    ticket = desk.ticket(1)
    assert ticket["survey"]["rating"] == 5 and ticket["status"] == "resolved"
    assert outbox(desk.database_url) == sent_before
    assert len(desk.inbox(TEACHER, 3)) == 3
    assert ticket["messages"][-1]["kind"] == "survey_response"


def test_a_reply_that_rates_nothing_reopens_the_ticket(desk):
    """"Still broken" in answer to the resolved mail that carried the survey is a reply:
    it reopens the ticket and reaches staff; it is no comment on the survey."""
    before = len(desk.inbox(COLLEAGUE))
    open_ticket(desk, BOB, "Smartboard pen missing", "The pen of the smartboard in 12 is gone.")
    desk.send(mailclients.gmail(desk.last(TECH1_ADDRESS), TECH1, "#resolve\nNew pen on your desk."))
    resolved = desk.inbox(COLLEAGUE, before + 3)[-1]
    assert b"How did we do?" in resolved and b"Hello Bob," in resolved
    notes_before = len(desk.inbox(TECH1_ADDRESS))
    desk.send(mailclients.gmail(resolved, BOB, "It is gone again, sorry."))
    ticket = desk.ticket(2)
    assert ticket["status"] == "open" and ticket["survey"]["rating"] is None
    assert ticket["survey"]["comment"] == ""
    assert "It is gone again" in plain(desk.inbox(TECH1_ADDRESS, notes_before + 1)[-1])


def test_a_requester_surveyed_lately_gets_the_plain_resolved_notice(desk):
    """Within [survey] min_interval the resolved notice carries no survey."""
    before = len(desk.inbox(TEACHER))
    open_ticket(desk, JANE, "Printer in the library", "It prints blank pages.")
    desk.send(mailclients.gmail(desk.last(TECH1_ADDRESS), TECH1, "#resolve"))
    resolved = parsed(desk.inbox(TEACHER, before + 2)[-1])
    assert resolved["Subject"] == "[#3] Resolved: Printer in the library"
    assert "How did we do?" not in plain(resolved.as_bytes())
    assert outbox(desk.database_url, to=TEACHER)[-1]["kind"] == "status"
    assert desk.ticket(3)["survey"] is None


# One thread per staff member ----------------------------------------------------------

def _chain(messages: list[EmailMessage]) -> None:
    """Each mail answers the one before it, with its References and its Message-ID."""
    root = messages[0]["In-Reply-To"]
    assert messages[0]["References"].split() == [root]
    for earlier, later in zip(messages, messages[1:], strict=False):
        assert later["In-Reply-To"] == earlier["Message-ID"]
        assert later["References"].split() == [*earlier["References"].split(),
                                               earlier["Message-ID"]]


def test_a_staff_members_mail_of_one_ticket_is_one_references_chain(desk):
    """tech1: the new-ticket notification, a reply notification, tech2's note, another
    reply notification, read from tech1's INBOX: one chain under the request."""
    before = {tech: len(desk.inbox(tech)) for tech in (TECH1_ADDRESS, TECH2)}
    ack, _ = open_ticket(desk, JANE, "Laptop cart 3 will not charge",
                         "None of the laptops in cart 3 charge overnight.")
    request_id = parsed(ack)["In-Reply-To"]
    desk.send(mailclients.gmail(ack, JANE, "Only the top row of laptops is dark."))
    desk.send(mailclients.gmail(desk.last(TECH2), TECH2,
                                "#note\nThe breaker in that cart trips, I think."))
    desk.send(mailclients.apple_mail(ack, JANE, "Now the bottom row too."))
    theirs = [parsed(m) for m in desk.inbox(TECH1_ADDRESS, before[TECH1_ADDRESS] + 4)
              [before[TECH1_ADDRESS]:]]
    assert theirs[0]["In-Reply-To"] == request_id
    assert "The breaker" in plain(theirs[2].as_bytes())
    _chain(theirs)
    # tech2's chain is their own (the note they wrote is in none of it).
    tech2 = [parsed(m) for m in desk.inbox(TECH2, before[TECH2] + 3)[before[TECH2]:]]
    _chain(tech2)
    assert not {m["Message-ID"] for m in theirs} & set(tech2[-1]["References"].split())


# Out of office on no ticket -----------------------------------------------------------

def _out_of_office(sender: str, subject: str) -> bytes:
    reply = EmailMessage()
    reply["From"] = sender
    reply["To"] = HELP
    reply["Subject"] = f"Automatic reply: {subject}"
    reply["Message-ID"] = make_msgid(domain="school.test")
    reply["In-Reply-To"] = make_msgid(domain="school.test")  # the desk's queue mail, say
    reply["Auto-Submitted"] = "auto-replied"
    reply.set_content("I am away until Monday and will not read mail.")
    return reply.as_bytes(policy=email.policy.SMTP)


def test_an_out_of_office_on_no_ticket_still_sends_replies_to_everyone(desk):
    """tech1 took the ticket; their out-of-office answers a mail of no ticket (the
    morning queue): the teacher's next reply reaches every technician."""
    ack, note = open_ticket(desk, JANE, "Document camera in 7b",
                            "The document camera in 7b is dead.")
    desk.send(mailclients.gmail(note, TECH1, "#take"))
    assert desk.ticket(5)["assignee"] == TECH1_ADDRESS
    tech2_before = len(desk.inbox(TECH2))
    desk.send(_out_of_office(TECH1, "Your morning queue: 2 tickets"))
    assert len(desk.tickets()) == 5  # it made no ticket, and is kept on none
    desk.send(mailclients.gmail(ack, JANE, "It shows a blue screen now."))
    assert "blue screen" in plain(desk.inbox(TECH2, tech2_before + 1)[-1])


# Looked at in a browser ---------------------------------------------------------------

def _pixels(path: Path) -> tuple[int, int, set[tuple[int, int, int]]]:
    """(width, height, the colours) of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert depth == 8 and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    position, idat = 8, b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind == b"IDAT":
            idat += data[position + 8:position + 8 + length]
        position += 12 + length
    raw, stride, colours, previous = zlib.decompress(idat), width * channels, set(), None
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        above = previous or bytearray(stride)
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up, corner = above[x], above[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc
                                      else corner)) & 255
        colours.update(tuple(line[x:x + 3]) for x in range(0, stride, channels))
        previous = line
    return width, height, colours


def test_the_resolved_mail_with_its_survey_renders_in_chromium(desk, tmp_path):
    """The mail as delivered (the first test's), its HTML part with the inline logo
    resolved, rendered by headless Chromium at a phone's width and a desktop's: the
    PNGs are kept in MAILHELP_SCREENSHOTS (default: the test's tmp dir) to be looked at."""
    if not CHROMIUM.exists():
        reason = "chromium missing: apt-get install -y chromium (the mail rendering test)"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    [resolved] = [parsed(m) for m in desk.inbox(TEACHER) if b"How did we do?" in m]
    logo = next(part for part in resolved.walk() if part.get_content_type() == "image/png")
    cid = logo["Content-ID"].strip("<>")
    (tmp_path / "logo.png").write_bytes(logo.get_content())
    page = html_of(resolved)
    assert f'src="cid:{cid}"' in page
    (tmp_path / "mail.html").write_text(page.replace(f"cid:{cid}", "logo.png"))
    shots = Path(os.environ.get("MAILHELP_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    for width, height in ((390, 1100), (800, 900)):
        shot = shots / f"resolved-with-survey-{width}.png"
        done = subprocess.run(
            [str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--no-proxy-server", f"--user-data-dir={tmp_path / 'chromium'}",
             f"--window-size={width},{height}", f"--screenshot={shot}",
             (tmp_path / "mail.html").as_uri()],
            capture_output=True, timeout=60)
        assert done.returncode == 0 and shot.exists(), done.stderr.decode()[-2000:]
        seen_width, seen_height, colours = _pixels(shot)
        assert (seen_width, seen_height) == (width, height)
        # Not blank: text, the logo (from its cid: part) and the buttons' colour are there.
        assert len(colours) > 50
        assert LOGO_RGB in colours and BRAND in colours
