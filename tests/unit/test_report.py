"""The director's report on a constructed history whose figures were worked out by hand
(below, in the comments): business hours across a weekend, a reopened ticket, a
timeout resolution, ratings, a ticket whose state at the end is rebuilt from a later
change; in text, JSON, CSV and HTML, with --by school, through the real command line."""

from __future__ import annotations

import csv
import io
import json
import secrets
import struct
import zlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailhelp.db.models import Person, Survey, Ticket, TicketEvent
from mailhelp.db.session import Database
from mailhelp.reports import periods
from mailhelp.weekly import DateSpan, WeeklyHours
from mailhelp.worktime import WorkCalendar
from tests.conftest import database_at
from tests.helpers import mailhelp, write_config

CHICAGO = ZoneInfo("America/Chicago")  # CST, UTC-6, all through this November
TECH1, TECH2 = "tech1@school.test", "tech2@school.test"
AUTO = "system:auto-resolve"
EXTRA = """
[helpdesk]
timezone = "America/Chicago"
logo = "{logo}"
[calendar]
hours = "Mon-Fri 07:30-16:00"
"""


def local(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=CHICAGO).astimezone(UTC)


# The history. Period: --from 2026-11-09 --to 2026-11-22 (Monday 9 to Sunday 22 Nov,
# local midnight to local midnight). Open 07:30-16:00 Mon-Fri: 8.5 h a day.
# (ticket: school, created, first response, status changes (at, actor, old -> new), now)
HISTORY = {
    # Fri 13 15:00, answered Mon 16 08:30: Fri 1h + Mon 1h = 2h. Resolved Tue 17 10:00:
    # Fri 1h + Mon 8.5h + Tue 2.5h = 12h. Closed Fri 20 by the system.
    1: ("Lincoln", local(13, 15), local(16, 8, 30), [
        (local(16, 8, 30), TECH1, "new", "pending"),
        (local(17, 10), TECH1, "pending", "resolved"),
        (local(20, 10), "system", "resolved", "closed")], "closed"),
    # Mon 9 09:00, answered 09:30: 0.5h. Resolved by the pending timeout Wed 18: a
    # resolution, by the timeout, with no resolution time.
    2: ("Lincoln", local(9, 9), local(9, 9, 30), [
        (local(9, 9, 30), TECH1, "new", "pending"),
        (local(18, 9), AUTO, "pending", "resolved")], "resolved"),
    # Tue 10 08:00, answered 12:00: 4h. Resolved Wed 11 08:00, reopened Thu 12 10:00,
    # resolved again Thu 12 14:00 (the last resolution counts): Tue 8h + Wed 8.5h +
    # Thu 6.5h = 23h.
    3: ("Washington", local(10, 8), local(10, 12), [
        (local(10, 12), TECH2, "new", "pending"),
        (local(11, 8), TECH2, "pending", "resolved"),
        (local(12, 10), "teacher3@school.test", "resolved", "open"),
        (local(12, 14), TECH2, "open", "resolved")], "resolved"),
    # Sat 21 10:00, no answer in the period; resolved Tue 24 (after it): now resolved,
    # new at the end -> in the closing backlog.
    4: ("Washington", local(21, 10), None, [
        (local(24, 9), TECH2, "new", "resolved")], "resolved"),
    # Before the period (Wed 4 10:00), open at its start; closed straight from open Mon
    # 16 10:00 by tech1: a resolution by staff. Wed 4 6h + Thu 5, Fri 6 17h + the week
    # of 9-13 42.5h + Mon 16 2.5h = 68h.
    5: ("", local(4, 10), local(5, 9), [
        (local(5, 9), TECH1, "new", "open"),
        (local(16, 10), TECH1, "open", "closed")], "closed"),
    # Resolved in October, closed Tue 10 09:00: closed in the period, not a resolution,
    # not in the opening backlog.
    6: ("Lincoln", local(28, 9, month=10), local(29, 9, month=10), [
        (local(30, 9, month=10), TECH1, "new", "resolved"),
        (local(10, 9), "system", "resolved", "closed")], "closed"),
    # After the period: nowhere in it.
    7: ("Lincoln", local(25, 9), None, [], "new"),
    # Mon 2 10:00, pending since Tue 3: in both backlogs; the oldest open ticket, 20 days
    # 14 hours old at the end (Mon 23 00:00): 20.6 days.
    8: ("Washington", local(2, 10), local(3, 9), [
        (local(3, 9), TECH2, "new", "pending")], "pending"),
    # Merged into #3 an hour after it came (closed by the merge): #3's request, counted
    # nowhere on its own.
    9: ("Washington", local(10, 9), None, [
        (local(10, 10), TECH2, "new", "closed")], "closed"),
}
MERGED = {9: 3}
# Surveys: (ticket, sent, rating, comment). Sent in the period: 1, 3, 5 (3 sent, 2
# answered: rate 0.667, average (5 + 2) / 2 = 3.5, share of 4-5: 1 of 2 = 0.5).
SURVEYS = [(1, local(17, 11), 5, "<b>Great</b> & fast"), (3, local(12, 15), 2,
                                                          "Took three days"),
           (5, local(16, 11), None, ""), (6, local(30, 12, month=10), 4, "before")]


