from __future__ import annotations

import pytest

from mailhelp.desk.commands import Effects, Env, parse, run, usage


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
    ("#take tech2@school.test", "#take tech2@school.test: #take takes no argument"),
    ("#pending\n#bogus\nhi", "#bogus: unknown command"),
])
def test_bad_lines_are_named(text, error):
    parsed = parse(text)
    assert parsed.error == error and parsed.text == ""


def test_usage_lists_every_command():
    lines = "\n".join(usage())
    for name in ("#resolve", "#close", "#pending", "#open", "#assign ADDRESS", "#priority LEVEL",
                 "#note", "#cc ADDRESS", "#uncc ADDRESS", "#take"):
        assert name in lines


def _env(actor: str, assigned: list[str]) -> Env:
    staff = {"tech1@school.test", "tech2@school.test"}
    return Env(tx=None, ticket=None, actor=actor, now=None, is_staff=staff.__contains__,
               set_status=lambda _status: None, add_participant=lambda _a: None,
               remove_participant=lambda _a: False, assign=assigned.append)


def test_assign_names_the_assignee_to_send_the_ticket_to():
    assigned: list[str] = []
    effects = Effects()
    [command] = parse("#assign <Tech2@School.test>").commands
    assert run(command, _env("tech1@school.test", assigned), effects) == ""
    assert assigned == ["tech2@school.test"] and effects.assigned == "tech2@school.test"


def test_assigning_yourself_sends_nothing():
    assigned: list[str] = []
    effects = Effects()
    [command] = parse("#assign tech1@school.test").commands
    run(command, _env("tech1@school.test", assigned), effects)
    assert assigned == ["tech1@school.test"] and effects.assigned == ""


def test_take_assigns_the_writer_without_mail():
    assigned: list[str] = []
    effects = Effects()
    [command] = parse("#take\nOn my way.").commands
    assert run(command, _env("tech2@school.test", assigned), effects) == ""
    assert assigned == ["tech2@school.test"] and effects.assigned == ""
    assert effects.changes == ["assigned to tech2@school.test"]


def test_take_by_someone_not_staff_is_refused():
    assigned: list[str] = []
    [command] = parse("#take").commands
    problem = run(command, _env("teacher1@school.test", assigned), Effects())
    assert "not a staff address" in problem and assigned == []
