"""What the outbox sender costs a mail: CPU time, wall time and SQL statements.

    python -m benchmarks.sender_cost                  # 300 requests, SQLite and PostgreSQL
    python -m benchmarks.sender_cost --requests 500 --databases sqlite --runs 5

In process, as ``mailhelp run --once`` without a daemon beside it: the requests are
applied by the Pipeline (not measured), then one flush of the OutboxSender sends their
acknowledgements and staff notifications to an aiosmtpd sink in a process of its own
(so that its CPU time is not counted). Statements are counted on the sender's engine
(SQLAlchemy's before_cursor_execute; an executemany is one). The figures to watch while
changing delivery/: CPU time is disturbed far less than a wall-clock rate by the
machine's other work, and the statement count not at all. Medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from .harness import NO_RATE_LIMITS, Database, desk_lines, pg_available

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def one_flush(kind: str, directory: Path, requests: int) -> tuple[int, float, float, int]:
    """(mails sent, CPU seconds, wall seconds, statements) of one flush."""
    from sqlalchemy import event

    from mailhelp import config as config_module
    from mailhelp.db.migrate import upgrade
    from mailhelp.db.session import Database as MailhelpDatabase
    from mailhelp.delivery.worker import OutboxSender
    from mailhelp.localmail import free_port
    from mailhelp.service.pipeline import Arrival, Pipeline

    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-c",
                             "aiosmtpd.handlers.Sink", "-l", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = Database(kind, directory)
    try:
        config = config_module.loads("\n".join([
            *desk_lines(directory, database.url), "[limits]", *NO_RATE_LIMITS,
            "[smtp]", 'host = "127.0.0.1"', f"port = {port}", 'security = "none"']) + "\n")
        db = MailhelpDatabase(database.url)
        upgrade(db)
        Pipeline(config, db, lambda: NOW).accept([Arrival(
            b"From: teacher%d@school.test\nTo: help@school.test\nSubject: Wifi\n"
            b"Message-ID: <w%d@x>\n\nNo wifi in room 3.\n" % (n % 7, n), "t")
            for n in range(requests)])
        _wait_for(port)
        sender = OutboxSender(config.smtp, db, lambda: NOW, config.storage.attachments_dir)
        statements = [0]

        def count(*_) -> None:
            statements[0] += 1

        async def flush():
            try:
                return await sender.flush()
            finally:
                await sender.close()

        event.listen(db.engine, "before_cursor_execute", count)
        cpu, wall = time.process_time(), time.perf_counter()
        stats = asyncio.run(flush())
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        db.dispose()
        return stats.sent, cpu, wall, statements[0]
    finally:
        sink.terminate()
        sink.wait()
        database.drop()


def _wait_for(port: int) -> None:
    import socket

    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="each an ack and staff notices")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    for kind in args.databases.split(","):
        if kind == "postgresql" and (why := pg_available()):
            print(f"sender {kind}: skipped, PostgreSQL not reachable ({why})")
            continue
        runs = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="mailhelp-sender-") as directory:
                print(f"  .. sender on {kind}: {args.requests} requests", file=sys.stderr)
                runs.append(one_flush(kind, Path(directory), args.requests))
        sent = runs[0][0]
        cpu = statistics.median(r[1] / r[0] for r in runs) * 1000
        wall = statistics.median(r[2] / r[0] for r in runs) * 1000
        statements = statistics.median(r[3] / r[0] for r in runs)
        print(f"sender {kind}: {sent} mails; CPU {cpu:.3f} ms a mail, wall {wall:.3f} ms a "
              f"mail, {statements:.3f} statements a mail [median of {len(runs)} runs]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
