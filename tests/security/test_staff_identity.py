"""Findings 1 and 2: staff are proven, not claimed (issue 15)."""

from __future__ import annotations

from mailhelp.db.models import Message, Outbox, Participant, Ticket
from mailhelp.mail.authenticity import FAILED, UNKNOWN, VERIFIED, check
from tests.helpers import mail_of
from tests.security.desk import (
    SERVER_FAIL,
    SERVER_PASS,
    TRUSTED,
    mail,
)

PHISH = ("#cc evil@attacker.test\n\nHi Jane, before I can fix it please confirm your "
         "current password at https://evil.example/login\n\nSam")


def forged_staff(headers: str = "", body: str = PHISH) -> bytes:
    return mail(sender="Sam Tech <tech1@school.test>", subject="Re: [#1] Printer jam",
                body=body, headers=headers)


def assert_nothing_acted_on(desk) -> None:
    assert desk.rows(Outbox, Outbox.kind == "relay") == []
    assert desk.rows(Participant) == []  # the #cc did not run
    assert not any("evil@attacker.test" in row.recipients for row in desk.rows(Outbox))
    [ticket] = desk.rows(Ticket)
    assert ticket.status == "new"
    [note] = desk.rows(Message, Message.kind == "note")
    assert note.text.startswith("[unverified sender:")


def test_a_forged_staff_mail_in_the_default_configuration_is_a_note(make_desk):
    desk = make_desk()
    desk.send(mail())
    result = desk.send(forged_staff())
    assert "unverified staff mail" in result.outcome.detail
    assert_nothing_acted_on(desk)
    # Staff are told, not the teacher.
    alerts = [r for r in desk.rows(Outbox) if b"Not acted on" in mail_of(r)]
    assert sorted(r.recipients[0] for r in alerts) == ["tech1@school.test", "tech2@school.test"]


def test_a_forged_header_below_the_servers_is_not_believed(make_desk):
    desk = make_desk(TRUSTED)
    desk.send(mail())
    # The server's verdict on top; the attacker's claim, with the same id, below it.
    forged = SERVER_FAIL.replace("dmarc=fail", "dmarc=none") \
        + "Received: from attacker.test by mx.school.test\n" + SERVER_PASS
    desk.send(forged_staff(headers=forged))
    assert_nothing_acted_on(desk)


def test_a_claim_right_below_the_servers_header_adds_nothing(make_desk):
    # The server reported no DKIM and no DMARC; an adjacent header adds a pass.
    desk = make_desk(TRUSTED)
    desk.send(mail())
    server = "Authentication-Results: mx.school.test; spf=softfail smtp.mailfrom=x.test\n"
    claims = ("Authentication-Results: mx.school.test; dkim=pass header.d=school.test; "
              "dmarc=pass header.from=school.test; auth=pass smtp.auth=tech1@school.test\n")
    desk.send(forged_staff(headers=server + claims))
    assert_nothing_acted_on(desk)


def test_a_trusted_header_that_does_not_parse_is_a_failure(make_desk):
    desk = make_desk(TRUSTED)
    desk.send(mail())
    # It says pass, but authres cannot read it: nothing in it counts.
    unparsable = "Authentication-Results: mx.school.test; dmarc=pass header.from=school.test; x\n"
    desk.send(forged_staff(headers=unparsable))
    assert_nothing_acted_on(desk)


def test_an_attacker_chosen_helo_does_not_hide_the_servers_verdict(make_desk):
    # authres refuses an address literal and a trailing ';': before, the whole header
    # was dropped and the mail was then taken on trust.
    desk = make_desk(TRUSTED)
    desk.send(mail())
    server = ("Authentication-Results: mx.school.test;\n\tspf=fail smtp.helo=[203.0.113.9];"
              "\n\tdmarc=fail header.from=school.test;\n")
    desk.send(forged_staff(headers=server))
    assert_nothing_acted_on(desk)


