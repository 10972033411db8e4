"""Which stretch of time a report covers, on the desk's clock.

``--since 30d`` (a duration back from now), ``--since 2026-11-01`` (local midnight of
that date to now), ``--month 2026-11`` (the calendar month, local midnight to local
midnight), ``--from 2026-11-02 --to 2026-11-08`` (both days included). Every bound is
a local midnight in ``[helpdesk] timezone`` turned into an aware UTC instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..durations import parse_duration
from ..errors import UsageError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Period:
    start: datetime  # aware UTC, included
    end: datetime  # aware UTC, excluded
    zone: ZoneInfo
    label: str  # as the report's title shows it

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)


def midnight(day: date, zone: ZoneInfo) -> datetime:
    """Local midnight of ``day`` as an aware UTC instant."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def choose(zone: ZoneInfo, now: datetime, since: str | None = None, month: str | None = None,
           first: str | None = None, last: str | None = None) -> Period:
    """The period the command line asks for; UsageError naming the option at fault."""
    if sum(x is not None for x in (since, month, first or last)) > 1:
        raise UsageError("report: give one of --since, --month, --from/--to")
    if month is not None:
        found = _MONTH.match(month)
        if not found or not 1 <= int(found[2]) <= 12:
            raise UsageError(f"--month: {month!r} is not a month like 2026-11")
        day = date(int(found[1]), int(found[2]), 1)
        following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        return Period(midnight(day, zone), midnight(following, zone), zone,
                      day.strftime("%B %Y"))
    if first is not None or last is not None:
        if first is None or last is None:
            raise UsageError("report: --from and --to go together")
        a, b = _date("--from", first), _date("--to", last)
        if b < a:
            raise UsageError("report: --to is before --from")
        return Period(midnight(a, zone), midnight(b + timedelta(days=1), zone), zone,
                      f"{a.isoformat()} to {b.isoformat()}")
    text = since if since is not None else "30d"
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        day = _date("--since", text)
        start = midnight(day, zone)
        if start >= now:
            raise UsageError(f"--since: {text} is not in the past")
        return Period(start, now, zone,
                      f"{day.isoformat()} to {now.astimezone(zone).date().isoformat()}")
    try:
        back = parse_duration(text)
    except ValueError as error:
        raise UsageError(f"--since: {error}") from None
    start = now - back
    return Period(start, now, zone, f"{start.astimezone(zone).date().isoformat()} to "
                  f"{now.astimezone(zone).date().isoformat()}")


def _date(option: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a date like 2026-11-01") from None
