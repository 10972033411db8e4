from __future__ import annotations

import pytest

from mailhelp.desk.commands import parse, usage


def test_commands_on_the_first_lines_are_taken_and_removed():
    parsed = parse("\n#resolve\n#priority HIGH\n#cc <teacher2@school.test>\n\nAll done.\n#x")
    assert [(c.name, c.argument) for c in parsed.commands] == [
        ("resolve", ""), ("priority", "HIGH"), ("cc", "<teacher2@school.test>")]
    assert parsed.text == "All done.\n#x"
    assert not parsed.error and not parsed.internal


def test_text_first_means_no_commands():
    parsed = parse("Hello\n#resolve")
    assert parsed.commands == () and parsed.text == "Hello\n#resolve"


def test_note_makes_the_message_internal():
    assert parse("#note\nordered a lamp").internal


@pytest.mark.parametrize(("text", "error"), [
    ("#asign tech2@school.test", "#asign tech2@school.test: unknown command"),
    ("#assign", "#assign: #assign needs an email address"),
    ("#assign tech2", "#assign tech2: #assign needs an email address"),
    ("#priority soon", "#priority soon: #priority needs one of low, normal, high, urgent"),
    ("#resolve now", "#resolve now: #resolve takes no argument"),
    ("#pending\n#bogus\nhi", "#bogus: unknown command"),
])
def test_bad_lines_are_named(text, error):
    parsed = parse(text)
    assert parsed.error == error and parsed.text == ""


def test_usage_lists_every_command():
    lines = "\n".join(usage())
    for name in ("#resolve", "#close", "#pending", "#open", "#assign ADDRESS", "#priority LEVEL",
                 "#note", "#cc ADDRESS", "#uncc ADDRESS"):
        assert name in lines
