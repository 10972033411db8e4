"""A help desk's rows at any schema revision, for the upgrade tests.

The rows are written with SQLAlchemy Core into the tables as they are at that revision
(reflected from the database), never through today's models: a column that revision
lacks is left out, and a column it has that no row below fills fails the test
(``uncovered``), so a new migration cannot go untested with data. Values are what the
desk really writes: non-ASCII names, raw bytes that are not UTF-8, UIDVALIDITY past 2**31,
an outbox row in every status, jobs of every kind, a survey answered and one not.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, MetaData, func, select

T0 = datetime(2026, 11, 2, 7, 55, 2, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@dataclass(frozen=True)
class Ref:
    """The primary key of a row written earlier, by table and name."""

    table: str
    name: str


def _mail(message_id: str, sender: str, subject: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (b"Return-Path: <" + sender.encode() + b">\r\n"
            b"Received: from mx.school.test by imap.school.test; Mon, 2 Nov 2026 07:55:03 +0000\r\n"
            b"From: " + sender.encode() + b"\r\nTo: help@school.test\r\n"
            b"Subject: " + subject + b"\r\nMessage-ID: " + message_id.encode() + b"\r\n"
            b"Date: Mon, 2 Nov 2026 08:55:02 +0100\r\nMIME-Version: 1.0\r\n" + extra + body)


# 48 KiB of bytes that compress badly, as an attachment does.
_NOISE = b"".join(hashlib.sha256(i.to_bytes(2, "big")).digest() for i in range(1536))
_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + _NOISE[:200]

RAW = {
    "projector": _mail(
        "<CAB+projector@mail.school.test>", "teacher1@school.test",
        b"=?utf-8?q?Beamer_in_Raum_12_geht_nicht?=",
        b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\nDer Beamer zeigt \"kein Signal\". Gr\xfc\xdfe, J\xf6rg\r\n--b1\r\n"
        b"Content-Type: image/png; name=\"no signal.png\"\r\nContent-ID: <img1@school.test>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(_PNG) + b"--b1--\r\n"),
    "reply": _mail(
        "<CAB+reply@mail.school.test>", "teacher1@school.test", b"Re: [#1] Beamer",
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nGeht wieder, danke!\r\n\r\n"
        b"> Bitte HDMI-Kabel tauschen.\r\n",
        b"In-Reply-To: <t1.staff@school.test>\r\nReferences: <CAB+projector@mail.school.test>"
        b" <t1.staff@school.test>\r\n"),
    "grades": _mail(
        "<AM0PR01MB1234@eurprd01.prod.outlook.com>", "teacher3@school.test",
        b"Kein Zugang zum Notenbuch \xe2\x80\x93 dringend",  # raw UTF-8 in a header
        b"Content-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n--b2\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nSiehe Anhang.\r\n--b2\r\n"
        b"Content-Type: application/pdf; name=\"Fehler.pdf\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(_NOISE) + b"--b2--\r\n"),
    "away": _mail("<ooo-1@school.test>", "teacher2@school.test", b"Automatic reply: Beamer",
                  b"Content-Type: text/plain\r\n\r\nI am out of the office.\r\n",
                  b"Auto-Submitted: auto-replied\r\n"),
    # Not mail at all: NUL bytes and no header block. It stays in the failed state.
    "broken": b"\x00\x01\xff\xfe garbage \x00\r\n\r\n\x80\x81",
}


def _raw_message(name: str, state: str, ticket: str | None, n: int, **extra) -> tuple:
    raw = RAW[name]
    values = {"source": "imap:INBOX", "uidvalidity": 3_000_000_001, "uid": n,
              "message_id": f"<{name}@test>", "sha256": hashlib.sha256(raw).hexdigest(),
              "size": len(raw), "raw": raw, "state": state, "error": None,
              "ticket_id": Ref("tickets", ticket) if ticket else None,
              "received_at": at(n / 10), "processed_at": at(n / 10 + 0.01)} | extra
    return ("raw_messages", name, values)


def _message(name: str, ticket: str, direction: str, kind: str, hours: float,
             raw: str | None = None, **extra) -> tuple:
    values = {"ticket_id": Ref("tickets", ticket), "direction": direction, "kind": kind,
              "message_id": f"<{name}@school.test>", "in_reply_to": "", "references": [],
              "from_address": "help@school.test", "from_name": "Springfield SD Help Desk",
              "to": ["teacher1@school.test"], "cc": [], "subject": f"[#{ticket}] {kind}",
              "date": at(hours), "text": "Danke, wir kümmern uns.", "body": "Danke, wir "
              "kümmern uns.\n\n> Der Beamer zeigt \"kein Signal\".", "thread_reason": "",
              "raw_id": Ref("raw_messages", raw) if raw else None, "created_at": at(hours)}
    return ("messages", name, values | extra)


def _outbox(name: str, status: str, ticket: str | None, row: str | None, **extra) -> tuple:
    header = (f"From: help@school.test\r\nTo: teacher1@school.test\r\nMessage-ID: "
              f"<{name}.out@school.test>\r\nSubject: =?utf-8?q?[#1]_Beamer?=\r\n").encode()
    values = {"ticket_id": Ref("tickets", ticket) if ticket else None,
              "message_row_id": Ref("messages", row) if row else None, "kind": "ack",
              "message_id": f"<{name}.out@school.test>",
              "mail_from": f"help+bounce-{name}@school.test", "recipients":
              ["teacher1@school.test"], "to_address": "teacher1@school.test",
              "raw": header + b"\r\nHallo J\xc3\xb6rg,\r\n", "body_text": None, "body_html": None,
              "status": status, "attempts": 1, "next_attempt_at": at(1), "last_error": None,
              "created_at": at(0.5), "sent_at": None}
    return ("outbox", name, values | extra)


def _ticket(name: str, status: str, requester: str, hours: float, **extra) -> tuple:
    values = {"subject": f"{name}: Beamer in Raum 12 – kein Signal", "status": status,
              "priority": "normal", "requester_id": Ref("people", requester),
              "assignee_id": None, "linked_ticket_id": None, "created_at": at(hours),
              "updated_at": at(hours + 1), "first_response_at": None, "resolved_at": None,
              "closed_at": None, "resolved_by": "", "held": None, "school": "",
              "room": "", "category": "", "merged_into_id": None}
    return ("tickets", name, values | extra)


def _person(name: str, address: str, display: str) -> tuple:
    return ("people", name, {"address": address, "name": display, "created_at": at(0)})


# In the order they are written: a row comes after the rows it refers to.
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    _person("jorg", "teacher1@school.test", "Jörg Weiß"),
    _person("francoise", "teacher2@school.test", "Françoise Müller"),
    _person("lee", "teacher3@school.test", "李 小龍"),
    _person("tech", "tech1@school.test", "Tech One"),
    _ticket("printer", "closed", "lee", -400, assignee_id=Ref("people", "tech"),
            first_response_at=at(-399), resolved_at=at(-390), closed_at=at(-200),
            resolved_by="tech1@school.test"),
    _ticket("projector", "open", "jorg", 0, assignee_id=Ref("people", "tech"),
            first_response_at=at(0.5), school="Lincoln Elementary – Süd", room="12",
            category="Projectors"),
    _ticket("grades", "pending", "lee", 2),
    _ticket("password", "resolved", "francoise", 3, resolved_at=at(5), resolved_by="auto"),
    _ticket("again", "new", "lee", 6, priority="high", linked_ticket_id=Ref("tickets", "printer"),
            held="From: claims school.test; spf=fail dkim=none (mx.school.test)"),
    _ticket("twice", "closed", "jorg", 1, merged_into_id=Ref("tickets", "projector"),
            closed_at=at(1.5), school="Lincoln Elementary – Süd", category="Projectors"),
    ("participants", "cc", {"ticket_id": Ref("tickets", "projector"),
                            "person_id": Ref("people", "francoise"), "added_at": at(0)}),
    _raw_message("projector", "processed", "projector", 4311),
    _raw_message("reply", "processed", "projector", 4312),
    _raw_message("grades", "processed", "grades", 4313, source="ingest", uidvalidity=None,
                 uid=None),
    _raw_message("away", "ignored", None, 4314),
    _raw_message("broken", "failed", None, 4315, error="ParseError: no header block",
                 processed_at=None),
    *[("raw_message_bodies", name, {"raw_id": Ref("raw_messages", name), "raw": raw})
      for name, raw in RAW.items()],
    _message("request", "projector", "in", "request", 0, "projector",
             from_address="teacher1@school.test", from_name="Jörg Weiß",
             to=["help@school.test"], cc=["teacher2@school.test"]),
    _message("ack", "projector", "out", "ack", 0.01, in_reply_to="<request@school.test>",
             references=["<request@school.test>"]),
    _message("staff", "projector", "out", "staff_reply", 0.5, from_address="tech1@school.test",
             text="Bitte HDMI-Kabel tauschen.", in_reply_to="<request@school.test>"),
    _message("thanks", "projector", "in", "reply", 1, "reply", thread_reason="references",
             from_address="teacher1@school.test", references=["<request@school.test>",
                                                              "<staff@school.test>"]),
    _message("grades", "grades", "in", "request", 2, "grades", from_address="teacher3@school.test",
             date=None),
    _message("printer", "printer", "in", "request", -400, from_address="teacher3@school.test"),
    _message("again", "again", "in", "request", 6, from_address="teacher3@school.test",
             thread_reason="subject_tag"),
    ("attachments", "png", {"message_id": Ref("messages", "request"), "filename": "no signal.png",
                            "content_type": "image/png", "size": len(_PNG),
                            "sha256": hashlib.sha256(_PNG).hexdigest(),
                            "content_id": "<img1@school.test>"}),
    ("attachments", "pdf", {"message_id": Ref("messages", "grades"), "filename": "Fehler.pdf",
                            "content_type": "application/pdf", "size": len(_NOISE),
                            "sha256": hashlib.sha256(_NOISE).hexdigest(), "content_id": ""}),
    _outbox("ack", "sent", "projector", "ack", sent_at=at(0.02)),
    _outbox("queued", "queued", "grades", None, attempts=0, body_text="Hallo,\n\nwir haben …",
            body_html="<p>Hallo,</p><p>wir haben …</p>"),
    _outbox("failed", "failed", "password", None, kind="notification",
            last_error="550 5.1.1 <tech9@school.test>: user unknown"),
    _outbox("suppressed", "suppressed", "again", None, attempts=0,
            last_error="rate limit: 10 automatic mails in 1 h to teacher3@school.test"),
    _outbox("bounced", "bounced", "printer", "printer", kind="survey", sent_at=at(-200),
            last_error="bounced: 552 mailbox full"),
    _outbox("alert", "queued", None, None, kind="alert", attempts=3,
            last_error="451 4.7.1 try again later", next_attempt_at=at(2)),
    ("ticket_events", "created", {"ticket_id": Ref("tickets", "projector"), "at": at(0),
                                  "actor": "teacher1@school.test", "action": "created",
                                  "detail": ""}),
    ("ticket_events", "cc", {"ticket_id": Ref("tickets", "projector"), "at": at(0),
                             "actor": "teacher1@school.test", "action": "participant_added",
                             "detail": "teacher2@school.test"}),
    ("ticket_events", "status", {"ticket_id": Ref("tickets", "printer"), "at": at(-200),
                                 "actor": "system", "action": "status",
                                 "detail": "resolved -> closed"}),
    ("mailbox_state", "inbox", {"account": "help@school.test@imap.school.test:993",
                                "folder": "INBOX", "uidvalidity": 3_000_000_001,
                                "last_uid": 4315, "updated_at": at(1)}),
    ("suppressions", "full", {"address": "teacher9@school.test", "until": at(72),
                              "reason": "552 mailbox full", "created_at": at(-200)}),
    ("jobs", "reminder", {"kind": "reminder", "ticket_id": Ref("tickets", "grades"),
                          "due_at": at(74), "created_at": at(2), "done_at": None,
                          "cancelled_at": None, "result": ""}),
    ("jobs", "resolve", {"kind": "auto_resolve", "ticket_id": Ref("tickets", "password"),
                         "due_at": at(5), "created_at": at(3), "done_at": at(5),
                         "cancelled_at": None, "result": "resolved"}),
    ("jobs", "close", {"kind": "auto_close", "ticket_id": Ref("tickets", "projector"),
                       "due_at": at(200), "created_at": at(0), "done_at": None,
                       "cancelled_at": at(1), "result": "reopened"}),
    ("jobs", "survey", {"kind": "survey", "ticket_id": Ref("tickets", "printer"),
                        "due_at": at(-390), "created_at": at(-390), "done_at": at(-390),
                        "cancelled_at": None, "result": "sent"}),
    ("surveys", "printer", {"ticket_id": Ref("tickets", "printer"), "token": "A" * 43,
                            "sent_at": at(-390), "rating": 5, "comment": "Schnell – danke!",
                            "answered_at": at(-380), "answered_via": "web"}),
    ("surveys", "password", {"ticket_id": Ref("tickets", "password"), "token": "B" * 43,
                             "sent_at": at(5), "rating": None, "comment": "",
                             "answered_at": None, "answered_via": ""}),
    ("alerts", "template", {"key": "template:ack.html.j2", "sent_at": at(3),
                            "detail": "ack.html.j2 line 4: unexpected '}'"}),
    ("periodic_mail", "queue", {"kind": "queue_digest", "recipient": "tech1@school.test",
                                "due_at": at(24), "done_at": at(24.01),
                                "message_id": "<queue.0.mailhelp.x@school.test>",
                                "result": "sent: 2 tickets"}),
    ("periodic_mail", "empty", {"kind": "queue_digest", "recipient": "tech2@school.test",
                                "due_at": at(24), "done_at": at(24.01), "message_id": None,
                                "result": "nothing in the queue"}),
]

# Where a column that a migration dropped went: (table, column) -> (table, key column, column).
MOVED = {("raw_messages", "raw"): ("raw_message_bodies", "raw_id", "raw")}


def fill(connection: Connection) -> dict[Ref, Any]:
    """Write ROWS into the tables the database has now; return each row's primary key."""
    metadata = MetaData()
    metadata.reflect(connection)
    keys: dict[Ref, Any] = {}
    for table_name, name, values in ROWS:
        table = metadata.tables.get(table_name)
        if table is None:
            continue
        row = {column: keys[value] if isinstance(value, Ref) else value
               for column, value in values.items() if column in table.c}
        result = connection.execute(table.insert().values(row))
        keys[Ref(table_name, name)] = result.inserted_primary_key[0]
    return keys


