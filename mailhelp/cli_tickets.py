"""``mailhelp tickets``: list, show, export and write out files; ``set`` is in
ticket_set.py. Reading only: each command is one read of the database, a page of
tickets at a time (ticket_filters.py), printed as it comes.

In a terminal ``tickets list`` is a table with a header row, cut to the terminal's
width; piped, it is tab-separated with the same header row (one line for ``cut -f`` or
``awk`` to name the columns, ``tail -n +2`` to drop it), times in ISO 8601 on the
desk's clock, and nothing cut. Every value from mail is printable() either way.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from collections.abc import Iterable, Iterator
from datetime import tzinfo
from typing import TextIO

from .clocktext import LocalTimes
from .db.models import Message, Ticket, as_utc
from .errors import MailhelpError
from .mail.printable import printable
from .web.views import shown, ticket_json

COLUMNS = ("id", "status", "priority", "opened", "updated", "requester", "assignee",
           "school", "category", "subject")
# The widest each column of the terminal table gets; the subject takes what is left.
WIDEST = {"id": 7, "status": 8, "priority": 8, "opened": 16, "updated": 16,
          "requester": 28, "assignee": 24, "school": 20, "category": 14}
SHRINKING = ("requester", "assignee", "school", "category")
SUBJECT_AT_LEAST = 24
EXPORT_COLUMNS = ("id", "subject", "status", "priority", "requester", "assignee",
                  "participants", "school", "room", "category", "created_at", "updated_at",
                  "first_response_at", "resolved_at", "closed_at", "merged_into",
                  "survey_rating", "survey_comment")
BATCH = 500  # tickets read at a time by a listing or export


def ticket_fields(ticket: Ticket, zone: tzinfo | None) -> dict:
    """What the issue-19 tickets add to DESIGN.md's object (added, never renamed)."""
    return {"school": ticket.school, "room": ticket.room, "category": ticket.category,
            "merged_into": ticket.merged_into_id}


def ticket_object(ticket: Ticket, zone: tzinfo | None, messages=None, deliveries=None) -> dict:
    data = ticket_json(ticket, messages, deliveries, zone)
    for key, value in ticket_fields(ticket, zone).items():
        data.setdefault(key, value)
    for message, shown_message in zip(messages or (), data.get("messages", ()), strict=False):
        # Each file with the id that ``tickets attachment N ID`` takes.
        for attachment, entry in zip(message.attachments, shown_message["attachments"],
                                     strict=False):
            entry.setdefault("id", attachment.id)
    return data


def local_time(value, zone: tzinfo, timespec: str = "seconds") -> str:
    """A time a listing or export read raw (ticket_filters.TIMES) in ISO 8601 on the
    desk's clock, with its offset."""
    return as_utc(value).astimezone(zone).isoformat(timespec=timespec)


def row_cells(row, zone: tzinfo, exact: bool) -> list[str]:
    """A listing row's cells (ticket_filters.LISTED), times on the desk's clock; what
    came from mail or people (addresses, school, category, subject) is printable()."""
    when = ((lambda t: local_time(t, zone)) if exact
            else (lambda t: shown(as_utc(t), zone)))
    return [str(row.id), row.status, row.priority, when(row.created_at),
            when(row.updated_at), printable(row.requester_address),
            printable(row.assignee_address or "-"), printable(row.school or "-"),
            printable(row.category or "-"), printable(row.subject or "")]


