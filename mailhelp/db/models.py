"""The help desk's tables. Schema changes go through Alembic (db/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    cast,
    func,
    type_coerce,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Named constraints let Alembic alter them later, on SQLite too (batch mode).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which keeps no zone) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def raw_time(column, dialect: str):
    """``column`` (a UTCDateTime) read as the driver gives it, for reads of 100,000s of
    rows: SQLite's text, PostgreSQL's aware datetime. UTCDateTime's own processing per
    value (two Python calls and a copy) was most of the cost of such reads; as_utc()
    reads a value."""
    return type_coerce(column, String if dialect == "sqlite" else DateTime(timezone=True))


def utc_text(column, dialect: str):
    """``column`` (a UTCDateTime) read as text in UTC, as SQLite keeps it ("2026-03-04
    05:06:07.123456"), on either database: what clocktext.LocalTimes shows fast."""
    if dialect == "sqlite":
        return type_coerce(column, String).label(column.key)
    # PostgreSQL's own text of a timestamp (DateStyle ISO, which psycopg needs to read
    # any time at all; the fraction left out when it is zero): a third of to_char's cost.
    return cast(func.timezone("UTC", column), String).label(column.key)


def as_utc(value: datetime | str | None) -> datetime | None:
    """A value raw_time() read, as an aware UTC datetime (SQLite's text is UTC, without
    a zone: datetime.fromisoformat parses it at a fifth of the column type's cost)."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Person(Base):
    """Anyone who wrote to or was written to by the help desk, by lower-cased address."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    requester_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    # A ticket opened by a reply to a long-closed one names it here.
    linked_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who or what resolved it last: a staff address, or "auto" for the pending timeout.
    resolved_by: Mapped[str] = mapped_column(String(320), default="")
    # Why no automatic mail goes out on it until staff release it (#release): the
    # request claimed a district address that the receiving server did not vouch for.
    held: Mapped[str | None] = mapped_column(Text)
    # From the district directory ([directory] csv) when the ticket is made, and from
    # [[categories]] keywords; staff may change each.
    school: Mapped[str] = mapped_column(String(200), default="", server_default="",
                                        index=True)
    room: Mapped[str] = mapped_column(String(100), default="", server_default="")
    category: Mapped[str] = mapped_column(String(100), default="", server_default="",
                                          index=True)
    # A ticket merged into another names the survivor; mail threaded on it goes there.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))

    requester: Mapped[Person] = relationship(foreign_keys=[requester_id])
    assignee: Mapped[Person | None] = relationship(foreign_keys=[assignee_id])
    participants: Mapped[list[Participant]] = relationship(
        back_populates="ticket", order_by="Participant.id", cascade="all, delete-orphan"
    )
    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id"
    )
    events: Mapped[list[TicketEvent]] = relationship(order_by="TicketEvent.id")
    survey: Mapped[Survey | None] = relationship(uselist=False)


class Participant(Base):
    """A person who receives a ticket's public mail besides its requester (CC'd colleagues)."""

    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)

    ticket: Mapped[Ticket] = relationship(back_populates="participants")
    person: Mapped[Person] = relationship()

    __table_args__ = (
        Index("uq_participants_ticket_person", "ticket_id", "person_id", unique=True),
    )


class RawMessage(Base):
    """An incoming message's bytes, stored before anything else is done with them.

    This is the durable queue between the source and the workflow: a row in
    state ``new`` that a crash left behind is processed again from these bytes.
    """

    __tablename__ = "raw_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(200))  # "imap:INBOX", "ingest"
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="new", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_raw_messages_mailbox_uid", "source", "uidvalidity", "uid"),)


