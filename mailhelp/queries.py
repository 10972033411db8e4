"""``mailhelp tickets``, ``failed`` and ``report``: the commands that read the desk's
records (and put failed messages through again). Each imports what it uses when it
runs, so that the command line stays quick to start for ``mailhelp ingest``."""

from __future__ import annotations

import sys

from .errors import MailhelpError, UsageError
from .states import RawState


def cmd_tickets(config, args) -> int:
    """list, show, set, export, attachment (``merge`` is tickets_merge's)."""
    from .app import App

    handler = TICKET_ACTIONS.get(args.action)
    if handler is None:
        raise UsageError(f"tickets {args.action}: not available")
    app = App.create(config)
    return handler(app, args)


def _list(app, args) -> int:
    from .cli_tickets import (
        print_tabbed,
        print_table,
        streamed,
        streamed_rows,
        terminal_width,
        ticket_object,
        write_json_array,
    )
    from .ticket_filters import Filters, listing_query, quick_plans

    zone = app.config.helpdesk.zone  # times as the desk's clock shows them, JSON's too
    filters = Filters.from_args(args, app.clock(), zone)
    query = listing_query(filters, app.db.dialect, people=args.json, columns=not args.json)
    out = sys.stdout
    with app.db.sessions() as session:
        quick_plans(session, app.db.dialect)
        if args.json:
            write_json_array((ticket_object(t, zone) for t in streamed(session, query)), out)
        elif out.isatty():
            print_table(streamed_rows(session, query), zone, out, terminal_width(out))
        else:
            print_tabbed(streamed_rows(session, query), zone, out)
    return 0


def _export(app, args) -> int:
    from contextlib import nullcontext

    from .cli_tickets import export_csv, streamed, ticket_object, write_json_array
    from .private import private_file
    from .ticket_filters import Filters, listing_query, quick_plans

    zone = app.config.helpdesk.zone
    filters = Filters.from_args(args, app.clock(), zone)
    csv_rows = args.format == "csv"
    query = listing_query(filters, app.db.dialect, people=not csv_rows, exported=csv_rows)
    if args.output:
        private_file(args.output)  # 0600 before a line is in it
    with app.db.sessions() as session, (
            open(args.output, "w", newline="", encoding="utf-8") if args.output
            else nullcontext(sys.stdout)) as out:
        quick_plans(session, app.db.dialect)
        if csv_rows:
            export_csv(session, query, zone, out)
        else:
            write_json_array((ticket_object(t, zone) for t in streamed(session, query)),
                             out)
    return 0


def _show(app, args) -> int:
    import json

    from .cli_tickets import conversation_text, found_ticket, ticket_object
    from .web.views import ticket_deliveries, ticket_messages

    zone = app.config.helpdesk.zone
    with app.db.sessions() as session:
        ticket = found_ticket(session, args.id)
        messages = ticket_messages(session, ticket.id)
        deliveries = ticket_deliveries(session, ticket.id)
        if args.json:
            print(json.dumps(ticket_object(ticket, zone, messages, deliveries), indent=1))
        else:
            print(conversation_text(ticket, messages, deliveries, zone))
    return 0


def _set(app, args) -> int:
    from .app import flush_outbox
    from .cli_tickets import found_ticket
    from .db.session import transaction
    from .db.storage import AttachmentStore
    from .ticket_set import actor, apply, command_lines

    lines = command_lines(args)
    who, now = actor(), app.clock()
    with transaction(app.db) as tx:
        ticket = found_ticket(tx, args.id)
        changes = apply(tx, app.config, ticket, lines, who, now,
                        AttachmentStore(app.config.storage.attachments_dir))
    print(f"ticket {args.id}: " + ("; ".join(changes) or "unchanged"))
    flush_outbox(app)  # the mail the change caused, now rather than at the next pass
    return 0


def _attachment(app, args) -> int:
    from .db.storage import AttachmentStore
    from .ticket_files import files_of, write_out

    store = AttachmentStore(app.config.storage.attachments_dir)
    with app.db.sessions() as session:
        found = files_of(session, args.id, args.attachment_id)
        written = write_out(store, found, args.output)
    for item in written:
        print(f"file {item.attachment_id}: {item.size} bytes -> {item.path}")
    return 0


TICKET_ACTIONS = {"list": _list, "show": _show, "set": _set, "export": _export,
                  "attachment": _attachment}


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
    from .reports.command import run

    return run(config, args)
