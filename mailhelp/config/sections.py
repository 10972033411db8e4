"""The config file's schema: one frozen dataclass per section, and Config for the file.

A section's fields, their types and defaults are the schema, so adding a key is adding a
field (and a line in config.example.toml); reading.py turns TOML into these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from ..errors import ConfigError
from ..weekly import DateSpan, WeeklyAt, WeeklyHours
from .values import (
    INTERNAL,
    LOG_LEVELS,
    SECURITY_MODES,
    ByteSize,
    FileMode,
    Secret,
    choice,
)


@dataclass(frozen=True)
class HelpdeskConfig:
    """[helpdesk]: the help address and the name mail goes out under."""

    address: str
    name: str = "Help Desk"
    subject_tag: str = "#{id}"
    # The district's own mail domains: mail claiming one of them must be vouched for by
    # the receiving server ([authentication]) or it is held. Empty: anyone may write.
    requester_domains: tuple[str, ...] = ()
    # With requester_domains set, mail from anyone else (not staff): "reply" (one polite
    # answer a day, no ticket, the message to [imap] outsiders_folder), "ignore" (the
    # same without the answer) or "accept" (a ticket as from anyone).
    outsiders: str = field(default="reply", metadata=choice("reply", "ignore", "accept"))
    # Who hears of what needs a person: a template that fails, a sign-in that no longer
    # works. At most one mail a day for each problem; empty: the log only.
    admin: str = ""
    # Every mail's layout (templates/base.*.j2): the accent colour, a line under the
    # signature, and a logo: a local PNG or JPEG sent with each mail as an inline part
    # (cid:), never a remote image, which mail clients block.
    color: str = "#1a5fb4"
    footer: str = ""
    logo: str = ""
    # The desk's time zone (an IANA name such as "America/Chicago"): times in mail and in
    # the command line are shown in it, and [calendar] and schedules are read in it.
    timezone: str = field(default="UTC", metadata={"zone": True})

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class DatabaseConfig:
    """[database]: where tickets are kept (SQLite or PostgreSQL)."""

    url: str = "sqlite:///mailhelp.db"


@dataclass(frozen=True)
class ImapConfig:
    """[imap]: the help mailbox mailhelp reads, and the folders it files mail into."""

    host: str
    username: str
    port: int = 993
    security: str = field(default="tls", metadata=choice(*SECURITY_MODES))
    # "oauth2": SASL XOAUTH2 (OAUTHBEARER where only that is offered) with a token from
    # the [oauth2] section; "password": LOGIN with the password below.
    auth: str = field(default="password", metadata=choice("password", "oauth2"))
    password: Secret = field(default_factory=lambda: Secret("imap.password"))
    folder: str = "INBOX"
    processed_folder: str = "mailhelp/processed"
    failed_folder: str = "mailhelp/failed"
    spam_folder: str = "mailhelp/spam"
    outsiders_folder: str = "mailhelp/outsiders"
    ca_file: str = ""
    tls_verify: bool = True
    timeout: timedelta = timedelta(seconds=30)
    batch_size: int = 200
    # Servers without IDLE are polled this often.
    poll_interval: timedelta = timedelta(seconds=30)
    # IDLE is re-issued this often: well inside the 29 minutes of RFC 2177.
    idle_restart: timedelta = timedelta(minutes=9)
    # With auth = "oauth2": the whole file, for the token source (not a key).
    desk: Config | None = field(default=None, repr=False, compare=False, metadata=INTERNAL)

    @property
    def folders(self) -> tuple[str, ...]:
        """The folders mailhelp files mail into (created by ``mailhelp init``)."""
        return (self.processed_folder, self.failed_folder, self.spam_folder,
                self.outsiders_folder)


@dataclass(frozen=True)
class SmtpConfig:
    """[smtp]: the server mailhelp sends through, and how it retries."""

    host: str
    port: int = 587
    security: str = field(default="starttls", metadata=choice(*SECURITY_MODES))
    # "oauth2": AUTH XOAUTH2 with a token from [oauth2]; "password": AUTH with the
    # password below when a username is given; "none": never AUTH.
    auth: str = field(default="password", metadata=choice("password", "oauth2", "none"))
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret("smtp.password"))
    ca_file: str = ""
    tls_verify: bool = True
    timeout: timedelta = timedelta(seconds=30)
    # A temporary failure is retried with a growing delay, up to this many attempts.
    max_attempts: int = 12
    retry_delay: timedelta = timedelta(seconds=30)
    connections: int = 2
    # Each mail's envelope sender is a signed address of its own (help+bounce-...@), so
    # that a bounce is believed only when it returns mail we sent. false: the help
    # address itself (for a server that refuses other senders; bounces are then known
    # by the signed Message-ID they quote).
    verp: bool = True
    # With auth = "oauth2": the whole file, for the token source (not a key).
    desk: Config | None = field(default=None, repr=False, compare=False, metadata=INTERNAL)


@dataclass(frozen=True)
class OAuth2Config:
    """[oauth2]: where the access token for [imap] and [smtp] auth = "oauth2" comes from.

    One of: ``token_command``; Microsoft's client credentials (``client_secret``, no
    ``refresh_token_file``); a refresh token (``refresh_token_file``, from ``mailhelp
    oauth2 authorize``); a Google service account (``service_account_file``).
    """

    # A program that prints an access token (msmtp's and mutt's convention); run with
    # the shell, as written here, whenever a new token is needed.
    token_command: str = ""
    provider: str = field(default="", metadata=choice("microsoft", "google"))
    tenant: str = ""
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret("oauth2.client_secret"))
    # Google Workspace: a service account with domain-wide delegation, acting as the
    # mailbox user ([imap] username).
    service_account_file: str = ""
    # Delegated access: the refresh token (mode 0600); a rotated one is written back.
    refresh_token_file: str = ""
    # The token endpoint, where it is not the provider's (another provider; tests).
    token_url: str = ""
    # Empty: the provider's (https://outlook.office365.com/.default for client
    # credentials, https://mail.google.com/ for Google).
    scope: str = ""
    # Tokens are kept in memory until shortly before they expire; with a file (mode
    # 0600) also across processes (the daemon, its sender, run --once, check).
    cache_file: str = ""

    @property
    def method(self) -> str:
        """command | client_credentials | refresh_token | service_account"""
        if self.token_command:
            return "command"
        if self.service_account_file:
            return "service_account"
        if self.refresh_token_file:
            return "refresh_token"
        return "client_credentials"


@dataclass(frozen=True)
class IngestConfig:
    """[ingest]: how ``mailhelp ingest`` (an MTA pipe alias) reaches the running daemon."""

    # A Unix socket. With it, ``mailhelp run`` listens there and ``mailhelp ingest``
    # hands its messages to the daemon, which stores, processes and commits them before
    # it answers: the pipe's process then loads no database code and ends in a fraction
    # of the time. With no daemon listening, ingest processes the message itself.
    socket: str = ""
    # Who may hand mail in: the socket's permission bits (give the MTA's pipe user or
    # group access; anyone who may write here may put mail into the help desk).
    socket_mode: FileMode = FileMode(0o660)  # written "0660"


@dataclass(frozen=True)
class StaffConfig:
    """[staff]: who answers tickets, by address or by whole domain."""

    addresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    # Who gets a #note: every other staff address, or only the ticket's assignee.
    notes_to: str = field(default="all", metadata=choice("all", "assignee"))
    # Who gets a copy of a staff member's public answer besides the requester.
    copy_answers: str = field(default="none", metadata=choice("none", "assignee", "all"))
    # An assignee whose out-of-office reply came this recently is away: a requester's
    # reply then goes to every staff address.
    away_after: timedelta = timedelta(days=3)
    # When each technician gets the morning queue by mail ("Mon-Fri 07:00", desk time);
    # unset: never.
    queue_digest: WeeklyAt | None = None
    # Who hears of a ticket still new, with no staff answer, after [lifecycle]
    # escalate_after; empty: every staff address.
    leads: tuple[str, ...] = ()

    def is_staff(self, address: str) -> bool:
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        return address in self.addresses or domain in self.domains


@dataclass(frozen=True)
class SurveyConfig:
    """[survey]: the satisfaction question after a ticket is resolved."""

    enabled: bool = True
    delay: timedelta = timedelta(hours=1)
    # A requester is asked at most once in this long.
    min_interval: timedelta = timedelta(days=14)
    # Tickets resolved by the pending timeout get no survey unless this is true.
    after_auto_resolve: bool = False
    # Whether a rating gets a thank-you mail (with delay "0s" the survey is part of the
    # resolved notice, and a teacher may want no more mail after answering it).
    thank_you: bool = True
    # With a base URL (e.g. https://help.school.test/survey), the mail also carries
    # one-click links served by `mailhelp serve`; their signatures use this secret.
    base_url: str = ""
    secret: Secret = field(default_factory=lambda: Secret("survey.secret"))
    link_lifetime: timedelta = timedelta(days=30)
    # Where `mailhelp serve` listens (put a TLS reverse proxy in front of it).
    listen: str = "127.0.0.1:8025"


@dataclass(frozen=True)
class LifecycleConfig:
    """[lifecycle]: reminders, automatic resolution and closing."""

    auto_close_after: timedelta = timedelta(days=3)
    pending_reminder_after: timedelta = timedelta(days=3)
    pending_resolve_after: timedelta = timedelta(days=7)
    # A ticket still new after this long (business time, [calendar]) with no staff answer,
    # nobody assigned, is brought to [staff] leads, once. "0s": never (the new-ticket
    # notification already reaches every staff address at once).
    escalate_after: timedelta = timedelta(hours=4)


@dataclass(frozen=True)
class CalendarConfig:
    """[calendar]: when the desk is open; reminders, auto-resolve, escalation and the
    survey delay count only these hours (desk time). Unset: every hour counts."""

    hours: WeeklyHours | None = None
    # Days the desk is closed all day: "2027-01-18", or a span "2026-12-21..2027-01-01".
    holidays: tuple[DateSpan, ...] = ()


@dataclass(frozen=True)
class LimitsConfig:
    """[limits]: how much automatic mail may go out, and how large a message may be."""

    # Automatic mail to requesters (acknowledgements, notices, reminders, surveys) to one
    # address and on one ticket within an hour; above this, mail answering what looks
    # like a loop (the desk's own mail answered, the same text again) is recorded and not
    # sent. Two help desks answering each other stop after a handful of mails; a
    # person's separate requests are all answered. Staff mail is never held.
    auto_mails_per_address: int = 5
    auto_mails_per_ticket: int = 10
    # Above this many an hour to one address, automatic mail is held whatever it looks
    # like: no person writes that many requests (never fewer than auto_mails_per_address).
    auto_mails_per_address_cap: int = 30
    # After a bounce, no automatic mail goes to that address for this long.
    bounce_suppression: timedelta = timedelta(days=1)
    # A larger message still makes a ticket; its attachments over the second limit are
    # dropped, with a note to staff and a line to the requester.
    max_message_size: ByteSize = ByteSize(25 * 1024 * 1024)
    max_attachment_size: ByteSize = ByteSize(10 * 1024 * 1024)


@dataclass(frozen=True)
class SpamConfig:
    """[spam]: how the receiving server's spam verdict is read."""

    # Mail the receiving server flagged (X-Spam-Flag: YES, or a score at or above the
    # threshold in this header) goes to [imap] spam_folder with no ticket.
    score_header: str = "X-Spam-Score"
    score_threshold: float = 5.0


