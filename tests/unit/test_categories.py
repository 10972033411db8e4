"""desk/categories.py: filing by [[categories]] keywords, and set_category / set_school."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from mailhelp import config as config_module
from mailhelp.db.models import Base, Person, Ticket, TicketEvent
from mailhelp.desk.categories import (
    BODY_LOOKED_AT,
    UnknownCategory,
    categories_of,
    set_category,
    set_school,
)
from mailhelp.desk.commands import Effects, Env, parse, run
from mailhelp.errors import ConfigError

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
CONFIG = config_module.loads("""
[helpdesk]
address = "help@school.test"

[[categories]]
name = "Printers"
keywords = ["printer", "printers", "toner", "paper jam"]

[[categories]]
name = "Network"
keywords = ["wifi", "wi-fi", "internet"]

[[categories]]
name = "Student Devices"
keywords = ["chromebook", "ipad", "toner"]
""")


def file(subject: str, body: str = "") -> str:
    return categories_of(CONFIG).file(subject, body)


def test_the_subject_decides_before_the_body():
    assert file("Printer in room 12", "and the wifi is down") == "Printers"
    assert file("Help please", "the WiFi is down, and the printer too") == "Network"


def test_the_first_keyword_of_the_subject_wins_whatever_the_order_of_categories():
    assert file("Chromebook cannot print to the printer") == "Student Devices"


def test_keywords_are_whole_words_in_any_case():
    assert file("Reprinting", "internetworking, wifis, toners") == ""
    assert file("WI-FI gone") == "Network"
    assert file("re: PAPER   JAM again") == "Printers"  # any white space between words


def test_a_keyword_listed_twice_belongs_to_the_first_category():
    assert file("out of toner") == "Printers"


def test_the_body_is_read_only_so_far():
    assert file("", "x " * (BODY_LOOKED_AT // 2) + "printer") == ""
    assert file("", "x " * (BODY_LOOKED_AT // 2 - 10) + "printer") == "Printers"


def test_no_categories_files_nothing():
    plain = config_module.loads('[helpdesk]\naddress = "help@school.test"\n')
    assert categories_of(plain).file("printer", "wifi") == ""


@pytest.mark.parametrize(("text", "error"), [
    ('[[categories]]\nname = "A"\nkeywords = ["x"]\n[[categories]]\nname = "a"\n'
     'keywords = ["y"]', "categories[2].name: 'a' is given twice"),
    ('[[categories]]\nname = "A"\nkeywords = []', "categories[1].keywords: give at least one"),
    ('[[categories]]\nname = " "\nkeywords = ["x"]', "categories[1].name: must be 1 to 100"),
    ('[[categories]]\nkeywords = ["x"]', "categories[1].name: missing (required)"),
    ('[[categories]]\nname = "A"\nkeywords = ["x"]\ncolour = "red"',
     "categories[1].colour: unknown key"),
    ('categories = ["Printers"]', "categories: expected [[categories]] entries"),
])
def test_bad_categories_name_the_key(text, error):
    with pytest.raises(ConfigError) as caught:
        config_module.loads(text + '\n[helpdesk]\naddress = "help@school.test"\n')
    assert str(caught.value).startswith(error)


@pytest.fixture
def tx():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        teacher = Person(address="teacher@school.test", name="Jane", created_at=NOW)
        session.add(Ticket(id=7, subject="x", status="new", priority="normal",
                           requester=teacher, created_at=NOW, updated_at=NOW))
        session.commit()
        yield session
    engine.dispose()


def events(tx: Session) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.detail) for e in tx.scalars(select(TicketEvent))]


def test_set_category_takes_the_configured_spelling_and_records_who(tx):
    ticket = tx.get(Ticket, 7)
    assert set_category(tx, CONFIG, ticket, "student  DEVICES", "tech1@school.test", NOW) \
        == "Student Devices"
    tx.commit()
    assert tx.get(Ticket, 7).category == "Student Devices"
    assert events(tx) == [("tech1@school.test", "category", "- -> Student Devices")]


def test_set_category_refuses_an_unknown_name_listing_the_known_ones(tx):
    ticket = tx.get(Ticket, 7)
    with pytest.raises(UnknownCategory) as caught:
        set_category(tx, CONFIG, ticket, "Projectors", "cli", NOW)
    assert str(caught.value) == ("unknown category 'Projectors' (known: Printers, Network, "
                                 "Student Devices)")
    assert ticket.category == ""


def test_an_empty_name_clears_and_the_same_name_again_records_nothing(tx):
    ticket = tx.get(Ticket, 7)
    set_category(tx, CONFIG, ticket, "printers", "cli", NOW)
    set_category(tx, CONFIG, ticket, "Printers", "cli", NOW)
    set_category(tx, CONFIG, ticket, "", "cli", NOW)
    tx.commit()
    assert tx.get(Ticket, 7).category == ""
    assert [d for _, _, d in events(tx)] == ["- -> Printers", "Printers -> -"]


def test_set_school_and_room(tx):
    ticket = tx.get(Ticket, 7)
    set_school(tx, ticket, " Lincoln   Elementary ", "cli", NOW, room="12")
    set_school(tx, ticket, "Lincoln Elementary", "cli", NOW)  # the room stays
    tx.commit()
    ticket = tx.get(Ticket, 7)
    assert (ticket.school, ticket.room) == ("Lincoln Elementary", "12")
    assert [(a, d) for _, a, d in events(tx)] == [("school", "- -> Lincoln Elementary"),
                                                  ("room", "- -> 12")]


def _env(tx: Session, ticket: Ticket) -> Env:
    return Env(tx=tx, ticket=ticket, actor="tech1@school.test", now=NOW,
               is_staff=lambda _a: True, set_status=lambda _s: None,
               add_participant=lambda _a: None, remove_participant=lambda _a: False,
               assign=lambda _a: None, config=CONFIG)


def test_category_by_mail(tx):
    ticket = tx.get(Ticket, 7)
    parsed = parse("#category network\nOn it.")
    effects = Effects()
    assert run(parsed.commands[0], _env(tx, ticket), effects) == ""
    assert ticket.category == "Network" and effects.changes == ["category Network"]
    [alone] = parse("#category").commands
    assert run(alone, _env(tx, ticket), effects) == "" and ticket.category == ""


def test_unknown_category_by_mail_is_a_command_error_listing_the_known_ones(tx):
    ticket = tx.get(Ticket, 7)
    [command] = parse("#category Projectors").commands
    error = run(command, _env(tx, ticket), Effects())
    assert error == ("#category Projectors: unknown category 'Projectors' (known: Printers, "
                     "Network, Student Devices)")
    assert parse("#category " + "x" * 400).error.endswith("#category: the name is too long")


def test_school_and_room_by_mail(tx):
    ticket = tx.get(Ticket, 7)
    ticket.school, ticket.room = "Lincoln Elementary", "12"
    effects = Effects()
    for line in ("#school Washington  Middle", "#room 210"):
        [command] = parse(line).commands
        assert run(command, _env(tx, ticket), effects) == ""
    assert (ticket.school, ticket.room) == ("Washington Middle", "210")
    assert effects.changes == ["school Washington Middle", "room 210"]
    [alone] = parse("#room").commands
    assert run(alone, _env(tx, ticket), effects) == "" and ticket.room == ""
    tx.commit()
    assert [(a, d) for _, a, d in events(tx)] == [
        ("school", "Lincoln Elementary -> Washington Middle"), ("room", "12 -> 210"),
        ("room", "210 -> -")]
