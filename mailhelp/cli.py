"""The command line. Thin: parse arguments, call one function, print, exit.

Imports are deferred into the commands so that a pipe alias (``mailhelp
ingest``) starts quickly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime

from .errors import ConfigError, MailhelpError, UsageError
from .queries import cmd_failed, cmd_report, cmd_tickets
from .states import TicketStatus

log = logging.getLogger("mailhelp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailhelp", description="An email-driven help desk for school districts.")
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $MAILHELP_CONFIG, else ./mailhelp.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser("init", help="create or upgrade the database, create the IMAP folders")
    commands.add_parser("check", help="validate the config and try every connection")
    run = commands.add_parser("run", help="the daemon (or one pass with --once)")
    run.add_argument("--once", action="store_true",
                     help="process waiting mail, run due jobs, flush the outbox, exit")
    run.add_argument("--now", metavar="ISO8601", type=_instant,
                     help="with --once: run with the clock set to this instant")
    ingest = commands.add_parser("ingest", help="process messages from files or standard input")
    ingest.add_argument("files", nargs="*", metavar="FILE")

    tickets = commands.add_parser("tickets", help="list, show, change, export tickets")
    tickets_commands = tickets.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = tickets_commands.add_parser(
        "list", help="a table in a terminal (tab-separated with a header row when piped)")
    _ticket_filters(listing)
    listing.add_argument("--json", action="store_true", help="a JSON array")
    show = tickets_commands.add_parser("show", help="one ticket with its messages")
    show.add_argument("id", type=int, metavar="N")
    show.add_argument("--json", action="store_true")
    change = tickets_commands.add_parser(
        "set", help="change a ticket as #commands by mail would, with the usual mail")
    change.add_argument("id", type=int, metavar="N")
    change.add_argument("--status", choices=[s for s in TicketStatus if s != "new"])
    change.add_argument("--assign", metavar="ADDRESS", help="a staff address")
    change.add_argument("--priority", choices=("low", "normal", "high", "urgent"))
    change.add_argument("--category", metavar="NAME",
                        help='a [[categories]] name; "" for none')
    change.add_argument("--school", metavar="NAME",
                        help='where the requester is, for this ticket; "" for none')
    change.add_argument("--room", metavar="NAME", help='the room; "" for none')
    export = tickets_commands.add_parser("export", help="the listing as CSV or JSON")
    export.add_argument("--format", choices=("csv", "json"), required=True)
    export.add_argument("-o", "--output", metavar="FILE", help="instead of standard output")
    _ticket_filters(export)
    files = tickets_commands.add_parser(
        "attachment", help="write a ticket's file (all, without ID) under its own name")
    files.add_argument("id", type=int, metavar="N")
    files.add_argument("attachment_id", type=int, nargs="?", metavar="ID",
                       help="as tickets show lists it")
    files.add_argument("-o", "--output", metavar="FILE",
                       help="write here, replacing a file already there")
    merge = tickets_commands.add_parser(
        "merge", help="merge ticket B into A: its messages, people and threading move")
    merge.add_argument("survivor", type=int, metavar="A")
    merge.add_argument("merged", type=int, metavar="B")
    merge.set_defaults(handler=_tickets_merge)

    failed = commands.add_parser("failed", help="messages that could not be processed")
    failed_commands = failed.add_subparsers(dest="action", metavar="ACTION", required=True)
    failed_list = failed_commands.add_parser("list", help="with the reason for each")
    failed_list.add_argument("--json", action="store_true")
    retry = failed_commands.add_parser("retry", help="process one (or every) failed message again")
    retry.add_argument("id", type=int, nargs="?", metavar="ID")

    report = commands.add_parser("report", help="volumes, response times, satisfaction")
    report.add_argument("--since", metavar="DURATION|DATE",
                        help="how far back: 30d (the default), or from a date's local "
                        "midnight, 2026-11-01")
    report.add_argument("--month", metavar="YYYY-MM", help="a calendar month, desk time")
    report.add_argument("--from", dest="date_from", metavar="DATE",
                        help="with --to: from this day's local midnight")
    report.add_argument("--to", dest="date_to", metavar="DATE",
                        help="with --from: to the end of this day (included)")
    report.add_argument("--by", choices=("assignee", "school", "category"),
                        help="every figure per group too")
    report.add_argument("--format", choices=("text", "json", "html", "csv"), default="text")
    report.add_argument("--mail", action="store_true",
                        help="queue the digest to [report] digest_to now (default period: "
                        "the 7 days before today)")

    status = commands.add_parser("status", help="health of the running desk (exit 1: degraded)")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument("--outbox-age", metavar="DURATION", default="1h",
                        help="queued mail older than this is late (default 1h)")

    oauth2 = commands.add_parser("oauth2", help="OAuth 2.0 sign-in for [imap] and [smtp]")
    oauth2_commands = oauth2.add_subparsers(dest="action", metavar="ACTION", required=True)
    authorize = oauth2_commands.add_parser(
        "authorize", help="get the refresh token once (Microsoft: a device code; Google: "
        "a browser sent back to this machine) and write it to refresh_token_file")
    authorize.add_argument("--device-url", metavar="URL",
                           help="Microsoft: the device authorization endpoint, where not "
                           "beside [oauth2] token_url")
    authorize.add_argument("--authorization-url", metavar="URL",
                           help="Google: the authorization endpoint, where not Google's")

    serve = commands.add_parser("serve", help="the web app for one-click survey answers")
    serve.add_argument("--listen", metavar="HOST:PORT",
                       help="address to listen on (default: [survey] listen)")

    demo = commands.add_parser("demo", help="a self-contained walk-through on this machine")
    demo.add_argument("--imap-server", choices=("auto", "dovecot", "pymap"), default="auto",
                      help="which local IMAP server to start (auto: Dovecot if installed)")
    demo.add_argument("--keep", action="store_true",
                      help="leave the servers running until Ctrl-C, to look around")
    return parser


def _ticket_filters(parser: argparse.ArgumentParser) -> None:
    # "merged": the tickets merged into another (stored closed), listed only when asked
    # for (ticket_filters.MERGED).
    parser.add_argument("--status", action="append", choices=[*TicketStatus, "merged"],
                        help="repeat for several; merged: tickets merged into another")
    parser.add_argument("--assignee", metavar="ADDRESS", help='"none": unassigned')
    parser.add_argument("--requester", metavar="ADDRESS")
    parser.add_argument("--school", metavar="NAME")
    parser.add_argument("--category", metavar="NAME")
    parser.add_argument("--search", metavar="TEXT",
                        help="tickets with every word in a subject or message text")
    parser.add_argument("--since", metavar="D", help="opened since: 30d, or a date")
    parser.add_argument("--limit", type=int, metavar="N", help="the newest N")


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}+00:00 or {text}Z")
    return value


def _tickets_merge(config, args) -> int:
    from .desk.merge import cmd_merge

    return cmd_merge(config, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(keep=args.keep, imap_server=args.imap_server)
        from . import config as config_module

        config = config_module.load(args.config)
        _setup_logging(config, args)
        # A subcommand may name its own function (tickets merge); else the command's.
        handler = getattr(args, "handler", None) or COMMANDS[args.command]
        return handler(config, args)
    except MailhelpError as error:
        from .mail.printable import printable

        print(f"mailhelp: {printable(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


def _setup_logging(config, args) -> None:
    quiet = args.command in ("tickets", "failed", "check", "report", "status")
    level = logging.DEBUG if args.verbose else getattr(logging, config.log.level.upper())
    if quiet and not args.verbose:
        level = logging.WARNING
    # The file is opened at the first line, once private_file has made it 0600 (a warning
    # it gives about an existing file then goes there too).
    handler: logging.Handler = (logging.FileHandler(config.log.file, delay=True)
                                if config.log.file else logging.StreamHandler(sys.stderr))
    # One line per event, whatever a message's headers hold (printable.py).
    from .mail.printable import OneLineFormatter

    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if config.log.file:
        from .private import private_file

        private_file(config.log.file)
        try:
            with open(config.log.file, "a"):
                pass
        except OSError as error:
            raise ConfigError(f"log.file: cannot write {config.log.file}: "
                              f"{error.strerror}") from None
    # Library chatter is not our events; keep their warnings, drop their debug lines.
    for noisy in ("imapclient", "aiosmtplib", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def cmd_init(config, args) -> int:
    from .db.migrate import init_schema
    from .db.session import Database

    db = Database(config.database.url)
    db.schema_ready()  # a clear one-line error when the database cannot be reached
    init_schema(db, say=print)
    if config.imap is not None:
        from .service.imap import ImapMailbox, connection_errors

        mailbox = ImapMailbox(config.imap)
        try:
            mailbox.connect()
            created = mailbox.ensure_folders()
        except connection_errors() as error:
            raise MailhelpError(f"imap: {error}") from error
        finally:
            mailbox.close()
        print("imap: created " + ", ".join(created) if created
              else "imap: folders already there")
    return 0


def cmd_check(config, args) -> int:
    from .check import run_checks

    ok = True
    for result in run_checks(config):
        print(result.line(), flush=True)
        ok = ok and result.ok
    return 0 if ok else 1


def cmd_run(config, args) -> int:
    if args.now and not args.once:
        raise UsageError("--now goes with --once")
    from .service.ingest import start_up

    with start_up():
        from .app import App
        from .service.daemon import run_daemon, run_once

        app = App.create(config, now=args.now)
    if not args.once:
        run_daemon(app)
        return 0
    from sqlalchemy.exc import OperationalError

    from .service.imap import connection_errors

    try:
        summary = run_once(app)
    except OperationalError as error:
        raise MailhelpError(f"database: {str(error.orig).splitlines()[0]}") from error
    except connection_errors() as error:
        raise MailhelpError(f"imap: {error}") from error
    print(f"processed {summary.taken} message(s) ({summary.failed} failed); "
          f"ran {summary.jobs} timed job(s); "
          f"sent {summary.sent} mail(s), {summary.deferred} waiting to be retried, "
          f"{summary.send_failed} failed")
    # A message that failed is in the failed folder, waiting for a person: a cron job or
    # a script should notice.
    return 1 if summary.failed else 0


def cmd_ingest(config, args) -> int:
    from .service.ingest import ingest

    return ingest(config, args.files)


def cmd_status(config, args) -> int:
    import json

    from .durations import parse_duration
    from .status import collect

    try:
        outbox_age = parse_duration(args.outbox_age)
    except ValueError as error:
        raise UsageError(f"--outbox-age: {error}") from None
    health = collect(config, outbox_age=outbox_age)
    if args.json:
        print(json.dumps(health.as_json(), indent=1))
    else:
        print("\n".join(health.lines()))
    return 0 if health.healthy else 1


def cmd_serve(config, args) -> int:
    from .app import App
    from .web.site import serve

    app = App.create(config)
    serve(app, args.listen or config.survey.listen)
    return 0


def cmd_oauth2(config, args) -> int:
    from .oauth2.authorize import authorize
    from .oauth2.tokens import mailbox_user

    if config.oauth2 is None:
        raise ConfigError("oauth2: section missing (authorize writes its refresh_token_file)")
    endpoint = args.device_url or args.authorization_url or ""
    said = authorize(config.oauth2, mailbox_user(config), endpoint=endpoint,
                     say=lambda text: print(text, flush=True))
    print(said)
    return 0


COMMANDS = {
    "oauth2": cmd_oauth2,
    "report": cmd_report,
    "serve": cmd_serve,
    "status": cmd_status,
    "init": cmd_init,
    "check": cmd_check,
    "run": cmd_run,
    "ingest": cmd_ingest,
    "tickets": cmd_tickets,
    "failed": cmd_failed,
}