@dataclass(frozen=True)
class AuthenticationConfig:
    """[authentication]: whether staff mail must prove where it came from."""

    # The authserv-id your receiving server writes into Authentication-Results
    # ("mx.google.com" for Google Workspace, "microsoft365" for Exchange Online's own
    # headers). Only its topmost block is read; staff mail failing aligned DMARC/DKIM is
    # kept as an unverified note, and district mail failing it is held.
    trusted_authserv_ids: tuple[str, ...] = ()
    # Staff mail the server does not vouch for (no trusted header): kept as an unverified
    # "note" (the default), or "trust"ed on its From: line alone (`mailhelp check` fails).
    unauthenticated_staff: str = field(default="note", metadata=choice("trust", "note"))


@dataclass(frozen=True)
class DirectoryConfig:
    """[directory]: the district's people, as its admin console exports them."""

    # A CSV file (email,name,school and optional room, role; any order, by header):
    # a new ticket takes its requester's name, school and room from it. A relative
    # path is read from the config file's directory. Read again when it changes.
    csv: str = ""


@dataclass(frozen=True)
class CategoryConfig:
    """One [[categories]] entry: a new ticket whose subject (else body) has one of
    the keywords, as a whole word, is filed under ``name``."""

    name: str
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class StorageConfig:
    """[storage]: where attachments are kept."""

    # Attachments are stored by content hash here, not in the database.
    attachments_dir: str = "mailhelp-attachments"


