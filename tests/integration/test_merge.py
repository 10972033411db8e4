"""Merging tickets over real Dovecot and SMTP (issue 19): ``tickets merge A B`` and
``#merge N`` by mail; afterwards every way of writing about B (a reply to its
acknowledgement, its tag alone, its plus address, an answer to its survey) lands on A, B
says where it went and is listed only when asked for, its requester is told once, and
someone outside both tickets who uses B's tag still gets a ticket of their own."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests import mailclients
from tests.helpers import mailhelp
from tests.integration.test_conversations import BOB, HELP, JANE, TECH1, parsed, plain
from tests.integration.test_team import _desk

pytestmark = pytest.mark.integration

TEACHER1, TEACHER2, TECH1_ADDRESS = ("teacher1@school.test", "teacher2@school.test",
                                     "tech1@school.test")


def _messages_from(ticket: dict, sender: str) -> list[dict]:
    return [m for m in ticket["messages"] if m["from"] == sender and m["direction"] == "in"]


def test_tickets_merge_moves_b_into_a_and_mail_on_b_lands_on_a(tmp_path, database_url, mail):
    desk = _desk(tmp_path, database_url, mail)
    desk.open_ticket(JANE, "Projector in room 12")
    bob_ack, _ = desk.open_ticket(BOB, "Beamer room 12 dark")
    done = mailhelp(desk.config, "tickets", "merge", "1", "2")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "ticket #2 merged into #1\n"
    # Bob is told once, in his thread of #2, that it goes on as #1; Jane hears nothing.
    notice = parsed(desk.inbox(TEACHER2, 2)[-1])
    assert notice["Subject"] == ("[#1] Your request #2 continues as #1: "
                                 "Projector in room 12")
    assert notice["In-Reply-To"] == parsed(bob_ack)["Message-ID"]
    assert '"Beamer room 12 dark"' in plain(notice.as_bytes())
    assert desk.sent_to(TEACHER1) == ["ack"]
    merged = desk.ticket(2)
    assert (merged["status"], merged["merged_into"], merged["messages"]) == ("closed", 1, [])
    shown = mailhelp(desk.config, "tickets", "show", "2").stdout.decode()
    assert "merged into #1" in shown
    survivor = desk.ticket(1)
    assert survivor["participants"] == [TEACHER2] and survivor["merged_into"] is None
    assert [m["subject"] for m in _messages_from(survivor, TEACHER2)] == ["Beamer room 12 dark"]

    # A reply to B's acknowledgement (In-Reply-To its Message-ID, [#2] in the subject).
    desk.send(mailclients.gmail(bob_ack, BOB, "It smells of burnt dust now."))
    # Outlook: no threading headers, only the tag.
    desk.send(mailclients.outlook(bob_ack, BOB, "The fan is loud, too."))
    # B's plus address, with a subject of its own.
    desk.send(mailclients.new_message(BOB, "Room 12", "Any news?", to="help+2@school.test"))
    survivor = desk.ticket(1)
    replies = _messages_from(survivor, TEACHER2)[1:]
    assert [(m["thread_reason"], m["text"].splitlines()[0]) for m in replies] == [
        ("references", "It smells of burnt dust now."),
        ("subject_tag", "The fan is loud, too."),
        ("plus_address", "Any news?")]
    # No new ticket (#2, merged, is listed only with --status merged).
    assert survivor["status"] == "open" and [t["id"] for t in desk.tickets()] == [1]
    assert desk.ticket(2)["messages"] == []
    # Staff hear of each reply as news on #1.
    assert "Any news?" in plain(desk.last(TECH1_ADDRESS))
    assert parsed(desk.last(TECH1_ADDRESS))["Subject"].startswith("[#1]")

    # Refused, in one line, with nothing changed.
    for args, error in ((("1", "1"), "cannot merge ticket #1 into itself"),
                        (("1", "9"), "no ticket #9"),
                        (("2", "1"), "ticket #2 was merged into #1; merge into #1 instead"),
                        (("set", "2", "--priority", "high"),
                         "ticket 2 was merged into #1; change #1 instead")):
        command = ("tickets", *args) if args[0] == "set" else ("tickets", "merge", *args)
        refused = mailhelp(desk.config, *command)
        assert (refused.returncode, refused.stderr.decode()) == (1, f"mailhelp: {error}\n")
    assert desk.ticket(2)["priority"] == "normal"

    # B is part of A now: listed and exported only when asked for, still naming A.
    assert [t["id"] for t in desk.tickets()] == [1]
    assert _listed(desk, "--status", "closed") == []
    assert _listed(desk, "--status", "merged") == [2]
    assert _listed(desk, "--status", "merged", "--status", "open") == [1, 2]
    assert _listed(desk, "--search", "Beamer") == [1]  # B's words are on A now
    piped = mailhelp(desk.config, "tickets", "list").stdout.decode().splitlines()
    assert [line.split("\t")[0] for line in piped] == ["id", "1"]
    exported = mailhelp(desk.config, "tickets", "export", "--format", "csv", "--status",
                        "merged").stdout.decode()
    [row] = csv.DictReader(io.StringIO(exported))
    assert (row["id"], row["status"], row["merged_into"]) == ("2", "closed", "1")


def _listed(desk, *filters: str) -> list[int]:
    done = mailhelp(desk.config, "tickets", "list", "--json", *filters)
    assert done.returncode == 0, done.stderr.decode()
    return [t["id"] for t in json.loads(done.stdout)]


def _arrive_at(desk, raw: bytes | None, at: datetime) -> None:
    """Mail (if any) lands in the help mailbox, and mailhelp runs once at ``at``."""
    if raw is not None:
        client = desk.mail.imap(HELP)
        try:
            client.append("INBOX", raw)
        finally:
            client.logout()
    done = mailhelp(desk.config, "run", "--once", "--now", at.isoformat())
    assert done.returncode == 0 and b"0 failed" in done.stdout, done.stderr.decode()


def test_an_answer_to_the_merged_tickets_survey_lands_on_the_survivor(tmp_path,
                                                                      database_url, mail):
    desk = _desk(tmp_path, database_url, mail)
    desk.open_ticket(JANE, "Projector in room 12")
    _, note = desk.open_ticket(BOB, "Beamer room 12 dark")
    desk.send(mailclients.gmail(note, TECH1, "#resolve\n\nThe lamp was loose."))
    start = datetime.now(UTC)
    _arrive_at(desk, None, start + timedelta(hours=2))  # [survey] delay: 1h
    [survey] = [m for m in desk.inbox(TEACHER2, 4) if "How did we do?" in parsed(m)["Subject"]]
    assert parsed(survey)["Subject"].startswith("[#2]")
    assert mailhelp(desk.config, "tickets", "merge", "1", "2").returncode == 0
    desk.inbox(TEACHER2, 5)  # the notice that #2 goes on as #1

    # Bob rates the fix of #2 by the survey's mailto link, after the merge.
    _arrive_at(desk, mailclients.mailto_link(survey, BOB, "4 - Good"), start + timedelta(hours=3))
    # The rating is #2's survey's; the answer is kept on #1, where the request went on.
    assert desk.ticket(2)["survey"]["rating"] == 4 and desk.ticket(2)["messages"] == []
    survivor = desk.ticket(1)
    assert [m["kind"] for m in _messages_from(survivor, TEACHER2)] == [
        "request", "survey_response"]
    assert survivor["status"] == "new" and survivor["survey"] is None
    # Bob, who was asked, is thanked under #1; Jane hears nothing of it.
    thanks = parsed(desk.inbox(TEACHER2, 6)[-1])
    assert thanks["Subject"] == "[#1] Thank you for your rating"
    assert desk.sent_to(TEACHER1) == ["ack"]


def test_merge_by_mail_and_a_stranger_using_the_merged_tag(tmp_path, database_url, mail):
    desk = _desk(tmp_path, database_url, mail)
    desk.open_ticket(BOB, "Projector in room 12")
    bob_ack, note = desk.open_ticket(BOB, "Projector still dark")
    # A wrong number gets the usual command-error reply, and changes nothing.
    desk.send(mailclients.gmail(note, TECH1, "#merge 9"))
    error = plain(desk.inbox(TECH1_ADDRESS, 3)[-1])
    assert "#merge 9: no ticket #9" in error and "#merge N" in error
    assert desk.ticket(2)["merged_into"] is None
    desk.send(mailclients.gmail(note, TECH1, "#merge 1\n\nBob, this is your first "
                                "request again; I'll come by at 10."))
    assert desk.ticket(2)["merged_into"] == 1
    survivor = desk.ticket(1)
    [answer] = [m for m in survivor["messages"] if m["kind"] == "staff_reply"]
    assert answer["text"].startswith("Bob, this is your first request again")
    # Bob gets the notice that #2 goes on as #1, then the answer (on #1).
    notice, relay = (parsed(m) for m in desk.inbox(TEACHER2, 4)[-2:])
    assert relay["Subject"].startswith("[#1]") and "come by at 10" in plain(relay.as_bytes())
    assert notice["Subject"].startswith("[#1] Your request #2 continues as #1")
    desk.send(mailclients.gmail(bob_ack, BOB, "Thanks, I'll be in the room."))
    assert _messages_from(desk.ticket(1), TEACHER2)[-1]["text"].startswith(
        "Thanks, I'll be in the room.")
    # Jane is on neither ticket: B's tag makes her a ticket of her own, and nothing of
    # Bob's tickets reaches her.
    desk.send(mailclients.new_message(JANE, "Re: [#2] Projector still dark",
                                      "Mine is dark too."))
    assert [t["id"] for t in desk.tickets()] == [1, 3]  # (#2, merged, is part of #1)
    assert desk.ticket(3)["requester"] == TEACHER1
    [ack] = desk.inbox(TEACHER1, 1)
    assert parsed(ack)["Subject"].startswith("[#3]")
    assert "come by at 10" not in plain(ack) and "Bob" not in plain(ack)
    assert all(m["from"] != TEACHER1 for m in desk.ticket(1)["messages"])