def print_table(tickets: Iterable, zone: tzinfo, out: TextIO, width: int) -> int:
    """Aligned columns under a header, each line at most ``width`` characters: the
    subject takes what is left, and on a narrow terminal the widest of requester,
    assignee, school and category give way first (down to their header's width)."""
    rows = [row_cells(t, zone, exact=False) for t in tickets]
    widths = [min(WIDEST.get(name, 10**6), max([len(name)] + [len(r[i]) for r in rows]))
              for i, name in enumerate(COLUMNS)]
    room = width - sum(widths[:-1]) - 2 * (len(COLUMNS) - 1)
    flexible = [COLUMNS.index(name) for name in SHRINKING]
    while room < SUBJECT_AT_LEAST:
        wider = [i for i in flexible if widths[i] > len(COLUMNS[i])]
        if not wider:
            break
        widest = max(wider, key=lambda i: widths[i] - len(COLUMNS[i]))
        widths[widest] -= 1
        room += 1
    widths[-1] = max(min(widths[-1], room), len(COLUMNS[-1]))
    for row in [list(COLUMNS), *rows]:
        cells = [c if len(c) <= w else c[:max(w - 1, 0)] + "…"
                 for c, w in zip(row, widths, strict=True)]
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        out.write((line if len(line) <= width else line[:max(width - 1, 0)] + "…") + "\n")
    return len(rows)


def print_tabbed(rows: Iterable, zone: tzinfo, out: TextIO) -> int:
    """Tab-separated rows (row_cells(exact=True)'s cells), a page written at a time: one
    formatted line per row, no call per cell but printable() on what came from mail
    and the times (UTC text, clocktext)."""
    out.write("\t".join(COLUMNS) + "\n")
    count = 0
    local = LocalTimes(zone).iso
    for page in _pages(rows):
        out.write("".join([
            f"{number}\t{status}\t{priority}\t{local(opened)}\t{local(updated)}\t"
            f"{printable(requester)}\t{printable(assignee or '-')}\t"
            f"{printable(school or '-')}\t{printable(category or '-')}\t"
            f"{printable(subject or '')}\n"
            for number, status, priority, opened, updated, requester, assignee, school,
            category, subject in page]))
        count += len(page)
    return count


def _pages(rows: Iterable, size: int = 500) -> Iterator[list]:
    """``rows`` in lists of ``size``: a streamed result's own pages when it has them."""
    if hasattr(rows, "partitions"):
        yield from rows.partitions(size)
        return
    page: list = []
    for row in rows:
        page.append(row)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def write_json_array(objects: Iterable[dict], out: TextIO) -> None:
    """A JSON array written as it is made: one object per line."""
    out.write("[")
    for n, item in enumerate(objects):
        out.write(("\n" if n == 0 else ",\n") + json.dumps(item))
    out.write("\n]\n")


