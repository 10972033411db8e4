"""The fast paths of ``tickets list`` (piped) and ``tickets export --format csv``: plain
rows a page at a time give the same bytes as the ticket objects they replaced, across
page boundaries, with participants, surveys, merges and empty values."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailhelp.cli_tickets import export_csv, print_tabbed, row_cells, write_csv
from mailhelp.db.migrate import upgrade
from mailhelp.db.models import Participant, Person, Survey, Ticket
from mailhelp.db.session import Database, transaction
from mailhelp.ticket_filters import Filters, listing_query

NOW = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
CHICAGO = ZoneInfo("America/Chicago")
TICKETS = 1_203  # three pages of 500 and a bit


@pytest.fixture(scope="module")
def db(module_database_url):
    database = Database(module_database_url)
    upgrade(database)
    with transaction(database) as tx:
        people = [Person(address=f"p{n}@school.test", name=f"P {n}", created_at=NOW)
                  for n in range(6)]
        people[5].address = "odd\tone\x1b@school.test"  # escaped when listed, kept in CSV
        tx.add_all(people)
        tx.flush()
        for n in range(1, TICKETS + 1):
            when = NOW - timedelta(hours=n)
            tx.add(Ticket(
                id=n, subject=["Printer\ttoner, \"empty\"", "Laptop ▒ — x", ""][n % 3],
                status=["new", "open", "resolved"][n % 3], requester_id=people[n % 6].id,
                assignee_id=people[(n + 1) % 4].id if n % 4 else None,
                school=["Lincoln", ""][n % 2], room=["12", ""][n % 5 == 0],
                category=["", "Printers\n"][n % 2], created_at=when, updated_at=when,
                first_response_at=when if n % 3 else None,
                resolved_at=when if n % 3 == 2 else None, closed_at=None,
                merged_into_id=1 if n % 7 == 0 and n > 1 else None))
        tx.flush()
        for n in range(1, TICKETS + 1, 5):  # CC'd in an order their ids do not have
            for person in (people[4], people[2]) if n % 2 else (people[3],):
                tx.add(Participant(ticket_id=n, person_id=person.id, added_at=NOW))
        for n in range(3, TICKETS + 1, 4):
            tx.add(Survey(ticket_id=n, token=f"t{n}", sent_at=NOW,
                          rating=None if n % 3 == 0 else 4, comment=["", "fine, \"ok\""][n % 2]))
    yield database
    database.dispose()


def test_the_csv_export_from_rows_is_byte_for_byte_the_export_from_tickets(db):
    before, after = io.StringIO(), io.StringIO()
    with db.sessions() as session:
        write_csv(session.scalars(listing_query(Filters(), db.dialect, people=True)),
                  CHICAGO, before)
        export_csv(session, listing_query(Filters(), db.dialect, exported=True), CHICAGO,
                   after)
    assert after.getvalue() == before.getvalue()
    assert after.getvalue().count("p4@school.test p2@school.test") > 100
    assert '"fine, ""ok"""' in after.getvalue() and "\r\n" in after.getvalue()


@pytest.mark.parametrize("filters", [Filters(), Filters(search="printer", limit=700),
                                     Filters(statuses=("open",))])
def test_the_piped_listing_is_its_cells_tab_separated(db, filters):
    out = io.StringIO()
    with db.sessions() as session:
        query = listing_query(filters, db.dialect, columns=True)
        rows = list(session.execute(query))
        expected = "".join("\t".join(row_cells(r, CHICAGO, exact=True)) + "\n" for r in rows)
        # once as a list (pages of its own), once as the streamed result (its partitions)
        assert print_tabbed(rows, CHICAGO, out) == len(rows) > 0
        assert out.getvalue().split("\n", 1)[1] == expected
        streamed = io.StringIO()
        print_tabbed(session.execute(query.execution_options(yield_per=500)), CHICAGO,
                     streamed)
    assert streamed.getvalue() == out.getvalue()
    if filters == Filters():  # a requester with a tab and an escape in the address
        assert "\todd\\tone\\x1b@school.test\t" in expected