@dataclass(frozen=True)
class TemplatesConfig:
    """[templates]: the admin's own versions of the mail templates."""

    # A directory whose files override the bundled templates of the same name.
    dir: str = ""


@dataclass(frozen=True)
class LogConfig:
    """[log]: how much is logged, and where."""

    level: str = field(default="info", metadata=choice(*LOG_LEVELS))
    file: str = ""


@dataclass(frozen=True)
class ReportConfig:
    """[report]: the director's weekly digest (``mailhelp report``, mailed)."""

    # Who gets the digest: the HTML report (with a text part) of the 7 days before each
    # occurrence of digest_schedule (desk time), once per occurrence. Empty: no digest.
    digest_to: tuple[str, ...] = ()
    digest_schedule: WeeklyAt | None = None


@dataclass(frozen=True)
class Config:
    """The whole configuration file, one field per section."""

    helpdesk: HelpdeskConfig
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    imap: ImapConfig | None = None
    smtp: SmtpConfig | None = None
    oauth2: OAuth2Config | None = None
    ingest: IngestConfig = field(default_factory=IngestConfig)
    staff: StaffConfig = field(default_factory=StaffConfig)
    survey: SurveyConfig = field(default_factory=SurveyConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    spam: SpamConfig = field(default_factory=SpamConfig)
    authentication: AuthenticationConfig = field(default_factory=AuthenticationConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    templates: TemplatesConfig = field(default_factory=TemplatesConfig)
    log: LogConfig = field(default_factory=LogConfig)
    directory: DirectoryConfig = field(default_factory=DirectoryConfig)
    categories: tuple[CategoryConfig, ...] = ()
    report: ReportConfig = field(default_factory=ReportConfig)
    path: str = ""

    def own_domain(self, address: str) -> bool:
        """Is ``address`` in the district's own domains (staff's, requesters', the help
        address's)?"""
        domain = address.rpartition("@")[2].lower()
        return (domain == self.helpdesk.domain or domain in self.helpdesk.requester_domains
                or domain in self.staff.domains
                or any(a.rpartition("@")[2] == domain for a in self.staff.addresses))

    def require_imap(self) -> ImapConfig:
        if self.imap is None:
            raise ConfigError("imap: section missing (this command reads the help mailbox)")
        return self.imap

    def require_smtp(self) -> SmtpConfig:
        if self.smtp is None:
            raise ConfigError("smtp: section missing (this command sends mail)")
        return self.smtp
