"""``mailhelp demo``: the whole help desk on this machine, with no setup.

It starts a local IMAP server (Dovecot when installed, else pymap) and an SMTP
server on loopback ports, sends a few teachers' emails to the help address, runs
the real daemon over IMAP and SMTP, and shows the tickets and the mail sent.
"""

from __future__ import annotations

import email
import email.policy
import logging
import smtplib
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

HELP = "help@school.test"
STAFF = ("tech1@school.test", "tech2@school.test")

SAMPLES = [
    ("Jane Teacher <teacher1@school.test>", "Projector in room 12 shows no signal",
     "Hi,\n\nthe projector in room 12 says \"No signal\" since this morning. I tried "
     "another HDMI cable and restarted the laptop.\nI teach there again at 10:40.\n\n"
     "Thanks,\nJane", ["Bob Miller <teacher2@school.test>"]),
    ("Bob Miller <teacher2@school.test>", "Can't log in to the gradebook",
     "Hello,\n\nsince the password change yesterday the gradebook says my account is "
     "locked. Report cards are due Friday.\n\nBob", []),
    ("Jane Teacher <teacher1@school.test>", "Chromebook cart 3: two devices won't charge",
     "Two Chromebooks in cart 3 (tags CB-3-07 and CB-3-12) don't charge, even in other "
     "slots.\n\nJane", []),
    ("Jane Teacher <teacher1@school.test>", "Automatic reply: out of office",
     "I am on a field trip until Monday.", []),
]


def run_demo(keep: bool = False, imap_server: str = "auto") -> int:
    from .localmail import LocalMail

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="mailhelp-demo-"))
    say(f"mailhelp demo — working in {workdir}")
    say("Starting local mail servers on 127.0.0.1 ...")
    servers = LocalMail.start(kind=imap_server)
    try:
        imap_name = "Dovecot" if servers.kind == "dovecot" else "pymap (pure-Python IMAP)"
        say(f"  IMAP  {imap_name} on port {servers.imap_port}, "
            f"users help@, teacher1@, teacher2@, tech1@, tech2@ school.test")
        say(f"  SMTP  on port {servers.smtp_port}, delivering into those mailboxes")
        config_path = write_demo_config(workdir, servers)
        return walk_through(config_path, servers, keep)
    finally:
        servers.stop()


def walk_through(config_path: Path, servers, keep: bool) -> int:
    from .app import App
    from .service.daemon import run_daemon

    config = _prepare(config_path)
    say(f"\nDatabase ready (SQLite, {config.database.url.split('///')[1]}); "
        "starting the daemon (IMAP IDLE) ...")
    app = App.create(config)
    stop = threading.Event()
    daemon = threading.Thread(target=run_daemon, args=(app, stop), daemon=True)
    daemon.start()
    time.sleep(0.5)

    say(f"\nTeachers write to {HELP}:")
    with smtplib.SMTP(servers.smtp_host, servers.smtp_port, timeout=10) as smtp:
        for sender, subject, body, cc in SAMPLES:
            smtp.send_message(sample_message(sender, subject, body, cc))
            say(f"  {sender:<38} {subject}")
    expected_mail = 3 * 3  # three real requests: an ack and two notifications each
    started = time.monotonic()
    while time.monotonic() - started < 30:
        if count_sent(app) >= expected_mail:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    stop.set()
    daemon.join(timeout=30)
    say(f"\nThe daemon handled them in {elapsed:.1f} s. Tickets "
        f"(mailhelp --config {config_path} tickets list):")
    show_tickets(app)
    show_mailboxes(servers)
    say("\nThe out-of-office reply got no ticket and no answer: no mail loop.")
    if keep:
        keep_running(servers)
    say(f"""
To run mailhelp on your own help mailbox (in the venv: .venv/bin/mailhelp):
  cp config.example.toml mailhelp.toml   # fill in [helpdesk], [imap], [smtp], [staff],
                                         # and [authentication] (README: Proving who wrote)
  mailhelp init                          # database and IMAP folders
  mailhelp check                         # tries every connection
  mailhelp run                           # the daemon (deploy/mailhelp.service for systemd)
The demo's database stays in {config_path.parent} for a look around.""")
    return 0


def _prepare(config_path: Path):
    """The demo's config, its database at the newest schema, and the IMAP folders."""
    from . import config as config_module
    from .db.migrate import upgrade
    from .db.session import Database
    from .service.imap import ImapMailbox

    config = config_module.load(config_path)
    upgrade(Database(config.database.url))
    mailbox = ImapMailbox(config.imap)
    mailbox.connect()
    mailbox.ensure_folders()
    mailbox.close()
    return config


def show_mailboxes(servers) -> None:
    say("\nMail that arrived in the mailboxes:")
    for user in ("teacher1@school.test", "teacher2@school.test", *STAFF):
        for raw in servers.messages(user):
            mail = email.message_from_bytes(raw, policy=email.policy.default)
            say(f"  {user:<22} <- {mail['Subject']}")
    acks = servers.messages("teacher1@school.test")
    if acks:
        say("\nThe first acknowledgement, as Jane sees it:\n")
        first = email.message_from_bytes(acks[0], policy=email.policy.default)
        for header in ("From", "To", "Subject", "In-Reply-To", "Auto-Submitted"):
            say(f"    {header}: {first[header]}")
        say("")
        for line in first.get_body(("plain",)).get_content().splitlines():
            say(f"    {line}")


def keep_running(servers) -> None:
    say(f"\nServers keep running (Ctrl-C to stop): IMAP {servers.imap_host}:"
        f"{servers.imap_port}, SMTP {servers.smtp_host}:{servers.smtp_port}, "
        f"password for every user: {next(iter(servers.users.values()))}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def write_demo_config(workdir: Path, servers) -> Path:
    path = workdir / "mailhelp.toml"
    path.write_text(f"""\
[helpdesk]
name = "Springfield SD Help Desk"
address = "{HELP}"

[database]
url = "sqlite:///{workdir / 'mailhelp.db'}"

[imap]
host = "{servers.imap_host}"
port = {servers.imap_port}
security = "none"
username = "{HELP}"
password = "{servers.users[HELP]}"

[smtp]
host = "{servers.smtp_host}"
port = {servers.smtp_port}
security = "none"

[staff]
addresses = {list(STAFF)!r}

[storage]
attachments_dir = "{workdir / 'attachments'}"
""".replace("'", '"'))
    return path


def sample_message(sender: str, subject: str, body: str, cc: list[str]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = f"Springfield SD Help Desk <{HELP}>"
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = format_datetime(email.utils.localtime())
    message["Message-ID"] = make_msgid(domain="school.test")
    if subject.startswith("Automatic reply"):
        message["Auto-Submitted"] = "auto-replied"
    message.set_content(body)
    return message


def count_sent(app) -> int:
    from sqlalchemy import func, select

    from .db.models import Outbox
    from .states import OutboxStatus

    with app.db.sessions() as session:
        return session.scalar(select(func.count()).select_from(Outbox)
                              .where(Outbox.status == OutboxStatus.SENT))


def show_tickets(app) -> None:
    from .web.views import ticket_line, ticket_query

    with app.db.sessions() as session:
        for ticket in session.scalars(ticket_query()):
            say("  " + ticket_line(ticket))


def say(text: str) -> None:
    print(text, file=sys.stdout, flush=True)
