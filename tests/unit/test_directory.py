"""directory.py: the district's CSV as exports write it, read again when it changes."""

from __future__ import annotations

import logging
import os

import pytest

from mailhelp import config as config_module
from mailhelp import directory
from mailhelp.check import _directory
from mailhelp.directory import Directory, DirectoryError, parse, path_of, read


def people(text: str) -> dict[str, tuple[str, str, str, str]]:
    return {email: (p.name, p.school, p.room, p.role)
            for email, p in parse(text).people.items()}


def test_columns_in_any_order_and_case_extra_ones_ignored():
    text = ("Room,SCHOOL,Employee ID,Name,E-Mail,Role\r\n"
            "12,Lincoln Elementary,881,Jane Teacher,Jane@School.test,teacher\r\n")
    assert people(text) == {"jane@school.test": ("Jane Teacher", "Lincoln Elementary",
                                                 "12", "teacher")}


def test_google_admin_and_active_directory_headers():
    google = ("First Name [Required],Last Name [Required],Email Address [Required],"
              "Org Unit Path [Required],Building\n"
              "Jane,Teacher,jane@school.test,/Staff,Lincoln Elementary\n")
    assert people(google) == {"jane@school.test": ("Jane Teacher", "Lincoln Elementary",
                                                   "", "")}
    ad = ('"displayName","mail","title","site"\n'
          '"Teacher, Jane","jane@school.test","Teacher","Lincoln"\n')
    assert people(ad) == {"jane@school.test": ("Teacher, Jane", "Lincoln", "", "Teacher")}


def test_quoted_fields_blank_lines_bom_and_semicolons(tmp_path):
    path = tmp_path / "staff.csv"
    path.write_bytes("\ufeffemail;name;school\n\n\"a@school.test\";\"O'Brien; Pat\";\"East "
                     "High\"\n;;\n\"b@school.test\";\"Line\nbreak\";West\n".encode())
    reading = read(str(path))
    assert {e: (p.name, p.school) for e, p in reading.people.items()} == {
        "a@school.test": ("O'Brien; Pat", "East High"), "b@school.test": ("Line break", "West")}
    assert reading.problems == ()


def test_utf16_and_windows_1252_exports(tmp_path):
    path = tmp_path / "staff.csv"
    path.write_bytes("email\tname\tschool\r\nm@school.test\tMaría García\tSur\r\n"
                     .encode("utf-16"))
    assert read(str(path)).people["m@school.test"].name == "María García"
    path.write_bytes("email,name,school\r\nm@school.test,María García,Sur\r\n".encode("cp1252"))
    reading = read(str(path))
    assert reading.people["m@school.test"].name == "María García"
    assert reading.problems == ("line 2: not UTF-8; the file was read as Windows-1252",)


def test_bad_rows_are_skipped_each_named_by_its_line():
    reading = parse("email,name,school\n"
                    "good@school.test,Good,East\n"
                    ",No Address,East\n"
                    "not-an-address,Bad,East\n"
                    "good@school.test,Again,West\n"
                    f"long@school.test,{'x' * 201},East\n")
    assert list(reading.people) == ["good@school.test"]
    assert reading.people["good@school.test"].school == "East"
    assert reading.rows == 5
    assert reading.problems == (
        "line 3: no email address", "line 4: 'not-an-address' is not an email address",
        "line 5: good@school.test is on an earlier line too; the first is used",
        "line 6: name longer than 200 characters")


@pytest.mark.parametrize(("text", "error"), [
    ("", "empty"), ("\n\n", "empty"),
    ("name,school\nJane,East\n", "the header has no email column"),
    ("email,phone\na@school.test,1\n", "the header has neither a name nor a school column"),
])
def test_unusable_files_are_refused_whole(text, error):
    with pytest.raises(DirectoryError, match=error):
        parse(text)


def test_too_many_rows_is_refused(monkeypatch):
    monkeypatch.setattr(directory, "MAX_ROWS", 3)
    parse("email,name\n" + "".join(f"p{i}@school.test,P\n" for i in range(3)))
    with pytest.raises(DirectoryError, match="more than 3 rows"):
        parse("email,name\n" + "".join(f"p{i}@school.test,P\n" for i in range(4)))


def test_relative_paths_are_read_from_the_config_files_directory(tmp_path):
    path = tmp_path / "mailhelp.toml"
    path.write_text('[helpdesk]\naddress = "help@school.test"\n[directory]\ncsv = "staff.csv"\n')
    assert path_of(config_module.load(path)) == str(tmp_path / "staff.csv")


def test_read_again_when_the_file_changes_and_the_last_good_copy_kept(tmp_path, monkeypatch,
                                                                      caplog):
    path = tmp_path / "staff.csv"
    path.write_text("email,name,school\na@school.test,A,East\n")
    roster = Directory(str(path))
    assert roster.refresh() and roster.lookup("A@School.test").school == "East"
    assert not roster.refresh()  # unchanged: not read again
    path.write_text("email,name,school\na@school.test,A,Westfield\n")
    assert roster.refresh() and roster.lookup("a@school.test").school == "Westfield"
    monkeypatch.setattr(directory, "MAX_BYTES", 60)
    path.write_text("email,name,school\n" + "b@school.test,B,East\n" * 5)
    with caplog.at_level(logging.ERROR, logger="mailhelp.directory"):
        assert not roster.refresh()
        assert not roster.refresh()  # the same bad file: one line, not one a pass
    assert roster.lookup("a@school.test").school == "Westfield"
    assert roster.lookup("b@school.test") is None
    [line] = [r.getMessage() for r in caplog.records]
    assert "larger than 0 MB" in line and "last good copy (1 people) stays in use" in line
    os.remove(path)
    assert not roster.refresh() and roster.lookup("a@school.test") is not None


def test_check_reports_rows_and_problems(tmp_path):
    path = tmp_path / "staff.csv"
    path.write_text("email,name,school\na@school.test,A,East\nbad,B,East\n")
    config = config_module.loads(f'[helpdesk]\naddress = "help@school.test"\n'
                                 f'[directory]\ncsv = "{path}"\n')
    result = _directory(config)
    assert result.ok and result.warning
    assert result.detail == (f"{path}: 1 people from 2 rows; 1 skipped or doubtful: "
                             "line 3: 'bad' is not an email address")
    os.remove(path)
    result = _directory(config)
    assert not result.ok and "cannot read" in result.detail


@pytest.mark.parametrize(("name", "greeting"), [
    ("García, María", "María"), ("María García", "María"), ("Teacher, Jane Q.", "Jane"),
    ("Smith,", ""), (", Jane", "Jane"), ("Mailbox, full: log in at https://evil.test", "")])
def test_a_directory_name_written_family_name_first_is_greeted_by_the_first_name(name,
                                                                                  greeting):
    from mailhelp.desk.notices import greeting_name

    assert greeting_name(name) == greeting
