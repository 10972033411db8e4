"""``mailhelp tickets``, ``failed`` and ``report``: the commands that read the desk's
records (and put failed messages through again). Each imports what it uses when it
runs, so that the command line stays quick to start for ``mailhelp ingest``."""

from __future__ import annotations

import sys

from .errors import MailhelpError, UsageError
from .states import RawState


def cmd_tickets(config, args) -> int:
    import json

    from .app import App
    from .web.views import (
        ticket_deliveries,
        ticket_json,
        ticket_line,
        ticket_messages,
        ticket_query,
        ticket_text,
    )

    app = App.create(config)
    zone = config.helpdesk.zone  # times as the desk's clock shows them, JSON's too
    with app.db.sessions() as session:
        if args.action == "list":
            tickets = list(session.scalars(ticket_query(args.status)))
            if args.json:
                print(json.dumps([ticket_json(t, zone=zone) for t in tickets], indent=1))
            else:
                for ticket in tickets:
                    print(ticket_line(ticket, zone))
            return 0
        ticket = session.scalar(ticket_query().filter_by(id=args.id))
        if ticket is None:
            raise MailhelpError(f"ticket {args.id} not found")
        messages = ticket_messages(session, ticket.id)
        deliveries = ticket_deliveries(session, ticket.id)
        if args.json:
            print(json.dumps(ticket_json(ticket, messages, deliveries, zone), indent=1))
        else:
            print(ticket_text(ticket, messages, deliveries, zone))
    return 0


def cmd_failed(config, args) -> int:
    import json

    from sqlalchemy import select

    from .app import App
    from .db.models import RawMessage
    from .db.session import transaction
    from .mail.printable import printable
    from .web.views import failed_json, failed_line

    app = App.create(config)
    if args.action == "list":
        with app.db.sessions() as session:
            rows = list(session.scalars(select(RawMessage)
                                        .where(RawMessage.state == RawState.FAILED)
                                        .order_by(RawMessage.id)))
            if args.json:
                print(json.dumps([failed_json(r, config.helpdesk.zone) for r in rows],
                                 indent=1))
            for row in rows if not args.json else ():
                print(failed_line(row, config.helpdesk.zone))
        return 0
    with transaction(app.db) as tx:
        query = select(RawMessage.id).where(RawMessage.state == RawState.FAILED)
        if args.id is not None:
            query = query.where(RawMessage.id == args.id)
        ids = list(tx.scalars(query.order_by(RawMessage.id)))
    if args.id is not None and not ids:
        raise MailhelpError(f"no failed message with id {args.id}")
    pipeline = app.pipeline()
    still_failing = 0
    recovered = []
    for raw_id in ids:
        result = pipeline.process(raw_id)
        still_failing += result.failed
        if not result.failed:
            recovered.append(raw_id)
        print(f"{raw_id}: {result.state}"
              + (f" ({printable(str(result.error))})" if result.failed else ""))
    from .app import flush_outbox

    if recovered and config.imap is not None:
        _refile_recovered(app, recovered)
    flush_outbox(app)
    return 1 if still_failing else 0


def _refile_recovered(app, raw_ids: list[int]) -> None:
    """Move the mailbox copies of messages that now went through out of the failed folder."""
    from .db.models import RawMessage
    from .service.imap import ImapMailbox, connection_errors

    with app.db.sessions() as session:
        ids = [session.get(RawMessage, i).message_id for i in raw_ids
               if session.get(RawMessage, i).source.startswith("imap:")]
    if not ids:
        return
    imap = app.config.imap
    mailbox = ImapMailbox(imap)
    try:
        mailbox.connect()
        mailbox.client.select_folder(imap.failed_folder)
        uids = [uid for message_id in ids
                for uid in mailbox.client.search(["HEADER", "Message-ID", message_id])]
        mailbox.move(uids, imap.processed_folder)
        print(f"moved {len(uids)} message(s) from {imap.failed_folder} to "
              f"{imap.processed_folder}")
    except connection_errors() as error:
        print(f"mailhelp: could not refile in the mailbox: {error}", file=sys.stderr)
    finally:
        mailbox.close()


def cmd_report(config, args) -> int:
    import json

    from .app import App
    from .durations import parse_duration
    from .report import as_html, as_text, figures

    try:
        since = parse_duration(args.since)
    except ValueError as error:
        raise UsageError(f"--since: {error}") from None
    app = App.create(config)
    now = app.clock()
    with app.db.sessions() as session:
        data = figures(session, now - since, now, config.helpdesk.zone)
    if args.format == "json":
        print(json.dumps(data, indent=1))
    else:
        print(as_html(data) if args.format == "html" else as_text(data))
    return 0
