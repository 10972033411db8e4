"""The director's report (``mailhelp report``) and the weekly digest mail.

periods.py which stretch of time; data.py the rows (three set-based queries);
figures.py and charts.py the numbers (pure); render.py text, JSON, CSV; html.py the
``digest`` template's variables (the HTML page and the mail); mailing.py the digest
through the outbox, once per occurrence; command.py the command line's side.
"""

from __future__ import annotations

import gc

from sqlalchemy.orm import Session

from ..worktime import work_calendar
from .data import fetch
from .figures import report
from .periods import Period


def build(session: Session, config, period: Period, by: str | None = None) -> dict:
    """The report's data over ``period``, grouped ``by`` assignee, school or category."""
    calendar = work_calendar(config)
    # A year's report makes a few hundred thousand rows and tuples, none in a cycle:
    # the collector's passes over them (each 700 allocations, the older generations
    # rescanned as they grow) were a fifth of its time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return report(fetch(session, period, by), period, calendar.between, by,
                      business_hours=not calendar.elapsed)
    finally:
        if collecting:
            gc.enable()
