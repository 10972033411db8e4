"""The report as mail (template kind ``digest``: HTML with a text part) and as a saved
page (``report --format html``: the logo as a data: URI instead of the mail's cid:).

The page draws its charts as inline SVG. The mail draws the same charts as rows of
table cells (``bars``): Gmail and Outlook drop SVG from mail, and a director reading
the digest in either would get no charts at all."""

from __future__ import annotations

import base64
from datetime import date

from ..delivery import branding
from ..delivery.templating import Rendered, render
from . import charts
from .render import as_text

KIND = "digest"


def variables(data: dict, helpdesk: dict, page: bool = False) -> dict:
    """What digest.txt.j2 and digest.html.j2 get: the report's data, its text form, and
    where each chart's bars go."""
    c = data["charts"]
    week_names = [date.fromisoformat(w["week"]).strftime("%d %b") for w in c["weekly"]]
    weekly = charts.columns([[w["opened"], w["resolved"]] for w in c["weekly"]])
    every = -(-len(c["weekly"]) // 6)  # at most 6 week labels under the bars
    weekly["labels"] = [{"x": round(weekly["left"] + (i + 0.5) * weekly["slot"], 1),
                         "text": name}
                        for i, name in enumerate(week_names) if i % every == 0]
    responses = charts.columns([[b["count"]] for b in c["response_times"]])
    responses["labels"] = [{"x": round(responses["left"] + (i + 0.5) * responses["slot"], 1),
                            "text": b["bucket"]} for i, b in enumerate(c["response_times"])]
    months = charts.columns([[m["average"]] for m in c["satisfaction_by_month"]] or [[0]],
                            top=5)
    months["labels"] = [{"x": round(months["left"] + (i + 0.5) * months["slot"], 1),
                         "text": m["month"]} for i, m in enumerate(c["satisfaction_by_month"])]
    schools = c["schools"]
    school_bars = _bars([(s["school"], [s["opened"], s["resolved"]]) for s in schools])
    return {
        "helpdesk": helpdesk,
        "report": data,
        "bars": {  # the mail's charts: label, values, and each value's share of the top
            "weekly": _bars([(name, [w["opened"], w["resolved"]])
                             for name, w in zip(week_names, c["weekly"], strict=True)]),
            "responses": _bars([(b["bucket"], [b["count"]]) for b in c["response_times"]]),
            "months": _bars([(m["month"], [m["average"]]) for m in c["satisfaction_by_month"]],
                            top=5),
            "schools": school_bars,
        },
        "report_text": as_text(data),
        "page": page,  # a saved page (centred in a browser), not a mail
        "charts": {
            "weekly": weekly, "responses": responses, "months": months,
            "schools": [{**s, "opened_pct": b["pcts"][0], "resolved_pct": b["pcts"][1]}
                        for s, b in zip(schools, school_bars, strict=True)],
        },
    }


def _bars(rows: list[tuple[str, list]], top: float | None = None) -> list[dict]:
    """Horizontal bars on one scale: each value as a percentage of ``top`` (the
    largest value if not given)."""
    top = top or max([v for _, values in rows for v in values] + [1])
    return [{"label": label, "values": values,
             "pcts": [round(100 * v / top, 1) for v in values]} for label, values in rows]


def mail(config, data: dict) -> Rendered:
    """The digest mail: the logo, if any, as cid: (the outbox attaches it)."""
    return render(KIND, variables(data, _helpdesk(config)), config.templates.dir,
                  branding.brand(config))


def page(config, data: dict) -> str:
    """One self-contained HTML file: inline CSS and SVG, the logo as a data: URI."""
    brand = branding.brand(config)
    logo = branding.logo(config)
    if logo is not None:
        brand = {**brand, "logo": f"data:image/{logo.subtype};base64,"
                 + base64.b64encode(logo.data).decode("ascii")}
    return render(KIND, variables(data, _helpdesk(config), page=True), config.templates.dir,
                  brand).html


def _helpdesk(config) -> dict:
    return {"name": config.helpdesk.name, "address": config.helpdesk.address,
            "timezone": config.helpdesk.timezone}


def sample(helpdesk: dict) -> dict:
    """The variables of a small report, for `mailhelp check` and template authors."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from .data import Change, Rows, SurveyRow, TicketRow
    from .figures import report
    from .periods import Period

    start = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    hour = timedelta(hours=1)
    rows = Rows(
        {42: TicketRow(42, "Projector in room 12", "resolved", start + 26 * hour,
                       start + 27 * hour, "tech@example.org", "Lincoln Elementary", "AV"),
         43: TicketRow(43, "Printer jam", "open", start + 50 * hour, None, "",
                       "Washington High", "printing")},
        [Change(42, start + 30 * hour, "tech@example.org", "open", "resolved")],
        [SurveyRow(42, start + 31 * hour, 5, "Quick fix, thanks!")])
    period = Period(start, start + timedelta(days=7), ZoneInfo("UTC"),
                    "2026-11-30 to 2026-12-06")
    return variables(report(rows, period, lambda a, b: b - a, "school", False), helpdesk)
