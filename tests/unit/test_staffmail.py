"""Who among the staff gets a note or a copy of an answer (staffmail._other_staff)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mailhelp.desk.staffmail import _other_staff

STAFF = SimpleNamespace(staff=SimpleNamespace(
    addresses=("tech1@school.test", "tech2@school.test", "tech3@school.test")))


@pytest.mark.parametrize(("to", "assignee", "writer", "expected"), [
    ("all", "", "tech1@school.test", ["tech2@school.test", "tech3@school.test"]),
    ("all", "tech2@school.test", "tech2@school.test", ["tech1@school.test", "tech3@school.test"]),
    ("assignee", "tech2@school.test", "tech1@school.test", ["tech2@school.test"]),
    ("assignee", "tech2@school.test", "tech2@school.test", []),  # nobody writes to themselves
    ("assignee", "", "tech1@school.test", ["tech2@school.test", "tech3@school.test"]),
    ("none", "tech2@school.test", "tech1@school.test", []),
])
def test_recipients(to, assignee, writer, expected):
    assert _other_staff(STAFF, assignee, writer, to) == expected