def one_pixel_png() -> bytes:
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0\x1a\x5f\xb4")) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    with database_at(tmp_path) as url:
        (tmp_path / "logo.png").write_bytes(one_pixel_png())
        path = write_config(tmp_path, url, extra=EXTRA.format(logo=tmp_path / "logo.png"))
        assert mailhelp(path, "init").returncode == 0
        history(Database(url))
        yield path


def history(db: Database, tickets=None, surveys=None, merged=None) -> None:
    """HISTORY and SURVEYS written as the desk would have written them."""
    tickets = HISTORY if tickets is None else tickets
    surveys = SURVEYS if surveys is None else surveys
    merged = MERGED if merged is None else merged
    with db.sessions() as session, session.begin():
        people = {}
        for address in (TECH1, TECH2, "teacher@school.test"):
            people[address] = Person(address=address, name="", created_at=local(1, 0))
            session.add(people[address])
        session.flush()
        for number, (school, created, answered, changes, status) in tickets.items():
            last = [c for c in changes if c[3] in ("resolved", "closed")]
            session.add(Ticket(
                id=number, subject=f"Ticket {number} <subject>", status=status,
                priority="normal", requester_id=people["teacher@school.test"].id,
                assignee_id=people[TECH2 if school == "Washington" else TECH1].id,
                created_at=created, updated_at=created, first_response_at=answered,
                resolved_at=last[-1][0] if last else None,
                resolved_by=last[-1][1] if last else "", school=school,
                merged_into_id=merged.get(number)))
            session.flush()
            for at, actor, old, new in changes:
                session.add(TicketEvent(ticket_id=number, at=at, actor=actor,
                                        action="status", detail=f"{old} -> {new}"))
        for number, sent, rating, comment in surveys:
            session.add(Survey(ticket_id=number, token=secrets.token_hex(8), sent_at=sent,
                               rating=rating, comment=comment,
                               answered_at=sent if rating else None))
    db.engine.dispose()


PERIOD = ("--from", "2026-11-09", "--to", "2026-11-22", "--by", "school")


