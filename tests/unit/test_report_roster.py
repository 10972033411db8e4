"""`report --by school` from a roster: the schools come from the district directory
([directory] csv) as the requests arrive through `mailhelp ingest`, not from test data
written into the tickets."""

from __future__ import annotations

import csv
import io
import json

from tests.helpers import mailhelp, write_config

ROSTER = ("\ufeffEmail,Name,School,Room\r\n"
          "teacher1@school.test,Jane Teacher,Lincoln Elementary,12\r\n"
          "teacher2@school.test,\"Smith, Bob\",Washington Middle,B4\r\n"
          "teacher3@school.test,Ana Ruiz,Lincoln Elementary,7\r\n")


def request(n: int, sender: str, subject: str) -> bytes:
    return (f"From: {sender}\r\nTo: help@school.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <roster-{n}@school.test>\r\nDate: Mon, 30 Nov 2026 09:00:00 +0000"
            f"\r\n\r\nPlease help with this.\r\n").encode()


def test_report_by_school_counts_what_the_roster_says(tmp_path, database_url):
    (tmp_path / "staff.csv").write_text(ROSTER, encoding="utf-8")
    config = write_config(tmp_path, database_url, extra=(
        f'[directory]\ncsv = "{tmp_path / "staff.csv"}"\n'
        '[[categories]]\nname = "Printers"\nkeywords = ["printer", "toner"]\n'))
    assert mailhelp(config, "init").returncode == 0
    sent = [("teacher1@school.test", "Printer jam in 12"), ("teacher3@school.test", "Toner"),
            ("teacher2@school.test", "Projector dead"), ("teacher1@school.test", "Wifi"),
            ("stranger@school.test", "Printer offline")]  # not in the roster: no school
    files = []
    for n, (sender, subject) in enumerate(sent, 1):
        files.append(tmp_path / f"{n}.eml")
        files[-1].write_bytes(request(n, sender, subject))
    done = mailhelp(config, "ingest", *map(str, files))
    assert done.returncode == 0, done.stderr.decode()

    listed = json.loads(mailhelp(config, "tickets", "list", "--json").stdout)
    assert [(t["school"], t["room"], t["category"]) for t in listed] == [
        ("Lincoln Elementary", "12", "Printers"), ("Lincoln Elementary", "7", "Printers"),
        ("Washington Middle", "B4", ""), ("Lincoln Elementary", "12", ""), ("", "", "Printers")]

    out = mailhelp(config, "report", "--since", "3650d", "--by", "school", "--format", "csv")
    assert out.returncode == 0, out.stderr.decode()
    rows = {r["school"]: r for r in csv.DictReader(io.StringIO(out.stdout.decode()))}
    assert {school: int(r["opened"]) for school, r in rows.items()} == {
        "Lincoln Elementary": 3, "Washington Middle": 1, "(none)": 1, "(total)": 5}
    by_category = json.loads(mailhelp(config, "report", "--since", "3650d", "--by",
                                      "category", "--format", "json").stdout)
    assert {g["name"]: g["opened"] for g in by_category["groups"]} == {
        "Printers": 3, "(none)": 2}
