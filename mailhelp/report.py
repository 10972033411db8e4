"""Figures for the IT director: volumes, response and resolution times, satisfaction."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from .db.models import Survey, Ticket
from .durations import format_duration


def figures(session: Session, since: datetime, now: datetime,
            zone: tzinfo | None = None) -> dict:
    """The report's figures; ``since`` and ``until`` on the desk's clock (``zone``)."""
    tickets = list(session.scalars(select(Ticket).where(Ticket.created_at >= since)
                                   .options(selectinload(Ticket.assignee))))
    answered = [t for t in tickets if t.first_response_at]
    resolved = [t for t in tickets if t.resolved_at]
    surveys = list(session.scalars(select(Survey).where(Survey.sent_at >= since)))
    ratings = [s.rating for s in surveys if s.rating]
    return {
        "since": (since.astimezone(zone) if zone else since).isoformat(),
        "until": (now.astimezone(zone) if zone else now).isoformat(),
        "tickets": {
            "created": len(tickets),
            "by_status": dict(Counter(t.status for t in tickets)),
            "by_priority": dict(Counter(t.priority for t in tickets)),
            "by_assignee": dict(Counter(t.assignee.address if t.assignee else "(none)"
                                        for t in tickets)),
        },
        "first_response": _times([t.first_response_at - t.created_at for t in answered]),
        "resolution": _times([t.resolved_at - t.created_at for t in resolved]),
        "satisfaction": {
            "surveys_sent": len(surveys),
            "answered": len(ratings),
            "response_rate": round(len(ratings) / len(surveys), 3) if surveys else None,
            "average": round(statistics.fmean(ratings), 2) if ratings else None,
            "ratings": {str(r): ratings.count(r) for r in range(5, 0, -1)},
            "comments": [s.comment for s in surveys if s.comment][-20:],
        },
    }


def _times(values: list[timedelta]) -> dict:
    if not values:
        return {"count": 0, "median": None, "p90": None}
    seconds = sorted(v.total_seconds() for v in values)
    p90 = seconds[min(len(seconds) - 1, int(round(0.9 * (len(seconds) - 1))))]
    return {"count": len(seconds), "median": format_duration(
        timedelta(seconds=int(statistics.median(seconds)))),
        "p90": format_duration(timedelta(seconds=int(p90)))}


def as_text(data: dict) -> str:
    t, s = data["tickets"], data["satisfaction"]
    lines = [
        f"Help desk report, {data['since'][:10]} to {data['until'][:10]}",
        f"  tickets created      {t['created']}",
        "  by status            " + _pairs(t["by_status"]),
        "  by assignee          " + _pairs(t["by_assignee"]),
        f"  first response       median {data['first_response']['median'] or '-'}, "
        f"90% within {data['first_response']['p90'] or '-'} "
        f"({data['first_response']['count']} answered)",
        f"  resolution           median {data['resolution']['median'] or '-'}, "
        f"90% within {data['resolution']['p90'] or '-'} ({data['resolution']['count']} resolved)",
        f"  surveys              {s['surveys_sent']} sent, {s['answered']} answered"
        + (f", average {s['average']} of 5" if s["average"] is not None else ""),
        "  ratings              " + _pairs(s["ratings"]),
    ]
    lines += [f"    \u201c{c}\u201d" for c in s["comments"][-5:]]
    return "\n".join(lines)


def as_html(data: dict) -> str:
    import jinja2

    template = jinja2.Environment(autoescape=True).from_string(_HTML)
    return template.render(data=data, text=as_text(data))


def _pairs(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Help desk report</title></head>
<body style="font-family: sans-serif; max-width: 48em; margin: 1em auto; padding: 0 1em">
<h1>Help desk report</h1>
<p>{{ data.since[:10] }} to {{ data.until[:10] }}</p>
<table cellpadding="4">
<tr><th align="left">Tickets created</th><td>{{ data.tickets.created }}</td></tr>
{% for k, v in data.tickets.by_status.items() %}
<tr><td>&nbsp;&nbsp;{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}
<tr><th align="left">First response (median / 90%)</th>
<td>{{ data.first_response.median or "-" }} / {{ data.first_response.p90 or "-" }}</td></tr>
<tr><th align="left">Resolution (median / 90%)</th>
<td>{{ data.resolution.median or "-" }} / {{ data.resolution.p90 or "-" }}</td></tr>
<tr><th align="left">Surveys sent / answered</th>
<td>{{ data.satisfaction.surveys_sent }} / {{ data.satisfaction.answered }}</td></tr>
<tr><th align="left">Average rating</th><td>{{ data.satisfaction.average or "-" }}</td></tr>
</table>
{% if data.satisfaction.comments %}<h2>Comments</h2><ul>
{% for c in data.satisfaction.comments %}<li>{{ c }}</li>{% endfor %}</ul>{% endif %}
</body></html>
"""