def report(desk, *args):
    done = mailhelp(desk, "report", *PERIOD, *args)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_json_figures_worked_out_by_hand(desk):
    data = json.loads(report(desk, "--format", "json"))
    assert data["since"] == "2026-11-09T00:00:00-06:00"
    assert data["until"] == "2026-11-23T00:00:00-06:00"
    assert data["business_hours"] is True and data["by"] == "school"
    # opened 1, 2, 3, 4; resolved 1 (tech1), 2 (timeout), 3 (tech2), 5 (closed from open);
    # closed 1, 5, 6; reopened 3; backlog at the start 5 (open) and 8 (pending), at the
    # end 4 (new then) and 8.
    assert {k: data[k] for k in ("opened", "resolved", "resolved_by_staff",
                                 "resolved_by_timeout", "closed", "reopened",
                                 "backlog_start", "backlog_end")} == {
        "opened": 4, "resolved": 4, "resolved_by_staff": 3, "resolved_by_timeout": 1,
        "closed": 3, "reopened": 1, "backlog_start": 2, "backlog_end": 2}
    assert data["tickets"] == {"created": 4, "by_status": {"closed": 1, "resolved": 3},
                               "by_priority": {"normal": 4},
                               "by_assignee": {TECH1: 2, TECH2: 2}}
    # first responses 0.5h, 2h, 4h: median 2h, 90th percentile (nearest rank: the 3rd
    # of 3) 4h. Resolutions by staff 12h, 23h, 68h: median 23h, p90 68h.
    assert data["first_response"] == {"count": 3, "median": "2h", "p90": "4h",
                                      "median_hours": 2.0, "p90_hours": 4.0}
    assert data["resolution"] == {"count": 3, "median": "23h", "p90": "68h",
                                  "median_hours": 23.0, "p90_hours": 68.0}
    s = data["satisfaction"]
    assert (s["surveys_sent"], s["answered"], s["response_rate"], s["average"],
            s["share_4_5"]) == (3, 2, 0.667, 3.5, 0.5)
    assert s["ratings"] == {"5": 1, "4": 0, "3": 0, "2": 1, "1": 0}
    assert s["comments"] == ["Took three days", "<b>Great</b> & fast"]
    assert [(t["id"], t["age_days"]) for t in data["oldest_open"]] == [(8, 20.6), (4, 1.6)]
    groups = {g["name"]: g for g in data["groups"]}
    assert list(groups) == ["Lincoln", "Washington", "(none)"]
    # Lincoln: 1, 2 (6 only closed): first responses 0.5h and 2h, median 1.25h.
    lincoln, washington, none = groups["Lincoln"], groups["Washington"], groups["(none)"]
    assert (lincoln["opened"], lincoln["resolved"], lincoln["resolved_by_timeout"],
            lincoln["closed"], lincoln["backlog_start"], lincoln["backlog_end"]) \
        == (2, 2, 1, 2, 0, 0)
    assert lincoln["first_response"]["median_hours"] == 1.25
    assert lincoln["first_response"]["p90_hours"] == 2.0
    assert lincoln["resolution"]["median_hours"] == 12.0
    assert lincoln["satisfaction"]["average"] == 5.0
    assert (washington["opened"], washington["resolved"], washington["reopened"],
            washington["backlog_start"], washington["backlog_end"]) == (2, 1, 1, 1, 2)
    assert washington["resolution"]["median_hours"] == 23.0
    assert washington["satisfaction"]["share_4_5"] == 0.0
    assert (none["opened"], none["resolved_by_staff"], none["closed"],
            none["backlog_start"], none["resolution"]["median_hours"]) == (0, 1, 1, 1, 68.0)
    assert none["satisfaction"]["response_rate"] == 0.0
    assert none["satisfaction"]["average"] is None
    charts = data["charts"]
    # Week of 9 Nov: opened 2, 3, 1; resolved 3 (its last). Week of 16 Nov: opened 4;
    # resolved 5, 1, 2.
    assert charts["weekly"] == [{"week": "2026-11-09", "opened": 3, "resolved": 1},
                                {"week": "2026-11-16", "opened": 1, "resolved": 3}]
    assert [b["count"] for b in charts["response_times"]] == [1, 1, 1, 0, 0, 0]
    assert charts["satisfaction_by_month"] == [{"month": "2026-11", "answered": 2,
                                                "average": 3.5}]