Snapshot = dict[str, dict[tuple, dict[str, Any]]]


def snapshot(connection: Connection) -> Snapshot:
    """Every row of every table, by primary key."""
    metadata = MetaData()
    metadata.reflect(connection)
    tables: Snapshot = {}
    for table in metadata.sorted_tables:
        if table.name == "alembic_version":
            continue
        key = [column.name for column in table.primary_key.columns]
        rows = connection.execute(select(table)).mappings().all()
        tables[table.name] = {tuple(row[k] for k in key): {c: _plain(v) for c, v in row.items()}
                              for row in rows}
    return tables


def uncovered(tables: Snapshot) -> list[str]:
    """Tables without a row, and columns without a value in any row."""
    missing = []
    for name, rows in tables.items():
        if not rows:
            missing.append(name)
            continue
        columns = next(iter(rows.values())).keys()
        missing += [f"{name}.{column}" for column in columns
                    if all(row[column] is None for row in rows.values())]
    return missing


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What an upgrade lost or altered of the rows ``before`` had."""
    lost = []
    for name, rows in before.items():
        if name not in after:
            lost.append(f"table {name} is gone with its {len(rows)} rows")
            continue
        if set(after[name]) != set(rows):
            lost.append(f"{name}: rows {sorted(rows)} became {sorted(after[name])}")
            continue
        for key, row in rows.items():
            now = after[name][key]
            for column, value in row.items():
                if column in now:
                    if now[column] != value:
                        lost.append(f"{name} {key} {column}: {value!r:.60} -> {now[column]!r:.60}")
                    continue
                moved = MOVED.get((name, column))
                if moved is None:
                    lost.append(f"{name}.{column} dropped, and MOVED does not say where to")
                    continue
                table, key_column, target = moved
                found = [row[target] for row in after.get(table, {}).values()
                         if row[key_column] == key[0]]
                if found != [value]:
                    lost.append(f"{name} {key} {column}: not found in {table}.{target}")
    return lost


def dangling(connection: Connection) -> list[str]:
    """Foreign keys whose row is not there, on either database."""
    metadata = MetaData()
    metadata.reflect(connection)
    found = []
    for table in metadata.sorted_tables:
        for fk in table.foreign_keys:
            child, parent = fk.parent, fk.column
            count = connection.execute(
                select(func.count()).select_from(table).where(
                    child.is_not(None), child.not_in(select(parent)))).scalar()
            if count:
                found.append(f"{table.name}.{child.name} -> {parent.table.name}: {count} rows")
    return found


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value
