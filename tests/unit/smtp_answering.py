"""A real SMTP server (aiosmtpd) that answers as a test tells it, and a help desk with
mail in its outbox to send there: shared by the transport, worker and journal tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Outbox
from mailhelp.db.session import Database
from mailhelp.delivery.worker import OutboxSender
from mailhelp.localmail import free_port
from mailhelp.service.pipeline import Arrival, Pipeline
from tests.helpers import desk_config

# aiosmtpd's notes on each connection ("EOF received", "connection lost") come from its
# own thread, and at a test's end can reach a handler whose captured stream pytest has
# closed ("--- Logging error ---" in the run's output): its warnings are enough here.
logging.getLogger("mail.log").setLevel(logging.WARNING)

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


class Answering:
    """An aiosmtpd handler: records what it accepts, answers RCPT with a set code."""

    def __init__(self) -> None:
        self.rcpt_answer: dict[str, str] = {}
        self.data_answer = "250 OK"
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(self, server, session, envelope, address, options):
        answer = self.rcpt_answer.get(address, "250 OK")
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server, session, envelope):
        if self.data_answer.startswith("250"):
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return self.data_answer


@contextmanager
def answering_server() -> Iterator[tuple[Answering, int]]:
    from aiosmtpd.controller import Controller

    handler = Answering()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def desk_with_mail(tmp_path, database_url, smtp_server, requests: int = 1):
    """``requests`` requests from one teacher, applied: an acknowledgement to the teacher
    and a notification to staff for each, queued. Yields (handler, db, sender, clock)."""
    handler, port = smtp_server
    config = desk_config(tmp_path, database_url, f"""
        [smtp]
        host = "127.0.0.1"
        port = {port}
        security = "none"
        retry_delay = "1m"
        max_attempts = 3
        [limits]
        auto_mails_per_address = {max(5, requests)}
        """)
    db = Database(database_url)
    upgrade(db)
    clock = {"now": NOW}
    pipeline = Pipeline(config, db, lambda: clock["now"])
    pipeline.accept([Arrival(b"From: teacher1@school.test\nTo: help@school.test\nSubject: Wifi\n"
                             b"Message-ID: <w%d@x>\n\nNo wifi in room 3.\n" % n, "t")
                     for n in range(requests)])
    sender = OutboxSender(config.smtp, db, lambda: clock["now"], config.storage.attachments_dir)
    yield handler, db, sender, clock
    db.dispose()


def flush(sender):
    async def run():
        try:
            return await sender.flush()
        finally:
            await sender.close()
    return asyncio.run(run())


def rows(db) -> dict[str, Outbox]:
    with db.sessions() as session:
        return {r.kind: r for r in session.scalars(select(Outbox))}


# Fixtures the sender's test modules share (imported there by name).
@pytest.fixture
def smtp_server():
    with answering_server() as server:
        yield server


@pytest.fixture
def setup(tmp_path, database_url, smtp_server):
    yield from desk_with_mail(tmp_path, database_url, smtp_server)