def test_csv_one_row_per_school_with_a_header_and_a_total(desk):
    rows = list(csv.DictReader(io.StringIO(report(desk, "--format", "csv"))))
    assert [r["school"] for r in rows] == ["Lincoln", "Washington", "(none)", "(total)"]
    by = {r["school"]: r for r in rows}
    assert (by["Lincoln"]["opened"], by["Lincoln"]["resolved_by_timeout"],
            by["Lincoln"]["first_response_median_hours"]) == ("2", "1", "1.25")
    assert (by["Washington"]["backlog_end"], by["Washington"]["average_rating"]) == ("2", "2.0")
    assert by["(none)"]["average_rating"] == ""
    assert (by["(total)"]["resolved"], by["(total)"]["resolution_p90_hours"],
            by["(total)"]["response_rate"], by["(total)"]["oldest_open_days"]) \
        == ("4", "68.0", "0.667", "20.6")


def test_text(desk):
    text = report(desk)
    assert "Help desk report, 2026-11-09 to 2026-11-22 (America/Chicago)" in text
    assert "tickets created       4" in text
    assert "resolved              4 (3 by staff, 1 by the timeout)" in text
    assert "backlog               2 at the start, 2 at the end" in text
    assert "first response        median 2h, 90% within 4h (3)" in text
    assert "resolution            median 23h, 90% within 68h (3)" in text
    assert "3 sent, 2 answered (67%), average 3.5 of 5, 50% gave 4 or 5" in text
    lines = text.splitlines()
    table = lines[lines.index("By school:") + 1:]
    assert table[0].split() == ["group", "opened", "resolved", "timeout", "backlog",
                                "1st", "resp", "resolution", "rating"]
    assert table[1].split() == ["Lincoln", "2", "2", "1", "0->0", "1h15m", "12h", "5.0", "(1)"]
    assert table[3].split() == ["(none)", "0", "1", "0", "1->0", "-", "68h", "-"]


def test_html_is_one_self_contained_escaped_page(desk):
    html = report(desk, "--format", "html")
    assert html.startswith("<!DOCTYPE html>")
    assert "Springfield SD Help Desk" in html and "2026-11-09 to 2026-11-22" in html
    assert 'src="data:image/png;base64,' in html  # the logo inside the file
    assert "<script" not in html and "<link" not in html and 'src="http' not in html
    assert html.count("<svg") >= 4 and html.count('width="100%"') >= 4
    assert "viewBox" in html
    assert "&lt;b&gt;Great&lt;/b&gt; &amp; fast" in html and "<b>Great" not in html
    assert "Ticket 8 &lt;subject&gt;" in html
    for figure in ("Lincoln", "Washington", "(none)", "2 → 2", "3.50 / 5", "23h", "68h",
                   "20.6 d", "1 by the timeout"):
        assert figure in html, figure


# The standing backlog (data.Standing, counted in SQL): tickets made before the period,
# open all through it, with no change of status since it began. Monroe: 12 of them,
# made Oct 1-12 at 08:00, with no events at all. Adams: #20 (Oct 1 10:00, open since
# Oct 2) stood too; #21 (Oct 5 10:00) was open all through the period but resolved
# after it (Tue 24), so it is read as a changed ticket, not a standing one; #22 (Oct 3
# 10:00) went pending and back to open in it: changed, and open at both ends. All three
# are in both of Adams's backlogs, once each. #23 was merged into #22 and rated.
MONROE = {100 + day: ("Monroe", local(day, 8, month=10), None, [], "new")
          for day in range(1, 13)}
