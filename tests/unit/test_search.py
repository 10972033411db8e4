"""Full-text search (mailhelp/search.py, migration 0010) on SQLite's FTS5 and
PostgreSQL's text search: the index follows the rows in the same transaction, user
text is plain words, and rows there before the migration are found."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Message, Person, Ticket
from mailhelp.db.session import Database, transaction
from mailhelp.search import MAX_WORDS, words
from mailhelp.ticket_filters import Filters, listing_query

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    upgrade(database)
    yield database
    database.dispose()


def add_ticket(tx: Session, subject: str, *texts: str, direction: str = "in") -> int:
    person = tx.scalar(select(Person).where(Person.address == "t@school.test"))
    if person is None:
        person = Person(address="t@school.test", created_at=NOW)
        tx.add(person)
        tx.flush()
    ticket = Ticket(subject=subject, requester_id=person.id, created_at=NOW, updated_at=NOW)
    tx.add(ticket)
    tx.flush()
    for n, text in enumerate(texts):
        tx.add(Message(ticket_id=ticket.id, direction=direction,
                       kind="request" if direction == "in" else "ack",
                       message_id=f"<{ticket.id}.{n}.{direction}@school.test>",
                       from_address="t@school.test", subject=subject if n == 0 else "",
                       text=text, created_at=NOW))
    tx.flush()
    return ticket.id


def found(db: Database, text: str) -> list[int]:
    with db.sessions() as session:
        query = listing_query(Filters(search=text), db.dialect)
        return [t.id for t in session.scalars(query)]


def test_words_are_plain_words_lower_cased_once_each():
    assert words('Projector "room 12" AND( NEAR/3 proj*') == [
        "projector", "room", "12", "and", "near", "3", "proj"]
    assert words('"') == words("") == words("  *^- ") == []
    assert words("Beamer beamer BEAMER") == ["beamer"]
    assert words("Weiß café") == ["weiß", "café"]
    assert len(words(" ".join(f"w{n}" for n in range(50)))) == MAX_WORDS


def test_a_word_only_in_a_message_body_finds_its_ticket(db):
    with transaction(db) as tx:
        body = add_ticket(tx, "Projector", "It shows a zebra pattern since Monday.")
        add_ticket(tx, "Printer jam", "Paper stuck in tray 2.")
    assert found(db, "zebra") == [body]
    assert found(db, "ZEBRA pattern") == [body]
    assert found(db, "printer") != found(db, "zebra")
    assert found(db, "zebras") == []  # no stemming on either database


def test_every_word_must_be_on_the_ticket_in_any_of_its_messages(db):
    with transaction(db) as tx:
        both = add_ticket(tx, "Laptop", "the screen is dark", "and the fan is loud")
        add_ticket(tx, "Laptop", "the screen is dark")
    assert found(db, "dark fan") == [both]
    assert len(found(db, "laptop dark")) == 2


def test_the_desks_own_mail_is_not_searched(db):
    with transaction(db) as tx:
        add_ticket(tx, "Wifi", "we have received your request", direction="out")
    assert found(db, "received") == []
    assert len(found(db, "wifi")) == 1  # the ticket's subject is


@pytest.mark.parametrize("query", ['"', 'AND(', '"unbalanced', "NEAR(a b", "a OR", "*", "-x",
                                   "col:umn", "^start", "'; DROP TABLE tickets; --", "{}[]"])
def test_fts_syntax_in_the_query_is_taken_as_words_and_never_fails(db, query):
    with transaction(db) as tx:
        wanted = add_ticket(tx, "Odd", "x and near col umn start drop table tickets a or b "
                                       "unbalanced")
    result = found(db, query)
    assert result == ([wanted] if words(query) else [])


def test_the_index_follows_updates_and_deletes_in_the_same_transaction(db):
    with transaction(db) as tx:
        ticket = add_ticket(tx, "Beamer", "lamp broken")
        assert tx.scalar(listing_query(Filters(search="lamp"), db.dialect)).id == ticket
        tx.execute(update(Message).where(Message.ticket_id == ticket).values(text="fuse blown"))
        assert tx.scalar(listing_query(Filters(search="lamp"), db.dialect)) is None
    assert found(db, "fuse") == [ticket] and found(db, "lamp") == []
    with transaction(db) as tx:
        tx.execute(delete(Message).where(Message.ticket_id == ticket))
    assert found(db, "fuse") == [] and found(db, "beamer") == [ticket]  # the subject
    with transaction(db) as tx:
        tx.execute(update(Ticket).where(Ticket.id == ticket).values(subject="Overhead"))
    assert found(db, "overhead") == [ticket] and found(db, "beamer") == []


def test_a_rolled_back_message_is_not_found(db):
    with pytest.raises(RuntimeError), transaction(db) as tx:
        add_ticket(tx, "Ghost", "phantom words")
        raise RuntimeError("rolled back")
    assert found(db, "phantom") == []


def test_rows_from_before_migration_0010_are_found(database_url):
    database = Database(database_url)
    from alembic import command

    from mailhelp.db.migrate import alembic_config

    command.upgrade(alembic_config(database), "0009")
    with transaction(database) as tx:
        old = add_ticket(tx, "Smartboard", "the pen calibration drifts")
    upgrade(database)
    try:
        assert found(database, "calibration") == [old]
        assert found(database, "smartboard") == [old]
    finally:
        database.dispose()


def test_a_huge_text_of_distinct_words_is_kept_and_its_start_searchable(db):
    """PostgreSQL refuses a tsvector over 1 MB; 1.5 MB of distinct words must not fail
    the message: the first 100,000 characters are indexed, on either database."""
    import random
    import string

    rng = random.Random(19)
    pasted = " ".join("".join(rng.choices(string.ascii_lowercase, k=12))
                      for _ in range(120_000))
    text = "zyxwvut " + pasted + " qqqlastword"
    with transaction(db) as tx:
        ticket = add_ticket(tx, "Log", text)
    assert found(db, "zyxwvut") == [ticket]
    assert found(db, "qqqlastword") == []  # past the indexed start
    with transaction(db) as tx:  # the delete gives FTS5 the values it indexed
        tx.execute(update(Message).where(Message.ticket_id == ticket).values(text=text[1:]))
        tx.execute(delete(Message).where(Message.ticket_id == ticket))
    assert found(db, "zyxwvut") == [] and found(db, "yxwvut") == []
