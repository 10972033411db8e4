"""The daemon's sender gets its turn at SQLite's write lock while the daemon writes on."""

from __future__ import annotations

import multiprocessing
import os
import time

from sqlalchemy import text

from mailhelp.db.session import Database, WriteTurn, transaction

SENDER_WRITES = 20


def _busy_daemon_and_a_sender(tmp_path, turn: bool) -> float:
    """Seconds the sender took for its writes while the daemon wrote without a pause."""
    db = Database(f"sqlite:///{tmp_path / 'turn.db'}")
    with db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE marks (who TEXT)"))
    context = multiprocessing.get_context("fork")
    if turn:
        db.write_turn = WriteTurn(context)
    db.engine.dispose()
    done = context.Value("d", -1.0)

    def sender() -> None:
        db.engine.dispose(close=False)
        started = time.monotonic()
        for _ in range(SENDER_WRITES):
            with transaction(db) as tx:
                tx.execute(text("INSERT INTO marks VALUES ('sender')"))
        done.value = time.monotonic() - started
        os._exit(0)

    process = context.Process(target=sender)
    process.start()
    deadline = time.monotonic() + 8
    while process.is_alive() and time.monotonic() < deadline:
        with transaction(db) as tx:  # a backlog: one transaction after another
            tx.execute(text("INSERT INTO marks VALUES ('daemon')"))
            time.sleep(0.003)
    process.join(5)
    if process.is_alive():
        process.kill()
    db.engine.dispose()
    return done.value if done.value >= 0 else float("inf")


def test_the_sender_writes_between_the_daemons_transactions(tmp_path):
    # Each of its writes waits for at most the daemon's current transaction (3 ms). With
    # SQLite's polling alone (turn=False) the same 20 writes were not done after 8 s.
    assert _busy_daemon_and_a_sender(tmp_path, turn=True) < 1.0
