"""winmail.dat cannot escape the part limits (issue 15).

Every 22 bytes of a winmail.dat became an attachment, and MAX_PARTS was never applied
to them: a 2.9 MB mail took 8.9 s, 460 MB and 100,000 attachment rows, and its reply
queued staff mails of 100,000 MIME parts. Its files now count toward MAX_PARTS with
every other part, and the records past the limit are not read.
"""

from __future__ import annotations

import struct
import time
import tracemalloc

from sqlalchemy import func, select

from mailhelp.db.models import Attachment, Outbox
from mailhelp.mail.parse import MAX_PARTS, parse
from mailhelp.mail.tnef import attachments
from tests.corpus import CORPUS, corpus_rows, skip_without_corpus
from tests.security.desk import mail
from tests.winmail import SIGNATURE, tnef_attribute, tnef_bomb, winmail, with_winmail

BOMB = 130_000  # files of 22 bytes: 2.9 MB


def test_a_winmail_dat_of_130000_files_is_capped_and_quick():
    data = tnef_bomb(BOMB)
    tracemalloc.start()
    started = time.process_time()
    try:
        inbound = parse(with_winmail(data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.process_time() - started < 1
    assert len(inbound.attachments) == MAX_PARTS
    assert "TooManyParts" in inbound.defects
    assert sum(a.size for a in inbound.attachments) <= len(data)
    assert peak < 60_000_000  # the message, decoded once, and little else


def test_its_files_count_with_the_other_parts():
    parts = b"".join(b"--b\nContent-Type: image/png\nContent-Disposition: attachment; "
                     b"filename=\"%d.png\"\n\nx\n" % n for n in range(600))
    raw = with_winmail(tnef_bomb(600)).replace(b"--b\nContent-Type: text/plain", parts
                                                 + b"--b\nContent-Type: text/plain", 1)
    inbound = parse(raw)
    assert len(inbound.attachments) == MAX_PARTS and "TooManyParts" in inbound.defects
    assert [a.filename for a in inbound.attachments[:2]] == ["0.png", "1.png"]


def test_the_reader_stops_at_its_limit():
    assert len(attachments(tnef_bomb(10_000), limit=5)) == 5
    assert attachments(tnef_bomb(10), limit=0) == []


def test_a_property_list_of_a_million_numbers_is_passed_over_quickly():
    count = 700_000  # a multi-valued PT_LONG: 2.8 MB of numbers nobody reads
    props = (struct.pack("<I", 1) + struct.pack("<HH", 0x1003, 0x0E21)
             + struct.pack("<I", count) + b"\x00" * 4 * count)
    data = (SIGNATURE + tnef_attribute(2, 0x00069002, b"")
            + tnef_attribute(2, 0x0006800F, b"data") + tnef_attribute(2, 0x00069005, props))
    started = time.process_time()
    [found] = attachments(data)
    assert time.process_time() - started < 1
    assert (found.filename, found.payload) == ("attachment", b"data")


def test_outlooks_winmail_dat_still_gives_its_files():
    files = [("Stundenplan.pdf", b"%PDF-1.4 plan"), ("error.png", b"\x89PNG data")]
    inbound = parse(with_winmail(winmail(files)))
    assert [(a.filename, a.content_type, a.payload) for a in inbound.attachments] == [
        ("Stundenplan.pdf", "application/pdf", b"%PDF-1.4 plan"),
        ("error.png", "image/png", b"\x89PNG data")]
    assert "TooManyParts" not in inbound.defects


def test_an_attached_outlook_message_gives_its_files_within_the_limit():
    inner = winmail([("inner.txt", b"inside"), ("second.txt", b"more")])
    value = bytes.fromhex("0703020000000000c000000000000046") + inner
    props = (struct.pack("<I", 1) + struct.pack("<HH", 0x000D, 0x3701)
             + struct.pack("<II", 1, len(value)) + value + b"\x00" * (-len(value) % 4))
    outer = (SIGNATURE + tnef_attribute(2, 0x00069002, b"")
             + tnef_attribute(2, 0x00069005, props))
    assert [f.filename for f in attachments(outer)] == ["inner.txt", "second.txt"]
    assert [f.filename for f in attachments(outer, limit=1)] == ["inner.txt"]


def test_winmail_dat_in_the_corpus_reads_as_before():
    rows = [r for r in corpus_rows() if "tnef" in r["tag"].split(",")]
    if not rows:
        skip_without_corpus()
    for row in rows:
        inbound = parse((CORPUS / row["path"]).read_bytes())
        # Amazon WorkMail's bounces carry a winmail.dat of message properties only:
        # no files in it, so it is kept as it came.
        assert [a.filename for a in inbound.attachments][-1] == "winmail.dat"
        assert "TooManyParts" not in inbound.defects


def test_a_tnef_bomb_through_the_pipeline(make_desk):
    desk = make_desk()
    desk.send(mail(message_id="<m1@school.test>"))
    started = time.process_time()
    result = desk.send(with_winmail(tnef_bomb(BOMB)))  # a reply on ticket 1
    assert time.process_time() - started < 2
    assert result.state == "processed" and result.outcome.ticket_id == 1
    with desk.db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Attachment)) == MAX_PARTS
        largest = session.scalar(select(func.max(func.length(Outbox.raw))))
    assert largest < 2_000_000  # the staff notification: a thousand parts at most
