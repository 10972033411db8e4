"""subjects.py: is a reply's subject about something other than its ticket's?"""

from __future__ import annotations

import pytest

from mailhelp.desk.subjects import is_new_subject, words

TAG = "#{id}"


@pytest.mark.parametrize(("subject", "ticket", "new"), [
    ("Re: Document camera in 7b dead", "Projector in room 12", True),
    ("Document camera in 7b dead", "Projector in room 12", True),
    ("Re: Projector in room 12", "Projector in room 12", False),
    ("AW: WG: Projektor in Raum 12", "Projektor in Raum 12 defekt", False),
    ("Re: Resolved: Projector in room 12", "Projector in room 12", False),
    ("Re: projector still broken", "Projector in room 12", False),  # shares its topic
    ("Re: [#3] Document camera in 7b dead", "Projector in room 12", False),  # tagged
    ("Re: [Ticket #3] Document camera", "Projector in room 12", False),
    ("Re:", "Projector in room 12", False),
    ("", "Projector in room 12", False),
    ("Document camera", "(no subject)", False),
    ("Document camera", "", False),
])
def test_is_new_subject(subject, ticket, new):
    tag = "Ticket #{id}" if "Ticket" in subject else TAG
    assert is_new_subject(subject, ticket, tag) is new


def test_words_drop_prefixes_tags_and_filler():
    assert words("RE: Fwd: [#12] Help with the printer in Room 4", TAG) == {
        "printer", "room", "4"}


def test_a_long_subject_is_read_from_its_start():
    assert words("x " * 100_000, TAG) == {"x"}