def write_csv(tickets: Iterable[Ticket], zone: tzinfo, out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for ticket in tickets:
        data = ticket_object(ticket, zone)
        survey = data["survey"] or {}
        data.update(participants=" ".join(data["participants"]),
                    survey_rating=survey.get("rating"), survey_comment=survey.get("comment"))
        writer.writerow(["" if data.get(c) is None else data[c] for c in EXPORT_COLUMNS])


def streamed(session, query) -> Iterator[Ticket]:
    """The query's tickets, BATCH at a time, without keeping those already given."""
    yield from session.scalars(query.execution_options(yield_per=BATCH))


def export_csv(session, query, zone: tzinfo, out: TextIO) -> None:
    """write_csv's bytes from plain rows (listing_query(exported=True)), a page at a
    time: each page's participants in one query, its lines written in one call, no
    ticket objects or dicts."""
    from .ticket_filters import export_participants

    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    result = session.connection().execute(query.execution_options(yield_per=BATCH))
    for page in result.partitions(BATCH):
        cc = export_participants(session, [row[0] for row in page])
        writer.writerows([
            (number, subject, status, priority, requester, assignee, cc.get(number, ""),
             school, room, category,
             created and local_time(created, zone, "auto"),
             updated and local_time(updated, zone, "auto"),
             answered and local_time(answered, zone, "auto"),
             resolved and local_time(resolved, zone, "auto"),
             closed and local_time(closed, zone, "auto"), merged_into, rating, comment)
            for (number, subject, status, priority, requester, assignee, school, room,
                 category, created, updated, answered, resolved, closed, merged_into,
                 rating, comment) in page])


def streamed_rows(session, query):
    """The query's rows (listing_query(columns=True)), BATCH at a time: the result
    itself, whose partitions() print_tabbed writes a page at a time. Run on the
    session's connection (Core): plain rows need none of the ORM's loading per row."""
    return session.connection().execute(query.execution_options(yield_per=BATCH))


def terminal_width(out: TextIO) -> int:
    return shutil.get_terminal_size((120, 24)).columns if out.isatty() else 10**6


def conversation_text(ticket: Ticket, messages: list[Message], deliveries, zone: tzinfo) -> str:
    """``tickets show``: the ticket's particulars, then each message as a mail reader
    shows it (date on the desk's clock, who, which kind, the new text, its files)."""
    from .web.views import delivery_text

    stamp = "%Y-%m-%d %H:%M %Z"
    requester = ticket.requester
    lines = [f"Ticket #{ticket.id}: {printable(ticket.subject)}",
             f"  Status:    {ticket.status}, priority {ticket.priority}"
             + (f", merged into #{ticket.merged_into_id}" if ticket.merged_into_id else ""),
             f"  Requester: {_who(requester.name, requester.address)}",
             f"  Assignee:  {printable(ticket.assignee.address) if ticket.assignee else '-'}"]
    if ticket.participants:
        lines.append("  CC:        " + printable(", ".join(
            p.person.address for p in ticket.participants)))
    place = ", ".join(f"{label} {printable(value)}" for label, value in (
        ("school", ticket.school), ("room", ticket.room), ("category", ticket.category))
        if value)
    if place:
        lines.append(f"  Filed:     {place}")
    lines.append(f"  Opened:    {shown(ticket.created_at, zone, stamp)}; "
                 f"updated {shown(ticket.updated_at, zone, stamp)}")
    for label, value in (("First answer", ticket.first_response_at),
                         ("Resolved", ticket.resolved_at), ("Closed", ticket.closed_at)):
        if value is not None:
            lines.append(f"  {label + ':':<11}{shown(value, zone, stamp)}")
    if ticket.survey is not None:
        survey = ticket.survey
        lines.append(f"  Survey:    sent {shown(survey.sent_at, zone, stamp)}"
                     + (f", rated {survey.rating}" if survey.rating is not None else "")
                     + (f": {printable(survey.comment)}" if survey.comment else ""))
    for message in messages:
        who = (_who(message.from_name, message.from_address) if message.direction == "in"
               else "to " + printable(", ".join(message.to)))
        lines += ["", f"--- {shown(message.date or message.created_at, zone, stamp)}  "
                      f"{message.kind}  {who}  [message {message.id}]"
                      f"{delivery_text((deliveries or {}).get(message.id))}",
                  f"    Subject: {printable(message.subject or '')}"]
        if message.direction != "in":
            continue  # the desk's own mail: when, what and to whom is enough here
        for text_line in (message.text or "").strip().splitlines()[:SHOWN_LINES]:
            lines.append(f"    {printable(text_line[:SHOWN_WIDTH], lines=True)}")
        for a in message.attachments:
            lines.append(f"    [file {a.id}] {printable(a.filename)} "
                         f"({printable(a.content_type)}, {a.size:,} bytes)")
    return "\n".join(lines)


SHOWN_LINES, SHOWN_WIDTH = 200, 2000  # of each message's text in ``tickets show``


def _who(name: str, address: str) -> str:
    return printable(f"{name} <{address}>" if name else address)


def found_ticket(session, number: int) -> Ticket:
    from .web.views import ticket_query

    ticket = session.scalar(ticket_query().filter_by(id=number))
    if ticket is None:
        raise MailhelpError(f"ticket {number} not found")
    return ticket


def emit(text: str, out: TextIO = sys.stdout) -> None:
    out.write(text + "\n")
