"""A desk on the test database with the configuration a district gets by default
(no ``unauthenticated_staff = "trust"`` that the other tests' helpers add), and the
mail an attacker would send it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from mailhelp.db.migrate import upgrade
from mailhelp.db.session import Database
from mailhelp.service.pipeline import Arrival, Pipeline
from tests.helpers import desk_config

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
# What the receiving server writes on top of mail it vouches for, and on mail it does not.
SERVER_PASS = ("Authentication-Results: mx.school.test; dkim=pass header.d=school.test; "
               "spf=pass smtp.mailfrom=school.test; dmarc=pass header.from=school.test\n")
SERVER_FAIL = ("Authentication-Results: mx.school.test; dkim=none; spf=fail "
               "smtp.mailfrom=attacker.test; dmarc=fail header.from=school.test\n")
TRUSTED = '[authentication]\ntrusted_authserv_ids = ["mx.school.test"]\n'
DEFAULTS = "[authentication]\n"  # the section as a district leaves it: every default


class Desk:
    """A pipeline on a fresh schema; ``send`` applies one raw message."""

    def __init__(self, pipeline: Pipeline, db: Database) -> None:
        self.pipeline, self.db = pipeline, db

    def send(self, raw: bytes):
        [result] = self.pipeline.accept([Arrival(raw, "t")])
        return result

    def rows(self, model, *where):
        with self.db.sessions() as session:
            return list(session.scalars(select(model).where(*where).order_by(model.id)))


@pytest.fixture
def make_desk(tmp_path, database_url):
    made = []

    def make(extra: str = DEFAULTS, staff=("tech1@school.test", "tech2@school.test")) -> Desk:
        config = desk_config(tmp_path, database_url, extra, staff=staff)
        db = Database(database_url)
        upgrade(db)
        made.append(db)
        return Desk(Pipeline(config, db, lambda: NOW), db)

    yield make
    for db in made:
        db.dispose()


def mail(sender: str = "Jane Teacher <teacher1@school.test>", subject: str = "Printer jam",
         body: str = "The printer in room 12 jams.", headers: str = "",
         message_id: str | None = None, to: str = "help@school.test") -> bytes:
    """A message as it lands in the mailbox: ``headers`` come first, as a receiving
    server's would, above the sender's own."""
    message_id = message_id or f"<{abs(hash((sender, subject, body, headers)))}@x.test>"
    return (f"{headers}From: {sender}\nTo: {to}\nSubject: {subject}\n"
            f"Message-ID: {message_id}\n\n{body}\n").encode()
