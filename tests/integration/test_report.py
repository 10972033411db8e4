"""The director's weekly digest over real Dovecot and SMTP (issue 19): at ``[report]
digest_schedule`` the director's INBOX gets the HTML report (with a text part, the logo
inline) of the week before, once per week however often the daemon runs; ``report
--mail`` queues one more at once.

One desk and one pair of servers of its own for the module (the shared ones have no
director's mailbox): the steps follow one another through two weeks.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from mailhelp.db.models import PeriodicMail
from mailhelp.db.session import Database
from mailhelp.localmail import default_users
from mailhelp.states import OutboxStatus
from tests.helpers import mailhelp, outbox, write_config
from tests.servers import own_servers
from tests.unit.test_report import one_pixel_png

pytestmark = pytest.mark.integration

HELP, DIRECTOR = "help@school.test", "director@school.test"
TEACHER1, TEACHER2, TECH1 = "teacher1@school.test", "teacher2@school.test", "tech1@school.test"
# Chicago is UTC-6 in December.
FRIDAY = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # Friday 4 December, 09:00 local
MONDAY_7 = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)  # Monday 07:00 local: the digest
EXTRA = """
[helpdesk]
timezone = "America/Chicago"
logo = "{logo}"
[calendar]
hours = "Mon-Fri 07:30-16:00"
[report]
digest_to = ["director@school.test"]
digest_schedule = "Mon 07:00"
"""


@pytest.fixture(scope="module")
def servers():
    with own_servers({**default_users(), DIRECTOR: "director-pw"}, "director's digest") as mail:
        yield mail


@pytest.fixture(scope="module")
def desk(servers, tmp_path_factory):
    from tests.conftest import database_at

    tmp_path = tmp_path_factory.mktemp("digest")
    with database_at(tmp_path) as url:
        (tmp_path / "logo.png").write_bytes(one_pixel_png())
        config = write_config(tmp_path, url, servers,
                              extra=EXTRA.format(logo=tmp_path / "logo.png"))
        assert mailhelp(config, "init").returncode == 0
        yield config, url


def submit(servers, sender: str, subject: str, body: str) -> None:
    made = EmailMessage()
    made["From"], made["To"], made["Subject"] = sender, HELP, subject
    made["Message-ID"] = make_msgid(domain="school.test")
    made.set_content(body)
    with smtplib.SMTP(servers.smtp_host, servers.smtp_port, timeout=10) as smtp:
        smtp.send_message(made)


def run(config, now: datetime) -> None:
    done = mailhelp(config, "run", "--once", "--now", now.isoformat())
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def digests(servers, url) -> list[email.message.EmailMessage]:
    """The digests in the director's INBOX, checked against the outbox: every digest
    row sent, and as many mails as rows."""
    rows = [r for r in outbox(url, DIRECTOR) if r["kind"] == "digest"]
    assert all(r["status"] == OutboxStatus.SENT for r in rows), rows
    found = [email.message_from_bytes(raw, policy=email.policy.default)
             for raw in servers.messages(DIRECTOR)]
    assert len(found) == len(rows)
    return found


def periodic(url) -> list[tuple[str, datetime]]:
    db = Database(url)
    try:
        with db.sessions() as session:
            return [(r.kind, r.due_at) for r in session.scalars(
                select(PeriodicMail).order_by(PeriodicMail.id))]
    finally:
        db.engine.dispose()


def test_the_digest_reaches_the_directors_inbox_once_a_week(servers, desk):
    config, url = desk
    submit(servers, TEACHER1, "Projector in room 12", "It shows 'No signal'.")
    submit(servers, TEACHER2, "Printer <jam> in the office", "Paper stuck in tray 2.")
    run(config, FRIDAY)
    run(config, FRIDAY + timedelta(hours=1))  # Friday: no digest
    assert digests(servers, url) == []

    run(config, MONDAY_7)
    [mail] = digests(servers, url)
    assert mail["Subject"] == ("[Springfield SD Help Desk] Help desk report, "
                               "2026-11-30 to 2026-12-06")
    assert mail["To"] == DIRECTOR and mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_body(("plain",)).get_content()
    assert "Help desk report, 2026-11-30 to 2026-12-06 (America/Chicago)" in text
    assert "tickets created       2" in text
    html = mail.get_body(("html",)).get_content()
    # Charts as table cells (Gmail and Outlook drop SVG from mail), the logo by cid:.
    assert "<svg" not in html and html.count('role="img"') >= 3
    assert 'src="cid:logo@mailhelp"' in html
    # Both tickets are still open: the oldest open, subjects escaped.
    assert "Printer &lt;jam&gt; in the office" in html and "<jam>" not in html
    [logo] = [p for p in mail.walk() if p.get_content_type() == "image/png"]
    assert logo["Content-ID"] == "<logo@mailhelp>"

    # The daemon runs again that morning, that afternoon, on Tuesday: nothing more.
    for later in (timedelta(minutes=1), timedelta(hours=8), timedelta(days=1)):
        run(config, MONDAY_7 + later)
    assert len(digests(servers, url)) == 1
    assert periodic(url) == [("digest", MONDAY_7)]

    # The next Monday, the next week's (at 07:20: the 07:00 run was missed).
    run(config, MONDAY_7 + timedelta(days=7, minutes=20))
    run(config, MONDAY_7 + timedelta(days=7, minutes=40))
    mails = digests(servers, url)
    assert [m["Subject"][-24:] for m in mails] == ["2026-11-30 to 2026-12-06",
                                                   "2026-12-07 to 2026-12-13"]
    assert periodic(url) == [("digest", MONDAY_7), ("digest", MONDAY_7 + timedelta(days=7))]


def test_report_mail_queues_one_now(servers, desk):
    config, url = desk
    before = len(digests(servers, url))
    for _ in range(2):  # explicit: each one is sent
        done = mailhelp(config, "report", "--mail", "--from", "2026-12-01", "--to",
                        "2026-12-04")
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode().strip() == (
            "queued the report of 2026-12-01 to 2026-12-04 to 1 address(es)")
    run(config, MONDAY_7 + timedelta(days=7, hours=2))
    mails = digests(servers, url)
    assert len(mails) == before + 2
    assert mails[-1]["Subject"].endswith("Help desk report, 2026-12-01 to 2026-12-04")
    assert [k for k, _ in periodic(url)].count("digest_now") == 2
    assert [k for k, _ in periodic(url)].count("digest") == 2  # the schedule's, untouched
