"""The report's figures: pure functions over the rows data.py read.

Definitions (what each number counts, in the period [start, end)):

- opened: tickets created in it.
- resolved: tickets with a resolution in it (a change to resolved, or to closed from an
  active state); ``resolved_by_timeout`` those whose last resolution in it was the
  pending timeout (actor ``system:auto-resolve``), ``resolved_by_staff`` the others.
- closed: tickets closed in it. reopened: tickets moved from resolved/closed back to an
  active state in it.
- backlog_start / backlog_end: tickets open (new, open or pending) at that instant,
  rebuilt from the changes: a ticket's state at T is the ``old`` side of its first
  change after T, or its state now if it has none.
- first_response: over tickets opened in the period and answered before its end, the
  time from creation to the first staff answer; resolution: over tickets resolved by
  staff in it, creation to that resolution. Both in open time where ``[calendar]`` is
  set (worktime.between), else elapsed. Median, and 90th percentile by nearest rank
  (the smallest value at or above 90 % of them).
- satisfaction: over surveys sent in the period: sent, answered (rated), response rate,
  average rating, share of 4 and 5 among the answers, the comments.
- oldest_open: the tickets open at the end, oldest first (at most OLDEST).

The standing backlog (data.Standing: active tickets made before the period and not
changed since it began) comes counted: it adds to both backlogs and to oldest_open.

A ticket merged into another (``merged_into_id``) is left out of every figure: its
request is the survivor's, and its closing by the merge is no resolution.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import timedelta
from operator import itemgetter

from ..states import DONE
from .data import NONE, OLDEST, Change, Rows, SurveyRow, TicketRow
from .periods import Period

AUTO = "system:auto-resolve"  # desk/schedule.AUTO (not imported: that pulls in the desk)
COMMENTS = 20  # the latest comments shown, per group
GROUPINGS = ("assignee", "school", "category")


class History:
    """Per ticket, the facts every group's figures need, worked out once."""

    def __init__(self, rows: Rows, period: Period, between: Callable) -> None:
        self.rows, self.period = rows, period
        self.by_ticket: dict[int, list[Change]] = defaultdict(list)
        for change in rows.changes:
            self.by_ticket[change.ticket_id].append(change)
        self.facts = {t.id: self._facts(t, between) for t in rows.tickets.values()}

    def _facts(self, ticket: TicketRow, between: Callable) -> dict:
        """One pass over the ticket's changes since the period began (oldest first)."""
        start, end = self.period.start, self.period.end
        at_start = at_end = None  # the state at each bound, if a change follows it
        last = None  # its last resolution in the period
        closed = reopened = False
        for change in self.by_ticket.get(ticket.id, ()):
            if change.at >= end if change.after is None else change.after:
                if at_end is None:
                    at_end = change.old
                break
            if at_start is None:  # every change here is at or after the start
                at_start = change.old
            if change.resolves:
                last = change
            closed = closed or change.new == "closed"
            reopened = reopened or change.reopens
        if ticket.created_at >= start:
            at_start = None  # did not exist yet
        elif at_start is None:
            at_start = at_end or ticket.status
        if at_end is None:
            at_end = ticket.status
        resolved_at = last.at if last is not None else None  # read once, here
        opened = ticket.created_at >= start  # fetch reads none created at or after end
        answered = opened and ticket.first_response_at is not None \
            and ticket.first_response_at < end
        return {
            "opened": opened,
            "resolved": last is not None,
            "by_timeout": last is not None and last.actor == AUTO,
            "resolved_at": resolved_at,
            "closed": closed,
            "reopened": reopened,
            "open_at_start": at_start is not None and at_start not in DONE,
            "open_at_end": at_end not in DONE,
            "first_response": (between(ticket.created_at, ticket.first_response_at)
                               if answered else None),
            "resolution": (between(ticket.created_at, resolved_at)
                           if last is not None and last.actor != AUTO else None),
        }


