"""UTC times as the database keeps them, shown on the desk's clock: many of them, fast.

A listing of 100,000 tickets shows 200,000 times. Parsing each, converting it to the
desk's zone and formatting it again took 2 µs a time, most of the listing's own work.
On a day of UTC through which the desk's offset stays the same whole number of hours
(every day but a zone's transition days, in every zone but a few), each UTC hour is
one local hour with one offset: ``LocalTimes`` works the day's 24 local hours out once
and then only splices minutes and seconds into them. Other days go the plain way.

The text is the database's ("2026-03-04 05:06:07.123456", UTC, as db.models.utc_text
reads it); the result is ISO 8601 to the second with the offset, exactly what
``datetime.astimezone(zone).isoformat(timespec="seconds")`` gives.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

_LAST = timedelta(days=1) - timedelta(microseconds=1)  # of a day
_HOUR = timedelta(hours=1)


class LocalTimes:
    """``LocalTimes(zone).iso(text)``: a UTC time's text on ``zone``'s clock."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        # "2026-03-04" -> (its 24 local hours: "2026-03-03T18", ..., the offset:
        # "-06:00"), or None: not splicable.
        self._days: dict[str, tuple[list[str], str] | None] = {}

    def iso(self, text: str) -> str:
        day = text[:10]
        try:
            known = self._days[day]
        except KeyError:
            known = self._days[day] = self._day(day)
        if known is None or len(text) < 19 or not text[11:13].isdigit():
            return self.plain(text)
        return known[0][int(text[11:13])] + text[13:19] + known[1]

    def plain(self, text: str) -> str:
        return (datetime.fromisoformat(text + "+00:00").astimezone(self.zone)
                .isoformat(timespec="seconds"))

    def _day(self, day: str) -> tuple[list[str], str] | None:
        try:
            start = datetime.fromisoformat(day + "T00:00:00+00:00")
        except ValueError:
            return None
        first, last = start.astimezone(self.zone), (start + _LAST).astimezone(self.zone)
        offset = first.utcoffset()
        if offset is None or offset != last.utcoffset() or offset % _HOUR:
            return None
        # UTC midnight is ``first``'s local hour; 24 hours on, the next local day.
        today, tomorrow = first.date().isoformat(), (first + _HOUR * 24).date().isoformat()
        hours = ([f"{today}T{h:02d}" for h in range(first.hour, 24)]
                 + [f"{tomorrow}T{h:02d}" for h in range(first.hour)])
        return hours, first.isoformat(timespec="seconds")[19:]