BACKLOG = {
    **MONROE,
    20: ("Adams", local(1, 10, month=10), local(2, 9, month=10), [
        (local(2, 9, month=10), TECH1, "new", "open")], "open"),
    21: ("Adams", local(5, 10, month=10), local(6, 9, month=10), [
        (local(6, 9, month=10), TECH1, "new", "open"),
        (local(24, 9), TECH1, "open", "resolved")], "resolved"),
    22: ("Adams", local(3, 10, month=10), local(4, 9, month=10), [
        (local(4, 9, month=10), TECH1, "new", "open"),
        (local(10, 9), TECH1, "open", "pending"),
        (local(12, 9), TECH1, "pending", "open")], "open"),
    # Closed in October, merged into #22 later; its survey, sent in the period, counts
    # on #22 (Adams), the ticket its request now is.
    23: ("Adams", local(19, 10, month=10), local(20, 9, month=10), [
        (local(20, 9, month=10), TECH1, "new", "closed")], "closed"),
    # Grant: #30 (Oct 20) stood through the period; #31, opened and closed in it and
    # rated, was merged into #30 later: #30 is read for #31's survey, and counted once.
    30: ("Grant", local(20, 11, month=10), local(21, 9, month=10), [
        (local(21, 9, month=10), TECH1, "new", "open")], "open"),
    31: ("Grant", local(10, 9), local(10, 10), [(local(11, 9), TECH1, "new", "closed")],
         "closed"),
    # Hayes: #41, rated in the period, was merged into #40, made after it (Nov 25): the
    # rating counts in the total, #40 nowhere.
    40: ("Hayes", local(25, 9), None, [], "new"),
    41: ("Hayes", local(10, 9), local(10, 10), [(local(11, 9), TECH1, "new", "closed")],
         "closed"),
}
BACKLOG_SURVEYS = [(23, local(15, 9), 4, "merged"), (31, local(12, 9), 5, "into a standing"),
                   (41, local(12, 9), 3, "into a later one")]


@pytest.fixture(scope="module")
def backlog_desk(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("backlog")
    with database_at(tmp_path) as url:
        path = write_config(tmp_path, url, extra=EXTRA.format(logo=""))
        assert mailhelp(path, "init").returncode == 0
        history(Database(url), BACKLOG, BACKLOG_SURVEYS, {23: 22, 31: 30, 41: 40})
        yield path


def test_a_standing_backlog_in_every_grouping(backlog_desk):
    def data(*by):
        done = mailhelp(backlog_desk, "report", *PERIOD[:4], *by, "--format", "json")
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)

    oldest = [101, 20, 102, 103, 22, 104, 105, 21, 106, 107]  # by creation
    for by in ((), ("--by", "school"), ("--by", "assignee")):
        whole = data(*by)
        assert (whole["opened"], whole["resolved"], whole["backlog_start"],
                whole["backlog_end"]) == (0, 0, 16, 16), by
        assert [t["id"] for t in whole["oldest_open"]] == oldest, by
        assert whole["satisfaction"]["surveys_sent"] == 3, by
    groups = {g["name"]: g for g in data("--by", "school")["groups"]}
    assert list(groups) == ["Adams", "Grant", "Monroe"]
    assert (groups["Grant"]["backlog_start"], groups["Grant"]["backlog_end"],
            [t["id"] for t in groups["Grant"]["oldest_open"]],
            groups["Grant"]["satisfaction"]["average"]) == (1, 1, [30], 5.0)
    assert (groups["Adams"]["backlog_start"], groups["Adams"]["backlog_end"]) == (3, 3)
    assert [t["id"] for t in groups["Adams"]["oldest_open"]] == [20, 22, 21]
    assert groups["Monroe"]["backlog_end"] == 12
    assert [t["id"] for t in groups["Monroe"]["oldest_open"]] == list(range(101, 111))
    assert (groups["Adams"]["satisfaction"]["surveys_sent"],
            groups["Adams"]["satisfaction"]["average"]) == (1, 4.0)
    techs = {g["name"]: g["backlog_end"] for g in data("--by", "assignee")["groups"]}
    assert techs == {TECH1: 16}


def test_the_mail_draws_its_charts_as_table_cells(desk):
    """Gmail and Outlook drop SVG from mail: the digest mail's charts are table cells,
    each bar's width its share of the chart's largest value."""
    from mailhelp.config.reading import load
    from mailhelp.reports.html import mail

    html = mail(load(desk), json.loads(report(desk, "--format", "json"))).html
    assert "<svg" not in html
    for title in ("Tickets opened and resolved per week", "Time to first response",
                  "Average rating by month", "Tickets opened and resolved per school"):
        assert f'aria-label="{title}"' in html, title
    # Week of 9 Nov: 3 opened, 1 resolved; the largest value of the chart is 3.
    week = html[html.index(">09 Nov<"):]
    week = week[:week.index("</tr>\n")]
    assert 'width="100.0%"' in week and 'width="33.3%"' in week and "3 / 1" in week
    # Satisfaction by month on a scale of 5: 3.5 is 70 %.
    assert 'width="70.0%"' in html[html.index('aria-label="Average rating by month"'):]