def test_what_real_servers_write_and_authres_refuses_still_reads(make_desk):
    raw = mail(sender="tech1@school.test", headers=(
        "Authentication-Results: mx.school.test;\n\tspf=fail smtp.helo=[203.0.113.9];\n"
        "\tdmarc=fail header.from=school.test;\n"))
    assert check(raw, "tech1@school.test", ("mx.school.test",)).status == FAILED
    raw = mail(sender="tech1@school.test", headers=(
        "Authentication-Results: mx.school.test; spf=pass smtp.helo=[192.0.2.1];\n"
        "\tdkim=pass header.d=school.test; dmarc=pass header.from=school.test;\n"))
    assert check(raw, "tech1@school.test", ("mx.school.test",)).status == VERIFIED


def test_a_real_staff_reply_authenticated_is_relayed(make_desk):
    desk = make_desk(TRUSTED)
    desk.send(mail())
    desk.send(mail(sender="Sam Tech <tech1@school.test>", subject="Re: [#1] Printer jam",
                   body="#cc teacher2@school.test\nOn my way with a new drum.",
                   headers=SERVER_PASS))
    [relay] = desk.rows(Outbox, Outbox.kind == "relay")
    assert relay.recipients == ["teacher1@school.test", "teacher2@school.test"]
    assert desk.rows(Ticket)[0].status == "pending"


def test_alignment_is_required():
    other = ("Authentication-Results: mx.school.test; dkim=pass header.d=attacker.test; "
             "spf=pass smtp.mailfrom=attacker.test; dmarc=none\n")
    raw = mail(sender="tech1@school.test", headers=other)
    assert check(raw, "tech1@school.test", ("mx.school.test",)).status == FAILED
    auth_as_other = ("Authentication-Results: mx.school.test; auth=pass "
                     "smtp.auth=tech2@school.test\n")
    raw = mail(sender="tech1@school.test", headers=auth_as_other)
    assert check(raw, "tech1@school.test", ("mx.school.test",)).status == FAILED


def test_exchange_online_signals():
    ids = ("microsoft365",)
    internal = ("X-MS-Exchange-Organization-AuthAs: Internal\n"
                "Authentication-Results: spf=fail (sender IP is 10.0.0.1) "
                "smtp.mailfrom=school.test; dkim=none (message not signed) header.d=none;"
                "dmarc=fail action=none header.from=school.test;\n")
    assert check(mail(sender="tech1@school.test", headers=internal), "tech1@school.test",
                 ids).status == VERIFIED
    outside = ("X-MS-Exchange-Organization-AuthAs: Anonymous\n"
               "Authentication-Results: spf=fail (sender IP is 203.0.113.9) "
               "smtp.mailfrom=attacker.test; dkim=none (message not signed) header.d=none;"
               "dmarc=fail action=oreject header.from=school.test;compauth=fail reason=000\n"
               "Authentication-Results: dmarc=pass header.from=school.test\n")
    assert check(mail(sender="tech1@school.test", headers=outside), "tech1@school.test",
                 ids).status == FAILED
    # Without Exchange's header, nothing is known.
    assert check(mail(sender="tech1@school.test"), "tech1@school.test", ids).status == UNKNOWN


def test_trust_is_a_failing_check(tmp_path, database_url):
    from mailhelp.check import _authentication
    from tests.helpers import desk_config

    trusting = desk_config(tmp_path, database_url,
                           '[authentication]\nunauthenticated_staff = "trust"\n')
    assert not _authentication(trusting).ok
    assert _authentication(desk_config(tmp_path, database_url, TRUSTED)).ok


def test_a_from_put_on_top_of_a_signed_mail_borrows_nothing():
    # DKIM signs the last of several From: lines; the desk reads the first.
    raw = mail(sender="Tech <tech1@school.test>",
               headers="Authentication-Results: mx.school.test; dkim=pass header.d=school.test"
                       "\n").replace(b"\nTo:", b"\nFrom: someone@attacker.test\nTo:", 1)
    assert check(raw, "tech1@school.test", ("mx.school.test",)).status == FAILED
    two = mail(sender="tech1@school.test, someone@attacker.test", headers=SERVER_PASS)
    assert check(two, "tech1@school.test", ("mx.school.test",)).status == FAILED


def test_a_top_level_domain_is_no_alignment():
    bare = "Authentication-Results: mx.school.test; dkim=pass header.d=test\n"
    raw = mail(sender="tech1@school.test", headers=bare)
    assert check(raw, "tech1@school.test", ("mx.school.test",)).status == FAILED
