"""What the HTML report's charts show (series, in the JSON too) and where each bar goes
(geometry for the SVG the template draws: numbers only, the template escapes every
label). No charting library: bars on a viewBox that scales to the width it is given."""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

WEEKS = 26  # the weekly chart shows at most the last 26 weeks of a period
BUCKETS = ((1, "< 1 h"), (4, "1-4 h"), (8, "4-8 h"), (24, "8-24 h"), (72, "1-3 d"),
           (None, "> 3 d"))  # hours of counted time (open time with [calendar])
TOPS = [top for top, _ in BUCKETS if top is not None]  # ascending; past them: the last
SCHOOLS = 12  # the busiest schools drawn; the JSON groups have them all


def series(history) -> dict:
    period, rows = history.period, history.rows
    zone = period.zone
    def week_of(moment) -> str:  # the Monday of a moment's local week
        day = moment.astimezone(zone).date()
        return (day - timedelta(days=day.weekday())).isoformat()

    weekly: dict[str, dict] = {}
    first = period.local(period.start).date()
    monday = first - timedelta(days=first.weekday())
    while monday <= period.local(period.end - timedelta(microseconds=1)).date():
        weekly[monday.isoformat()] = {"week": monday.isoformat(), "opened": 0, "resolved": 0}
        monday += timedelta(days=7)
    # Each week's first instant (its Monday's local midnight, the first if the clocks
    # repeat it), in UTC: a moment's week is a bisection, not a conversion per ticket.
    mondays = list(weekly)
    starts = [datetime.combine(date.fromisoformat(m), time(), tzinfo=zone).astimezone(UTC)
              for m in mondays]

    def week_in(moment) -> str:
        i = bisect_right(starts, moment) - 1
        return mondays[i] if 0 <= i < len(mondays) else week_of(moment)

    histogram = [0] * len(BUCKETS)
    schools: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for ticket in rows.tickets.values():
        facts = history.facts[ticket.id]
        if facts["opened"]:
            weekly[week_in(ticket.created_at)]["opened"] += 1
            schools[ticket.school or "(none)"][0] += 1
        if facts["resolved"]:
            schools[ticket.school or "(none)"][1] += 1
            weekly[week_in(facts["resolved_at"])]["resolved"] += 1
        if facts["first_response"] is not None:
            hours = facts["first_response"].total_seconds() / 3600
            histogram[bisect_right(TOPS, hours)] += 1  # the first bucket it is under
    months: dict[str, list[int]] = defaultdict(list)
    for survey in rows.surveys:
        if survey.rating:
            day = survey.sent_at.astimezone(zone)
            months[f"{day.year:04d}-{day.month:02d}"].append(survey.rating)
    busiest = sorted(schools.items(), key=lambda kv: (-kv[1][0], kv[0]))[:SCHOOLS]
    return {
        "weekly": list(weekly.values())[-WEEKS:],
        "response_times": [{"bucket": label, "count": histogram[i]}
                           for i, (_, label) in enumerate(BUCKETS)],
        "satisfaction_by_month": [
            {"month": m, "answered": len(r), "average": round(sum(r) / len(r), 2)}
            for m, r in sorted(months.items())],
        "schools": [{"school": name, "opened": o, "resolved": r}
                    for name, (o, r) in busiest],
    }


# Geometry ----------------------------------------------------------------------------

WIDTH, HEIGHT, BASE = 600, 200, 170  # viewBox; bars stand on y = BASE
MARGIN = 30  # left and right, so that the first and last labels are not cut


def columns(values: list[list[float]], top: float | None = None) -> dict:
    """Grouped vertical bars: one group per entry, one bar per value in it."""
    top = top or max([v for group in values for v in group] + [1])
    slot = (WIDTH - 2 * MARGIN) / max(1, len(values))
    per = max(1, len(values[0]) if values else 1)
    bar = max(2.0, slot * 0.8 / per)
    bars = []
    for i, group in enumerate(values):
        for j, value in enumerate(group):
            height = (BASE - 20) * value / top
            bars.append({"x": round(MARGIN + i * slot + slot * 0.1 + j * bar, 1),
                         "y": round(BASE - height, 1), "w": round(bar - 1, 1),
                         "h": round(height, 1), "series": j, "value": value,
                         "label_x": round(MARGIN + i * slot + slot / 2, 1)})
    return {"bars": bars, "slot": slot, "left": MARGIN, "top": top, "width": WIDTH,
            "height": HEIGHT, "base": BASE}