class RawMessageBody(Base):
    """The bytes of a RawMessage, written once and never updated. Apart from its row
    because SQLite rewrites a whole row on every UPDATE: bytes stored beside ``state``
    were read into memory and written again, twice their size, at each change of it."""

    __tablename__ = "raw_message_bodies"

    raw_id: Mapped[int] = mapped_column(ForeignKey("raw_messages.id"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class Message(Base):
    """One message on a ticket, incoming or outgoing, as staff and reports see it."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # "in" | "out"
    kind: Mapped[str] = mapped_column(String(20))
    # Unique: the same message seen twice makes one ticket entry.
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    in_reply_to: Mapped[str] = mapped_column(Text, default="")
    references: Mapped[list] = mapped_column(JSON, default=list)
    from_address: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str] = mapped_column(String(200), default="")
    to: Mapped[list] = mapped_column(JSON, default=list)
    cc: Mapped[list] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    text: Mapped[str] = mapped_column(Text, default="")  # the new text, quotes cut
    body: Mapped[str] = mapped_column(Text, default="")  # the full text as received or sent
    thread_reason: Mapped[str] = mapped_column(String(20), default="")
    raw_id: Mapped[int | None] = mapped_column(ForeignKey("raw_messages.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(order_by="Attachment.id")


class Attachment(Base):
    """An attachment's metadata; the bytes live in the content-addressed file store."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[str] = mapped_column(String(998), default="")


class Outbox(Base):
    """A mail to send, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_row_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    kind: Mapped[str] = mapped_column(String(20))
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    mail_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list] = mapped_column(JSON)
    # The first recipient, for rate limits per address (JSON is not indexable everywhere).
    to_address: Mapped[str] = mapped_column(String(320), default="", index=True)
    # The mail as SMTP sends it; while body_text/body_html are set, only its header
    # block: the MIME body is built from them by the sender (composer.complete).
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    # queued -> sent | failed (permanent); bounced is set by a later DSN; suppressed:
    # recorded but never sent (rate limit, or the address bounced lately).
    status: Mapped[str] = mapped_column(String(12), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    message_row: Mapped[Message | None] = relationship()

    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_recent", "created_at"),
    )


class Suppression(Base):
    """An address that gets no automatic mail until ``until`` (it bounced, say)."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TicketEvent(Base):
    """One line of a ticket's history: what changed, when, and who or what caused it."""

    __tablename__ = "ticket_events"
    # The report's status changes since a time (migration 0011).
    __table_args__ = (Index("ix_ticket_events_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(320))  # an address, or "system"
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")


class MailboxState(Base):
    """Where the IMAP source stands in one folder: UIDVALIDITY and the last UID it took."""

    __tablename__ = "mailbox_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(400))  # "user@host:port"
    folder: Mapped[str] = mapped_column(String(400))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("uq_mailbox_state_account_folder", "account", "folder", unique=True),)


class Job(Base):
    """A piece of timed work (reminder, auto-resolve, auto-close, survey) for a ticket.

    Kept in the database so that a restart loses none and a second runner does none
    twice: a job is done in the same transaction as the work and the mail it causes.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # done_at or cancelled_at set: the job is over.
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_jobs_due", "done_at", "cancelled_at", "due_at"),)


class Survey(Base):
    """The satisfaction survey of one ticket: its secret token and the latest answer."""

    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rating: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_via: Mapped[str] = mapped_column(String(10), default="")  # mail | web


class Key(Base):
    """A secret the desk made for itself at ``init`` (the signing key of Message-IDs and
    return paths)."""

    __tablename__ = "keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class Alert(Base):
    """When the admin was last mailed about one problem (``key``), and what it was."""

    __tablename__ = "alerts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[str] = mapped_column(Text, default="")


class PeriodicMail(Base):
    """One occurrence of a mail sent on a schedule (``[staff] queue_digest``'s morning
    queue; the director's weekly digest can use it too), for one recipient: written in
    the same transaction as the mail's outbox row, so that a restart, a second runner or
    ``run --once`` twice sends it once. An occurrence with nothing to send is recorded
    too (``message_id`` empty), so it is decided once."""

    __tablename__ = "periodic_mail"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))  # "queue_digest"
    recipient: Mapped[str] = mapped_column(String(320))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the occurrence, not the run
    done_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The outbox row's Message-ID; NULL: nothing was sent (``result`` says why).
    message_id: Mapped[str | None] = mapped_column(String(998))
    result: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        # (kind, due_at) first: the daemon asks which recipients had an occurrence.
        Index("uq_periodic_mail_occurrence", "kind", "due_at", "recipient", unique=True),
    )
