"""The staff command line and the report on a large desk (issue 19): 100,000 tickets
and 500,000 messages, on SQLite and PostgreSQL.

    python -m benchmarks.scale                          # 100,000 tickets, both databases
    python -m benchmarks.scale --quick                  # 10,000 tickets
    python -m benchmarks.scale --tickets 50000 --databases sqlite --runs 7

The desk is generated, not mailed in: people, tickets, five messages a ticket (the
request, the acknowledgement and a staff notification, a staff answer, the teacher's
reply), surveys on resolved tickets, inserted with SQLAlchemy Core in batches of
5,000 into a schema that ``mailhelp init`` made (so the full-text triggers and indexes
of migration 0010 do their work during the load, as they would over the years). Then
each command runs in a fresh process, as a technician would type it (Python start-up
and imports included: the floor line says how much that is), ``--runs`` times; the
median is printed with the best and worst. The target is under a second each for
``tickets list`` (filtered pages and all 100,000 piped), ``--search`` and ``report``
(30 days and a year, grouped or not); ``show`` and the export are timed untargeted.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .harness import Database, desk_lines, mailhelp_command, pg_available

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
SCHOOLS = [f"{name} {kind}" for name in ("Lincoln", "Adams", "Jefferson", "Madison",
                                         "Monroe", "Jackson", "Grant", "Hayes", "Garfield",
                                         "Arthur") for kind in ("Elementary", "Middle",
                                                                "High", "Academy")]
CATEGORIES = ["Printers", "Projectors", "Network", "Accounts", "Laptops", "Phones",
              "Software", "Smartboards", ""]
_SAID = ("the screen is dark again after the update and the cable seems fine but nothing "
         "shows when I press the button please help before my class at nine thank you "
         "printer toner paper jam tray projector lamp hdmi wifi password login grades "
         "laptop charger keyboard mouse battery")
WORDS = _SAID.split()
# What requests are about, one in a subject each; then words drawn as language draws
# them (Zipf: the n-th commonest word 1/n as often as the first), from 5,000.
TOPICS = ("printer", "toner", "projector", "lamp", "hdmi", "wifi", "password", "login",
          "grades", "laptop", "charger", "keyboard", "smartboard", "phone", "email",
          "account", "camera", "speaker", "chromebook", "scanner")
VOCABULARY = WORDS + [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "po", "ru", "sa", "te",
                                          "vi", "zo") for b in range(500)][:5000 - len(WORDS)]
ZIPF = list(itertools.accumulate(1 / rank for rank in range(1, len(VOCABULARY) + 1)))
BATCH = 5_000
STATUSES = (("closed", 0.55), ("resolved", 0.1), ("pending", 0.12), ("open", 0.13),
            ("new", 0.1))


def generate(url: str, tickets: int, seed: int, say) -> tuple[int, float]:
    """Fill the desk; return (messages, seconds)."""
    from sqlalchemy import create_engine, insert

    from mailhelp.db.models import Message, Person, Survey, Ticket, TicketEvent

    rng = random.Random(seed)
    events_rng = random.Random(seed + 1)  # apart: the tickets stay those of before
    engine = create_engine(url)
    began = time.monotonic()
    teachers = [{"id": n, "address": f"teacher{n}@school.test", "name": f"Teacher {n}",
                 "created_at": NOW - timedelta(days=800)} for n in range(1, 2001)]
    techs = [{"id": 3000 + n, "address": f"tech{n}@school.test", "name": f"Tech {n}",
              "created_at": NOW - timedelta(days=800)} for n in range(1, 21)]
    with engine.begin() as connection:
        connection.execute(insert(Person), teachers + techs)
    messages = 0
    span = timedelta(days=1461).total_seconds()
    for start in range(1, tickets + 1, BATCH):
        ticket_rows, message_rows, survey_rows, event_rows = [], [], [], []
        for number in range(start, min(start + BATCH, tickets + 1)):
            # Four school years at an even pace: about 2,000 tickets in any 30 days.
            age = span * rng.random()
            created = NOW - timedelta(seconds=age)
            status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
            teacher = teachers[rng.randrange(len(teachers))]
            tech = techs[rng.randrange(len(techs))] if status != "new" else None
            subject = (rng.choice(TOPICS) + " " + " ".join(rng.choices(
                VOCABULARY, cum_weights=ZIPF, k=3))).capitalize()
            answered = created + timedelta(hours=rng.uniform(0.2, 30))
            done = answered + timedelta(hours=rng.uniform(1, 100))
            ticket_rows.append({
                "id": number, "subject": subject, "status": status,
                "priority": rng.choice(("low", "normal", "normal", "high")),
                "requester_id": teacher["id"], "assignee_id": tech and tech["id"],
                "created_at": created, "updated_at": min(done, NOW),
                "first_response_at": answered if tech else None,
                "resolved_at": done if status in ("resolved", "closed") else None,
                "closed_at": done if status == "closed" else None,
                "resolved_by": tech["address"] if tech and status in ("resolved", "closed")
                else "", "school": rng.choice(SCHOOLS), "room": str(rng.randrange(1, 300)),
                "category": rng.choice(CATEGORIES)})
            # A word of its own in the request's body only: what --search must find.
            body = (" ".join(rng.choices(VOCABULARY, cum_weights=ZIPF, k=30))
                    + f" code{number % 5000:04d}")
            kinds = (("request", "in", teacher["address"], body),
                     ("ack", "out", "help@school.test", "we have received your request"),
                     ("notification", "out", "help@school.test", body),
                     ("staff_reply", "in", tech["address"] if tech else "tech1@school.test",
                      " ".join(rng.choices(VOCABULARY, cum_weights=ZIPF, k=20))),
                     ("reply", "in", teacher["address"],
                      " ".join(rng.choices(VOCABULARY, cum_weights=ZIPF, k=12))))
            for n, (kind, direction, sender, text) in enumerate(kinds):
                message_rows.append({
                    "ticket_id": number, "direction": direction, "kind": kind,
                    "message_id": f"<{number}.{n}@bench.school.test>", "in_reply_to": "",
                    "references": [], "from_address": sender, "from_name": "", "to": [],
                    "cc": [], "subject": subject if n == 0 else f"Re: [#{number}] {subject}",
                    "date": created + timedelta(minutes=n), "text": text, "body": text,
                    "thread_reason": "", "created_at": created + timedelta(minutes=n)})
            event_rows.extend(_history(number, status, tech, answered, done, events_rng))
            if status in ("resolved", "closed") and rng.random() < 0.6:
                survey_rows.append({
                    "ticket_id": number, "token": f"t{number}", "sent_at": done,
                    "rating": rng.choice((None, 3, 4, 5, 5)), "comment": "",
                    "answered_at": done + timedelta(hours=2)})
        with engine.begin() as connection:
            connection.execute(insert(Ticket), ticket_rows)
            connection.execute(insert(Message), message_rows)
            if survey_rows:
                connection.execute(insert(Survey), survey_rows)
            if event_rows:
                connection.execute(insert(TicketEvent), event_rows)
        messages += len(message_rows)
        say(f"{min(start + BATCH - 1, tickets)} tickets, {messages} messages, "
            f"{time.monotonic() - began:.0f} s")
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")  # as a desk that has been running would be
    engine.dispose()
    return messages, time.monotonic() - began


def _history(number: int, status: str, tech, answered, done, rng) -> list[dict]:
    """A ticket's events as the desk writes them (what the report counts): assigned and
    new -> open at the first answer, pending for a while on some, then resolved (by the
    pending timeout on some) and closed a few days later."""
    if tech is None:
        return []
    by = tech["address"]
    rows = [{"ticket_id": number, "at": answered, "actor": by, "action": "assign",
             "detail": by},
            {"ticket_id": number, "at": answered, "actor": by, "action": "status",
             "detail": "new -> open"}]
    state = "open"
    if status == "pending" or rng.random() < 0.3:
        rows.append({"ticket_id": number, "at": min(answered + timedelta(hours=1), done),
                     "actor": by, "action": "status", "detail": "open -> pending"})
        state = "pending"
    if status in ("resolved", "closed"):
        actor = "system:auto-resolve" if state == "pending" and rng.random() < 0.5 else by
        rows.append({"ticket_id": number, "at": done, "actor": actor, "action": "status",
                     "detail": f"{state} -> resolved"})
        if status == "closed":
            rows.append({"ticket_id": number, "at": done + timedelta(days=3),
                         "actor": "system", "action": "status",
                         "detail": "resolved -> closed"})
    return [row for row in rows if row["at"] <= NOW]


COMMANDS = (
    ("tickets list --status open --limit 50", ["tickets", "list", "--status", "open",
                                                "--limit", "50"]),
    ("tickets list --status new --status open --school S", [
        "tickets", "list", "--status", "new", "--status", "open", "--school",
        "Lincoln High"]),
    ("tickets list --assignee A --since 30d", ["tickets", "list", "--assignee",
                                               "tech7@school.test", "--since", "30d"]),
    ("tickets list --search WORD (in a body)", ["tickets", "list", "--search", "code0042"]),
    ("tickets list --search TOPIC --limit 50", [
        "tickets", "list", "--search", "projector", "--limit", "50"]),
    ("tickets list --search 2 words, one common", [
        "tickets", "list", "--search", "projector screen"]),
    ("tickets list --search the commonest word --limit 50", [
        "tickets", "list", "--search", "the", "--limit", "50"]),
    ("tickets list --json --limit 100", ["tickets", "list", "--json", "--limit", "100"]),
    ("tickets show N", ["tickets", "show", "{middle}"]),
    ("report --since 30d", ["report", "--since", "30d"]),
    ("report --since 365d", ["report", "--since", "365d"]),
    ("report --since 365d --by school", ["report", "--since", "365d", "--by", "school"]),
    ("tickets list (all, piped)", ["tickets", "list"]),
    ("tickets export --format csv (all)", ["tickets", "export", "--format", "csv"]),
)


def timed(command: list[str], runs: int, env=None) -> tuple[list[float], int]:
    times, lines = [], 0
    for _ in range(runs):
        began = time.monotonic()
        done = subprocess.run(command, capture_output=True, timeout=600, env=env)
        times.append(time.monotonic() - began)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.decode()[-2000:]}")
        lines = done.stdout.count(b"\n")
    return times, lines


# One process, imports done once: main() run again and again, its output to /dev/null.
# What is left is the command's own work: engine, queries, formatting, writing.
_INSIDE = """
import contextlib, json, sys, time
from mailhelp.cli import main
argv, runs = json.loads(sys.argv[1]), int(sys.argv[2])
times = []
with open("/dev/null", "w") as sink:
    for _ in range(runs):
        began = time.perf_counter()
        with contextlib.redirect_stdout(sink):
            assert main(argv) == 0
        times.append(time.perf_counter() - began)
