"""Finding 4: a forged bounce silences no one (issue 15)."""

from __future__ import annotations

import email
import email.policy

from mailhelp.db.models import Message, Outbox, Suppression
from mailhelp.mail import signing
from tests.helpers import mail_of
from tests.security.desk import mail


def dsn(to: str, failed: list[str], quoted_headers: str, extra: str = "") -> bytes:
    finals = "\n".join(f"Final-Recipient: rfc822; {a}\nAction: failed\nStatus: 5.1.1\n"
                       for a in failed)
    return (f"From: MAILER-DAEMON@mx.attacker.test\nTo: {to}\n{extra}"
            "Subject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn@attacker.test>\n"
            "MIME-Version: 1.0\nContent-Type: multipart/report; "
            'report-type=delivery-status; boundary="B"\n\n--B\nContent-Type: text/plain\n\n'
            "Your message could not be delivered. Call +1 555 0100 to restore your mail.\n"
            f"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n{finals}\n"
            f"--B\nContent-Type: text/rfc822-headers\n\n{quoted_headers}\n--B--\n").encode()


def test_a_forged_bounce_changes_nothing(make_desk):
    desk = make_desk()
    desk.send(mail())
    desk.send(mail(sender="teacher2@school.test", subject="Beamer"))
    failed = ["teacher1@school.test", "teacher2@school.test"]
    made_up = ("From: help@school.test\nTo: teacher1@school.test\n"
               "Message-ID: <0.0.0.mailhelp.t1@school.test>\nSubject: [#1] Printer jam")
    result = desk.send(dsn("help@school.test", failed, made_up,
                           extra=f"X-Failed-Recipients: {', '.join(failed * 1000)}\n"))
    assert result.state == "ignored"
    assert desk.rows(Suppression) == []
    assert desk.rows(Message, Message.kind == "bounce") == []
    assert all(row.status == "queued" for row in desk.rows(Outbox))


def test_a_bounce_to_a_return_path_we_did_not_sign_changes_nothing(make_desk):
    desk = make_desk()
    desk.send(mail())
    [ack] = desk.rows(Outbox, Outbox.kind == "ack")
    forged = ack.mail_from[:-len("@school.test")][:-4] + "0000@school.test"  # a bad MAC
    result = desk.send(dsn(forged, ["teacher1@school.test"], "Subject: x"))
    assert result.state == "ignored" and desk.rows(Suppression) == []


def test_a_real_bounce_through_the_signed_return_path_is_recorded(make_desk):
    desk = make_desk()
    desk.send(mail(sender="gone@school.test"))
    [ack] = desk.rows(Outbox, Outbox.kind == "ack")
    assert ack.mail_from.startswith("help+bounce-") and ack.mail_from.endswith("@school.test")
    # Quoting nothing of ours: the return path alone names the mail. A recipient the mail
    # did not go to is not believed.
    result = desk.send(dsn(ack.mail_from, ["gone@school.test", "teacher1@school.test"],
                           "Subject: something else"))
    assert result.outcome.action == "recorded" and result.outcome.ticket_id == 1
    assert [s.address for s in desk.rows(Suppression)] == ["gone@school.test"]
    assert desk.rows(Outbox, Outbox.id == ack.id)[0].status == "bounced"


def test_a_real_bounce_quoting_our_signed_message_id_is_recorded(make_desk):
    desk = make_desk()
    desk.send(mail(sender="gone@school.test"))
    [ack] = desk.rows(Outbox, Outbox.kind == "ack")
    sent = email.message_from_bytes(mail_of(ack), policy=email.policy.default)
    quoted = f"From: help@school.test\nTo: gone@school.test\nMessage-ID: {sent['Message-ID']}"
    result = desk.send(dsn("help@school.test", ["gone@school.test"], quoted))
    assert result.outcome.action == "recorded"
    assert [s.address for s in desk.rows(Suppression)] == ["gone@school.test"]


def test_message_ids_are_unguessable_and_signed():
    key = b"k" * 32
    ids = {signing.message_id(key, 7, "school.test") for _ in range(100)}
    assert len(ids) == 100
    for value in ids:
        assert signing.signed_ticket(key, value) == 7
        assert signing.signed_ticket(b"x" * 32, value) is None
        tampered = value.replace(".mailhelp.t7@", ".mailhelp.t8@")
        assert signing.signed_ticket(key, tampered) is None
        path = signing.return_path("help@school.test", value)
        assert signing.returned_message_id(key, path, "help@school.test") == value


def test_a_large_forged_bounce_is_not_read(make_desk):
    # flufl.bounce reads about 2 MB a second: a bounce that names nothing we sent is
    # dropped before it is read.
    import time

    desk = make_desk()
    desk.send(mail())
    body = "x" * 76 + "\n"
    huge = dsn("help@school.test", ["teacher1@school.test"], "Subject: x",
               extra="X-Failed-Recipients: teacher1@school.test\n").replace(
        b"--B--", (body * 70_000).encode() + b"--B--")
    started = time.process_time()  # the CPU it holds, whatever else the machine does
    result = desk.send(huge)
    assert time.process_time() - started < 2
    assert result.state == "ignored" and desk.rows(Suppression) == []


def test_a_bounce_of_the_outsider_answer_rests_that_address(make_desk):
    desk = make_desk('[helpdesk]\nrequester_domains = ["school.test"]\n')
    desk.send(mail(sender="gone@gmail.test", subject="Hello"))
    [answer] = desk.rows(Outbox, Outbox.kind == "outsider")
    result = desk.send(dsn(answer.mail_from, ["gone@gmail.test"], "Subject: x"))
    assert result.state == "ignored" and "without a ticket" in result.outcome.detail
    assert [s.address for s in desk.rows(Suppression)] == ["gone@gmail.test"]
    assert desk.rows(Outbox, Outbox.id == answer.id)[0].status == "bounced"
