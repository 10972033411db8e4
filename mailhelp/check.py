"""``mailhelp check``: try every part of the setup, one line per check."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .config import Config
from .errors import MailhelpError


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    warning: bool = False

    def line(self) -> str:
        mark = "ok  " if self.ok and not self.warning else ("warn" if self.ok else "FAIL")
        return f"{mark}  {self.name:<10} {self.detail}"


def run_checks(config: Config) -> Iterator[CheckResult]:
    yield CheckResult("config", True, f"{config.path} is valid")
    checks: list[tuple[str, Callable[[Config], str]]] = [
        ("database", _database), ("templates", _templates)]
    if any(s is not None and s.auth == "oauth2" for s in (config.imap, config.smtp)):
        checks.append(("oauth2", _oauth2))  # the token, and until when it is good
    if config.imap is not None:
        checks.append(("imap", _imap))
    else:
        yield CheckResult("imap", True, "no [imap] section: mail only arrives by 'ingest'", True)
    yield _storage(config)
    if config.directory.csv:
        yield _directory(config)
    if config.ingest.socket:
        yield _ingest(config)
    elif config.imap is None:
        yield CheckResult("ingest", True, "no [ingest] socket: each 'ingest' loads the "
                          "database layer and works alone (for an MTA pipe, set it and "
                          "keep 'mailhelp run' going)", True)
    if config.smtp is not None:
        checks.append(("smtp", _smtp))
    else:
        yield CheckResult("smtp", False, "no [smtp] section: no mail can be sent")
    if not config.staff.addresses and not config.staff.domains:
        yield CheckResult("staff", True, "no staff addresses: nobody is notified", True)
    yield _authentication(config)
    for name, check in checks:
        try:
            yield CheckResult(name, True, check(config))
        except MailhelpError as error:
            yield CheckResult(name, False, str(error))
        except Exception as error:  # report the unexpected as a failed check, not a crash
            yield CheckResult(name, False, f"{type(error).__name__}: {error}")


def _directory(config: Config) -> CheckResult:
    """[directory] csv: how many people it gives, and its bad rows (the first few)."""
    from .directory import DirectoryError, path_of, read

    path = path_of(config)
    try:
        reading = read(path)
    except DirectoryError as error:
        return CheckResult("directory", False, str(error))
    detail = f"{path}: {len(reading.people)} people from {reading.rows} rows"
    if not reading.problems:
        return CheckResult("directory", True, detail)
    shown = "; ".join(reading.problems[:3])
    more = f"; and {len(reading.problems) - 3} more" if len(reading.problems) > 3 else ""
    return CheckResult("directory", True, f"{detail}; {len(reading.problems)} skipped or "
                       f"doubtful: {shown}{more}", warning=True)


def _authentication(config: Config) -> CheckResult:
    """Whether staff are proven or merely claimed."""
    auth = config.authentication
    if auth.unauthenticated_staff == "trust":
        return CheckResult("auth", False, 'authentication.unauthenticated_staff = "trust": '
                           "anyone who writes a staff address into From: acts as staff "
                           "(runs commands, writes to teachers); name your receiving server "
                           "in trusted_authserv_ids and use \"note\"")
    if not auth.trusted_authserv_ids:
        return CheckResult("auth", True, "no [authentication] trusted_authserv_ids: staff "
                           "answers cannot be verified and are kept as internal notes, not "
                           "relayed (name your receiving server, e.g. \"mx.google.com\")", True)
    return CheckResult("auth", True, "staff mail is verified by the Authentication-Results of "
                       + ", ".join(auth.trusted_authserv_ids))


def _ingest(config: Config) -> CheckResult:
    """Whether a daemon takes the mail an MTA pipes in, from here (as this user)."""
    import os
    import socket

    path = config.ingest.socket
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return CheckResult("ingest", False, f"ingest.socket: folder {folder} does not exist "
                           "(the daemon cannot listen there)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(5)
    try:
        probe.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        return CheckResult("ingest", True, f"no daemon listens on {path}: each 'ingest' "
                           "processes its message itself until 'mailhelp run' starts", True)
    except OSError as error:
        return CheckResult("ingest", True, f"{path}: {error.strerror or error} for this user "
                           "(the MTA's pipe user needs access: [ingest] socket_mode)", True)
    else:
        from .service.handoff import listener_uid

        uid = listener_uid(probe, path)
    finally:
        probe.close()
    owner = os.stat(config.path).st_uid if os.path.exists(config.path) else None
    if uid not in {os.getuid(), 0, owner}:
        # ingest hands nothing to a stranger's socket (and so works alone): say why.
        return CheckResult("ingest", False, f"ingest.socket: {path} is served by user id "
                           f"{uid}, not by this user, root or the config file's owner: "
                           "ingest will not hand mail to it")
    return CheckResult("ingest", True, f"a daemon listens on {path} (user id {uid})")


def _database(config: Config) -> str:
    from .db.migrate import current_revision, head_revision
    from .db.session import Database

    db = Database(config.database.url)
    try:
        db.schema_ready()
        current, head = current_revision(db), head_revision(db)
    finally:
        db.dispose()
    where = f"{db.engine.url.render_as_string(hide_password=True)}"
    if current is None:
        raise MailhelpError(f"{where}: no schema yet; run 'mailhelp init'")
    if current != head:
        raise MailhelpError(f"{where}: schema {current} is older than {head}; "
                            "run 'mailhelp init'")
    return f"{where} (schema {current})"


def _storage(config: Config) -> CheckResult:
    """The attachments folder (and, on PostgreSQL, the senders' journal) can be written.

    A warning, not a failure: mail without attachments is processed and sent without it.
    """
    import os

    path = os.path.abspath(config.storage.attachments_dir)
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    journal = not config.database.url.startswith("sqlite")
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        return CheckResult("storage", True, f"storage.attachments_dir: {existing} is not a "
                           "folder this user can write to: attachments cannot be kept"
                           + (" and sent mail is marked in the database (slower)"
                              if journal else ""), True)
    what = "attachments and the journal of sent mail (outbox-sent)" if journal \
        else "attachments"
    made = "" if existing == path else " (made when first needed)"
    return CheckResult("storage", True, f"{path} takes {what}{made}")


def _oauth2(config: Config) -> str:
    from .oauth2.tokens import check_token

    return check_token(config)


def _imap(config: Config) -> str:
    from .service.imap import ImapMailbox, connection_errors

    imap = config.require_imap()
    mailbox = ImapMailbox(imap)
    where = f"{imap.username} at {imap.host}:{imap.port} ({imap.security})"
    try:
        status = mailbox.connect()
        missing = [f for f in imap.folders if not mailbox.client.folder_exists(f)]
        capabilities = [c for c in ("IDLE", "MOVE", "UIDPLUS")
                        if mailbox.client.has_capability(c)]
    except connection_errors() as error:
        raise MailhelpError(f"{where}: {str(error) or type(error).__name__}") from error
    finally:
        mailbox.close()
    if missing:
        raise MailhelpError(f"{where}: folder {missing[0]} missing; run 'mailhelp init'")
    waiting = f"{status.exists} waiting in {imap.folder}"
    return f"logged in as {where}, {waiting}, server has {' '.join(capabilities) or 'no IDLE'}"


def _smtp(config: Config) -> str:
    from .delivery.transport import DeliveryError, SmtpTransport

    smtp = config.require_smtp()
    transport = SmtpTransport(smtp)

    async def attempt() -> None:
        try:
            await transport.connect_or_raise()
        finally:
            await transport.close()

    try:
        asyncio.run(attempt())
    except DeliveryError as error:
        raise MailhelpError(str(error)) from error
    login = f"logged in as {smtp.username}" if smtp.username else "connected (no login)"
    return f"{login} at {smtp.host}:{smtp.port} ({smtp.security})"


def _templates(config: Config) -> str:
    from .delivery.templating import KINDS, render

    sample = {
        "helpdesk": {"name": config.helpdesk.name, "address": config.helpdesk.address},
        "tag": config.helpdesk.subject_tag.format(id=42),
        "ticket": {"id": 42, "subject": "Projector in room 12", "status": "new",
                   "priority": "normal", "linked_ticket": 41, "held": "dmarc=fail",
                   "school": "Lincoln Elementary", "room": "12", "category": "Printers"},
        "linked_tag": config.helpdesk.subject_tag.format(id=41),
        "event": "new",
        "staff": {"name": "Sam Tech", "address": "tech@example.org"},
        "error": "#asign tech@example.org: unknown command",
        "commands": ["#resolve  resolve; the requester is told"],
        "reason": "dmarc=fail",
        "domains": ["school.test"],
        "problem": "the template ack in /etc/mailhelp/templates fails",
        "detail": "template ack.txt.j2 line 2: 'ticket' is undefined", "key": "template:ack",
        "automatic": False,
        "pending_resolve_after": "4d",
        "token": "abcdefghijklmnopqrstuvwxyz",
        "ratings": [{"rating": 5, "label": "Excellent", "mailto": "mailto:help@example.org"}],
        "web_ratings": [{"rating": 5, "label": "Excellent", "url": "https://example.org/s/x"}],
        "rating": 5, "label": "Excellent", "comment": "Quick fix, thanks!",
        "requester": {"name": "Jane Teacher", "address": "teacher@example.org"},
        "recipient": {"name": "Jane", "address": "teacher@example.org"},
        "participants": ["colleague@example.org"],
        "merged_ticket": {"id": 43, "subject": "Projector 12 again"},
        "merged_tag": config.helpdesk.subject_tag.format(id=43),
        "message": {"subject": "Projector in room 12", "text": "It does not turn on.",
                    "from": "teacher@example.org", "from_name": "Jane Teacher",
                    "dropped": [{"filename": "video.mp4", "size": 31457280}],
                    "attachments": [{"filename": "photo.jpg", "content_type": "image/jpeg",
                                     "size": 1234}]},
    }
    from .delivery import branding
    from .desk.digest import sample as queue_sample

    # The morning queue's own variables (ticket lists with their mailto: actions).
    sample = queue_sample(sample["helpdesk"],
                          lambda n: config.helpdesk.subject_tag.format(id=n)) | sample
    from .reports.html import sample as report_sample

    sample = report_sample(sample["helpdesk"]) | sample  # the digest's report and charts
    brand = branding.brand(config)
    for kind in KINDS:
        render(kind, sample, config.templates.dir, brand)
    where = config.templates.dir or "bundled"
    logo = branding.logo(config)
    shown = f"; logo {config.helpdesk.logo} ({logo.subtype}, {len(logo.data) // 1024} KB, " \
        "inline)" if logo else ""
    return f"{len(KINDS)} mail templates render ({where}){shown}"
