"""How many SQL statements the backlog's mix costs a message, and which ones.

    python -m benchmarks.census                      # 1,000 messages, SQLite and PostgreSQL
    python -m benchmarks.census --messages 4000 --databases postgresql --top 20
    python -m benchmarks.census --cpu --runs 3      # + this process's CPU time a message

In process, without mail servers: the teacher stream (the backlog benchmark's seed) is
stored and applied by mailhelp's Pipeline in the daemon's batches (the default [imap]
batch_size), with no rate limits, and every statement sent to the database is counted
(SQLAlchemy's before_cursor_execute; an executemany is one). Sending is not counted:
the sender's statements are per batch of mails, not per message. Prints the total,
statements per message, by verb, and the commonest statements. A PostgreSQL round trip
costs the daemon and the server CPU; this is the figure to watch while changing the
workflow (it does not vary with the machine's speed). ``--cpu`` adds the CPU time this
process spent applying them (not the database server's), which other work on the
machine disturbs far less than a wall-clock rate: the median of ``--runs``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .harness import NO_RATE_LIMITS, Database, desk_lines, pg_available
from .teachermail import TeacherMail

START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def census(kind: str, directory: Path, count: int, seed: int) -> tuple[Counter, int, float]:
    from sqlalchemy import event

    from mailhelp import config as config_module
    from mailhelp.config import ImapConfig
    from mailhelp.db.migrate import upgrade
    from mailhelp.db.session import Database as MailhelpDatabase
    from mailhelp.service.pipeline import Arrival, Pipeline

    database = Database(kind, directory)
    try:
        config = config_module.loads("\n".join([*desk_lines(directory, database.url),
                                                "[limits]", *NO_RATE_LIMITS]) + "\n")
        db = MailhelpDatabase(database.url)
        upgrade(db)
        statements: Counter = Counter()
        clock = [START]
        pipeline = Pipeline(config, db, lambda: clock[0])

        def count_statement(conn, cursor, statement, *rest) -> None:
            statements[_shape(statement)] += 1

        event.listen(db.engine, "before_cursor_execute", count_statement)
        messages = list(TeacherMail(seed).messages(count))
        # As the daemon fetches and accepts them: [imap] batch_size at a time.
        batch = ImapConfig.__dataclass_fields__["batch_size"].default
        cpu = time.process_time()
        for start in range(0, len(messages), batch):
            clock[0] += timedelta(seconds=30)
            pipeline.accept([Arrival(m.raw, "imap:INBOX", 1, start + i + 1)
                             for i, m in enumerate(messages[start:start + batch])])
        cpu = time.process_time() - cpu
        event.remove(db.engine, "before_cursor_execute", count_statement)
        db.dispose()
        return statements, len(messages), cpu
    finally:
        database.drop()


def _shape(statement: str) -> str:
    """One line per statement, its expanded IN lists folded: the same query, counted once."""
    text = " ".join(statement.split())
    text = re.sub(r"\((?:\s*(?:\?|%\(\w+\)s|\$\d+|%s)\s*,?)+\)", "(...)", text)
    return text[:160]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--top", type=int, default=12, help="commonest statements shown")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--cpu", action="store_true", help="print CPU ms a message too")
    parser.add_argument("--runs", type=int, default=1, help="with --cpu: the median of")
    args = parser.parse_args(argv)
    for kind in args.databases.split(","):
        if kind == "postgresql" and (why := pg_available()):
            print(f"census {kind}: skipped, PostgreSQL not reachable ({why})")
            continue
        cpu = []
        for _ in range(args.runs if args.cpu else 1):
            with tempfile.TemporaryDirectory(prefix="mailhelp-census-") as directory:
                print(f"  .. census on {kind}: {args.messages} messages", file=sys.stderr)
                statements, count, seconds = census(kind, Path(directory), args.messages,
                                                    args.seed)
            cpu.append(seconds)
        total = sum(statements.values())
        verbs = Counter()
        for shape, n in statements.items():
            verbs[shape.split(" ", 1)[0].upper()] += n
        print(f"census {kind}: {total} statements for {count} messages, "
              f"{total / count:.2f} a message ("
              + ", ".join(f"{verb} {n}" for verb, n in verbs.most_common()) + ")")
        if args.cpu:
            print(f"census {kind}: {1000 * statistics.median(cpu) / count:.2f} ms CPU a "
                  f"message in this process (median of {len(cpu)}: "
                  + ", ".join(f"{1000 * c / count:.2f}" for c in cpu) + ")")
        for shape, n in statements.most_common(args.top):
            print(f"  {n:6d}  {shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
