"""The report as text, JSON and CSV (the HTML is templates/digest.html.j2, html.py)."""

from __future__ import annotations

import csv
import io
import json

COLUMNS = (  # the CSV's header row, and the text table's figures, per group
    "opened", "resolved", "resolved_by_staff", "resolved_by_timeout", "closed", "reopened",
    "backlog_start", "backlog_end", "first_response_count", "first_response_median_hours",
    "first_response_p90_hours", "resolution_count", "resolution_median_hours",
    "resolution_p90_hours", "surveys_sent", "surveys_answered", "response_rate",
    "average_rating", "share_4_5", "oldest_open_days")


def flat(figures: dict) -> dict:
    """One group's figures as the CSV's columns."""
    s, fr, rs = figures["satisfaction"], figures["first_response"], figures["resolution"]
    oldest = figures["oldest_open"]
    return {
        **{k: figures[k] for k in COLUMNS[:8]},
        "first_response_count": fr["count"], "first_response_median_hours": fr["median_hours"],
        "first_response_p90_hours": fr["p90_hours"],
        "resolution_count": rs["count"], "resolution_median_hours": rs["median_hours"],
        "resolution_p90_hours": rs["p90_hours"],
        "surveys_sent": s["surveys_sent"], "surveys_answered": s["answered"],
        "response_rate": s["response_rate"], "average_rating": s["average"],
        "share_4_5": s["share_4_5"],
        "oldest_open_days": oldest[0]["age_days"] if oldest else None,
    }


def as_json(data: dict) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False)


def as_csv(data: dict) -> str:
    """A header row, one row per group (with --by), and the total."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([data["by"] or "group", *COLUMNS])
    for group in data["groups"]:
        writer.writerow([group["name"], *(_cell(v) for v in flat(group).values())])
    writer.writerow(["(total)", *(_cell(v) for v in flat(data).values())])
    return out.getvalue()


def _cell(value) -> str:
    return "" if value is None else str(value)


def _time(t: dict) -> str:
    if not t["count"]:
        return "-"
    return f"median {t['median']}, 90% within {t['p90']} ({t['count']})"


def as_text(data: dict) -> str:
    s = data["satisfaction"]
    counted = "open hours ([calendar])" if data["business_hours"] else "elapsed time"
    lines = [
        f"Help desk report, {data['period']} ({data['timezone']})",
        f"  {'tickets created':<22}{data['opened']}",
        f"  {'resolved':<22}{data['resolved']} ({data['resolved_by_staff']} by staff, "
        f"{data['resolved_by_timeout']} by the timeout)",
        f"  {'closed':<22}{data['closed']}",
        f"  {'reopened':<22}{data['reopened']}",
        f"  {'backlog':<22}{data['backlog_start']} at the start, {data['backlog_end']} "
        "at the end",
        f"  {'first response':<22}{_time(data['first_response'])}",
        f"  {'resolution':<22}{_time(data['resolution'])}",
        f"  {'':<22}times in {counted}",
        f"  {'surveys':<22}{s['surveys_sent']} sent, {s['answered']} answered"
        + (f" ({s['response_rate']:.0%}), average {s['average']} of 5, "
           f"{s['share_4_5']:.0%} gave 4 or 5" if s["answered"] else ""),
        "  " + f"{'ratings':<22}" + ", ".join(f"{k}: {v}" for k, v in s["ratings"].items()),
    ]
    lines += [f"    \u201c{' '.join(c.split())[:200]}\u201d" for c in s["comments"][-5:]]
    if data["oldest_open"]:
        lines.append("  oldest open")
        lines += [f"    #{t['id']:<6} {t['age_days']:>6} days  {t['subject'][:60]}"
                  for t in data["oldest_open"]]
    if data["by"]:
        lines += ["", f"By {data['by']}:", _table(data["groups"])]
    return "\n".join(lines)


def _table(groups: list[dict]) -> str:
    head = ("group", "opened", "resolved", "timeout", "backlog", "1st resp", "resolution",
            "rating")
    body = [(g["name"][:30], str(g["opened"]), str(g["resolved"]),
             str(g["resolved_by_timeout"]), f"{g['backlog_start']}->{g['backlog_end']}",
             g["first_response"]["median"] or "-", g["resolution"]["median"] or "-",
             "-" if g["satisfaction"]["average"] is None
             else f"{g['satisfaction']['average']} ({g['satisfaction']['answered']})")
            for g in groups]
    widths = [max(len(r[i]) for r in (head, *body)) for i in range(len(head))]
    return "\n".join("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in (head, *body))