print(json.dumps(times))
"""


def in_process(argv: list[str], runs: int, env) -> list[float]:
    import json

    done = subprocess.run([sys.executable, "-P", "-c", _INSIDE, json.dumps(argv), str(runs)],
                          capture_output=True, timeout=900, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.decode()[-2000:]}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10,000 tickets, 3 runs")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--at", metavar="REVISION",
                        help="time the mailhelp of this commit (git archive), not the "
                        "working tree's")
    parser.add_argument("--only", metavar="WORDS",
                        help="time only the commands whose label holds these words")
    args = parser.parse_args(argv)
    if args.quick:
        args.tickets, args.runs = 10_000, 3

    def say(text: str) -> None:
        print(f"  .. {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="mailhelp-code-") as code:
        command, revision = _mailhelp_at(args.at, Path(code))
        floor, _ = timed([sys.executable, "-P", "-c", FLOOR], args.runs, env=_env(args.at, code))
        print(f"mailhelp scale benchmark at {revision}: {args.tickets} tickets, median of "
              f"{args.runs} runs in fresh processes (3 for whole listings); floor (python "
              f"and the imports of a tickets command) {statistics.median(floor):.3f} s",
              flush=True)
        for kind in args.databases.split(","):
            _one_database(kind, args, command, _env(args.at, code), say)
    return 0


# What every tickets command imports before it asks the database anything.
FLOOR = "import mailhelp.cli, mailhelp.app, mailhelp.db.models, mailhelp.web.views"


def _mailhelp_at(revision: str | None, directory: Path) -> tuple[list[str], str]:
    root = Path(__file__).resolve().parents[1]
    if revision is None:
        described = subprocess.run(["git", "-C", str(root), "describe", "--always",
                                    "--dirty"], capture_output=True, text=True).stdout.strip()
        return mailhelp_command(), f"the working tree ({described or '?'})"
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", revision],
                            capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(root), "archive", commit, "mailhelp",
                              "templates"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    # -P: not the current directory first on sys.path (with -m or -c it is, and from
    # the repository that imported the working tree's mailhelp, not the commit's).
    return [sys.executable, "-P", "-m", "mailhelp"], f"commit {commit}"


def _env(revision: str | None, code: str) -> dict[str, str] | None:
    import os

    return {**os.environ, "PYTHONPATH": code} if revision else None


def _one_database(kind: str, args, command: list[str], env, say) -> None:
    """Generate the desk on one database, then time each command on it."""
    if kind == "postgresql" and pg_available():
        print(f"{kind}: SKIPPED ({pg_available()})")
        return
    with tempfile.TemporaryDirectory(prefix="mailhelp-scale-") as directory:
        root = Path(directory)
        database = Database(kind, root)
        try:
            config = root / "mailhelp.toml"
            lines = desk_lines(root, database.url)
            lines[lines.index("[helpdesk]") + 1:1] = ['timezone = "America/Chicago"']
            config.write_text("\n".join(lines) + "\n")
            base = [*command, "--config", str(config)]
            subprocess.run([*base, "init"], check=True, capture_output=True, env=env)
            messages, seconds = generate(database.url, args.tickets, args.seed, say)
            print(f"{kind}: generated {args.tickets} tickets, {messages} messages in "
                  f"{seconds:.0f} s", flush=True)
            for label, given in COMMANDS:
                if args.only and args.only not in label:
                    continue
                words = [part.format(middle=args.tickets // 2) for part in given]
                runs = min(args.runs, 3) if "(all" in label else args.runs
                times, count = timed([*base, *words], runs, env=env)
                inside = in_process([*base[len(command):], *words], runs, env)
                median = statistics.median(times)
                # The three: tickets list (whole, too), --search and report.
                target = "" if "export" in label or "show" in label else (
                    "  < 1 s: " + ("PASS" if median < 1 else "MISS"))
                print(f"  {kind:<10} {label:<50} {median:6.3f} s  (min {min(times):.3f}, "
                      f"max {max(times):.3f}); in process {statistics.median(inside):.3f} s; "
                      f"{count} lines{target}", flush=True)
        finally:
            database.drop()


if __name__ == "__main__":
    sys.exit(main())