def test_periods_on_the_desks_clock():
    now = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    month = periods.choose(CHICAGO, now, month="2026-11")
    assert (month.start, month.end) == (datetime(2026, 11, 1, 5, tzinfo=UTC),  # CDT
                                        datetime(2026, 12, 1, 6, tzinfo=UTC))  # CST
    since = periods.choose(CHICAGO, now, since="2026-11-01")
    assert (since.start, since.end) == (datetime(2026, 11, 1, 5, tzinfo=UTC), now)
    assert periods.choose(CHICAGO, now, since="7d").start == now - timedelta(days=7)
    assert periods.choose(CHICAGO, now).start == now - timedelta(days=30)
    december = periods.choose(CHICAGO, now, month="2026-12")
    assert december.end == datetime(2027, 1, 1, 6, tzinfo=UTC)


@pytest.mark.parametrize(("args", "message"), [
    (("--month", "2026-13"), "--month"), (("--since", "soon"), "--since"),
    (("--from", "2026-11-09"), "--from and --to go together"),
    (("--from", "2026-11-09", "--to", "2026-11-01"), "--to is before --from"),
    (("--since", "2026-11-01", "--month", "2026-11"), "give one of"),
    (("--since", "2026-02-30"), "is not a date"),
])
def test_bad_periods_are_usage_errors(desk, args, message):
    done = mailhelp(desk, "report", *args)
    assert done.returncode == 2 and message in done.stderr.decode()


def test_between_counts_open_time_only():
    calendar = WorkCalendar.build(CHICAGO, WeeklyHours.parse("Mon-Fri 07:30-16:00"),
                                  [DateSpan.parse("2026-11-26..2026-11-27")])
    assert calendar.between(local(13, 15), local(16, 8, 30)) == timedelta(hours=2)
    assert calendar.between(local(4, 10), local(16, 10)) == timedelta(hours=68)
    assert calendar.between(local(14, 9), local(15, 20)) == timedelta(0)  # a weekend
    assert calendar.between(local(16, 10), local(16, 9)) == timedelta(0)
    # Thanksgiving Thursday and Friday are holidays: Wed 25 15:00 to Mon 30 08:00 is
    # Wed 1h + Mon 0.5h.
    assert calendar.between(local(25, 15), local(30, 8)) == timedelta(hours=1.5)
    # add and between agree, across weekends and the holidays, hours and days.
    start = local(20, 14)
    for delay in (timedelta(hours=4), timedelta(hours=37), timedelta(days=3),
                  timedelta(hours=200)):
        assert calendar.between(start, calendar.add(start, delay)) == delay \
            or delay % timedelta(days=1) == timedelta(0)
    # Ten years apart with a holiday span a year: the arithmetic agrees with a walk over
    # every day (8.5h for each weekday not in a span).
    spans = [DateSpan.parse(f"{y}-12-24..{y}-12-26") for y in range(2026, 2126)]
    yearly = WorkCalendar.build(CHICAGO, WeeklyHours.parse("Mon-Fri 07:30-16:00"), spans)
    first = local(2, 0)
    day, open_days = first.astimezone(CHICAGO).date(), 0
    for _ in range(7 * 52 * 10):
        open_days += day.weekday() < 5 and not any(day in span for span in spans[:11])
        day += timedelta(days=1)
    assert yearly.between(first, first + timedelta(weeks=52 * 10)) \
        == timedelta(hours=8.5) * open_days
    # No [calendar]: elapsed time.
    plain = WorkCalendar.build(CHICAGO)
    assert plain.between(local(13, 15), local(16, 8, 30)) == timedelta(hours=65.5)