def figures(history: History, tickets: Iterable[TicketRow], surveys: Iterable[SurveyRow],
            standing: tuple[int, list[TicketRow]] = (0, [])) -> dict:
    """Every figure over ``tickets`` (and the surveys on them), with ``standing``: the
    standing backlog's count and oldest tickets among them."""
    tickets = list(tickets)
    facts = [history.facts[t.id] for t in tickets]
    count = lambda key: sum(map(itemgetter(key), facts))  # noqa: E731 (the flags are bools)
    resolved, by_timeout = count("resolved"), count("by_timeout")
    open_now = [t for t, f in zip(tickets, facts, strict=True) if f["open_at_end"]]
    stood, stood_oldest = standing
    end = history.period.end
    return {
        "opened": count("opened"),
        "resolved": resolved,
        "resolved_by_staff": resolved - by_timeout,
        "resolved_by_timeout": by_timeout,
        "closed": count("closed"),
        "reopened": count("reopened"),
        "backlog_start": count("open_at_start") + stood,
        "backlog_end": len(open_now) + stood,
        "first_response": times([f["first_response"] for f in facts
                                 if f["first_response"] is not None]),
        "resolution": times([f["resolution"] for f in facts if f["resolution"] is not None]),
        "satisfaction": satisfaction(list(surveys)),
        "oldest_open": [
            {"id": t.id, "subject": t.subject, "created_at": t.created_at.isoformat(),
             "status": t.status, "assignee": t.assignee, "school": t.school,
             "category": t.category,
             "age_days": round((end - t.created_at).total_seconds() / 86400, 1)}
            for t in heapq.nsmallest(OLDEST, [*open_now, *stood_oldest],
                                     key=lambda t: (t.created_at, t.id))],
    }


def times(values: list[timedelta]) -> dict:
    """count, median and 90th percentile (nearest rank), as hours and as text."""
    if not values:
        return {"count": 0, "median": None, "p90": None, "median_hours": None,
                "p90_hours": None}
    seconds = sorted(v.total_seconds() for v in values)
    median = statistics.median(seconds)
    p90 = seconds[math.ceil(0.9 * len(seconds)) - 1]
    return {"count": len(seconds),
            "median": hours_text(median), "p90": hours_text(p90),
            "median_hours": round(median / 3600, 2), "p90_hours": round(p90 / 3600, 2)}


def hours_text(seconds: float) -> str:
    """A counted time in hours and minutes ("30m", "2h", "68h05m"): with [calendar] it is
    open time, which days of 24 hours would misstate."""
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes}m"
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


def satisfaction(surveys: list[SurveyRow]) -> dict:
    ratings = [s.rating for s in surveys if s.rating]
    commented = [s for s in surveys if s.comment.strip()][-COMMENTS:]
    return {
        "surveys_sent": len(surveys),
        "answered": len(ratings),
        "response_rate": round(len(ratings) / len(surveys), 3) if surveys else None,
        "average": round(statistics.fmean(ratings), 2) if ratings else None,
        "share_4_5": (round(sum(1 for r in ratings if r >= 4) / len(ratings), 3)
                      if ratings else None),
        "ratings": {str(r): ratings.count(r) for r in range(5, 0, -1)},
        "comments": [s.comment for s in commented],
        "rated_comments": [{"ticket": s.ticket_id, "rating": s.rating, "comment": s.comment}
                           for s in commented],
    }


def opened_counts(tickets: Iterable[TicketRow], history: History) -> dict:
    opened = [t for t in tickets if history.facts[t.id]["opened"]]
    return {"created": len(opened), "by_status": dict(Counter(t.status for t in opened)),
            "by_priority": dict(Counter(t.priority for t in opened)),
            "by_assignee": dict(Counter(t.assignee or NONE for t in opened))}


def group_of(ticket: TicketRow, by: str) -> str:
    return getattr(ticket, by) or NONE


def grouped(history: History, by: str) -> list[dict]:
    """Every figure per group (``by``: assignee, school or category); "(none)" last."""
    members: dict[str, list[TicketRow]] = defaultdict(list)
    for ticket in history.rows.tickets.values():
        members[group_of(ticket, by)].append(ticket)
    surveys: dict[str, list[SurveyRow]] = defaultdict(list)
    for survey in history.rows.surveys:
        ticket = history.rows.tickets.get(survey.ticket_id)
        if ticket is not None:
            surveys[group_of(ticket, by)].append(survey)
    standing = history.rows.standing.groups
    names = sorted(members.keys() | standing.keys(), key=lambda n: (n == NONE, n.lower()))
    return [{"name": n, **figures(history, members[n], surveys[n], standing.get(n, (0, [])))}
            for n in names]


def report(rows: Rows, period: Period, between: Callable, by: str | None,
           business_hours: bool) -> dict:
    """The whole report as plain JSON-able data (keys: see report.md in the package)."""
    from . import charts

    history = History(rows, period, between)
    total = figures(history, rows.tickets.values(), rows.surveys,
                    (rows.standing.count, rows.standing.oldest))
    return {
        "since": period.local(period.start).isoformat(),
        "until": period.local(period.end).isoformat(),
        "period": period.label,
        "timezone": period.zone.key,
        "business_hours": business_hours,
        "by": by,
        # The report's first JSON object, kept: tickets opened in the period by their
        # status now, priority and assignee.
        "tickets": opened_counts(rows.tickets.values(), history),
        **total,
        "groups": grouped(history, by) if by else [],
        "charts": charts.series(history),
    }
