"""``mailhelp report``: the period and grouping from the command line, one report,
printed in the format asked for, or (``--mail``) queued to ``[report] digest_to``."""

from __future__ import annotations

from ..errors import ConfigError
from .periods import choose


def run(config, args) -> int:
    from ..app import App
    from . import build
    from .html import page
    from .render import as_csv, as_json, as_text

    app = App.create(config)
    now = app.clock()
    zone = config.helpdesk.zone
    asked = any(getattr(args, k, None) is not None
                for k in ("since", "month", "date_from", "date_to"))
    if getattr(args, "mail", False):
        from .mailing import NOW_KIND, send, week_before

        if not config.report.digest_to:
            raise ConfigError("report.digest_to: empty; --mail sends the digest to it")
        period = (choose(zone, now, args.since, args.month, args.date_from, args.date_to)
                  if asked else week_before(config, now))
        queued = send(app.db, config, period, config.report.digest_to, NOW_KIND, now, now,
                      args.by)
        # The daemon (or `run --once`) sends it with the rest of the outbox.
        print(f"queued the report of {period.label} to {queued} address(es)")
        return 0
    period = choose(zone, now, args.since, args.month, args.date_from, args.date_to)
    with app.db.sessions() as session:
        data = build(session, config, period, args.by)
    render = {"json": as_json, "csv": as_csv, "text": as_text,
              "html": lambda d: page(config, d)}[args.format]
    print(render(data), end="" if args.format == "csv" else "\n")
    return 0
