"""One sender of a desk at a time: the lock a flush holds from its first look at the
outbox to its last "sent" mark.

Two senders that flush one outbox at once both read the same due rows and both send
them (a ``run --once`` from cron beside the daemon, two ``mailhelp ingest`` an MTA runs
at once, a second daemon by mistake). So a flush takes this lock for its whole run and
waits for it, never skips it: a sender that skipped while the holder was finishing could
leave a row queued a moment ago unsent, and a lone ``ingest`` must have sent its mail
when it exits. Whoever takes the lock next reads the outbox again, after the holder's
marks.

- SQLite: ``flock`` on ``<database>-send.lock`` (private, beside the database). A lock
  belongs to one open file, so two senders in one process exclude each other too.
- PostgreSQL: a session advisory lock on a connection held for the flush, keyed by the
  desk's schema (desks may share a database). Its waiters queue in order.

A holder that dies (SIGKILL, a crash, a lost connection) lets go with it: the kernel
closes its file, the server ends its session. The wait happens in a thread of its own,
so the event loop goes on and a flush cancelled while waiting (a stopping daemon) stops
at once; the thread lets go of a lock it gets after that.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable

from sqlalchemy import text

from ..db.session import Database
from ..private import private_file

log = logging.getLogger(__name__)


def _int32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


# pg_advisory_lock(int, int): the first names mailhelp's sender lock, the second the desk.
LOCK_CLASS = _int32(zlib.crc32(b"mailhelp outbox sender"))
_TRY = text("SELECT pg_try_advisory_lock(:kind, :desk)")
_WAIT = text("SELECT pg_advisory_lock(:kind, :desk)")
_UNLOCK = text("SELECT pg_advisory_unlock(:kind, :desk)")
_SCHEMA = text("SELECT coalesce(current_schema(), '')")


class Held:
    """A lock taken; ``release`` lets go of it (once)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class SendLock:
    """The desk's sender lock: ``held = await lock.take()``, later ``held.release()``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.path: str | None = None
        self.desk: int | None = None  # PostgreSQL: the key of this desk's schema
        if db.dialect == "sqlite":
            database = db.engine.url.database
            if database and database != ":memory:":
                self.path = f"{database}-send.lock"
                private_file(self.path)

    async def take(self) -> Held:
        started = time.monotonic()
        if self.db.dialect == "postgresql":
            held = await self._take_advisory()
        elif self.path is not None:
            held = await self._take_file()
        else:  # an in-memory database: no other process can see its outbox
            held = Held(lambda: None)
        waited = time.monotonic() - started
        if waited >= 0.5:
            log.info("action=send_lock_waited seconds=%.1f (another sender was flushing)",
                     waited)
        return held

    async def _take_file(self) -> Held:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

        def release() -> None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
            finally:
                os.close(descriptor)

        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Nothing interrupts a waiting flock: a thread that gets the lock after its
            # flush was cancelled lets go of it at once (undo).
            await _wait_in_thread(lambda: fcntl.flock(descriptor, fcntl.LOCK_EX),
                                  interrupt=lambda: None, undo=release,
                                  failed=lambda: os.close(descriptor))
        except BaseException:
            os.close(descriptor)
            raise
        return Held(release)

    async def _take_advisory(self) -> Held:
        connection = self.db.engine.connect()
        try:
            # Autocommit: a session lock needs no transaction, and one left open for the
            # whole flush would hold back the server's cleanup.
            connection.execution_options(isolation_level="AUTOCOMMIT")
            if self.desk is None:
                self.desk = _int32(zlib.crc32(connection.execute(_SCHEMA).scalar().encode()))
            key = {"kind": LOCK_CLASS, "desk": self.desk}
            taken = connection.execute(_TRY, key).scalar()
        except BaseException:
            connection.invalidate()
            connection.close()
            raise

        def release() -> None:
            try:
                connection.execute(_UNLOCK, key)
            except Exception:  # the session ends with the connection, and its lock too
                connection.invalidate()
            finally:
                connection.close()

        def give_up() -> None:
            connection.invalidate()  # it may still wait on the server
            connection.close()

        if not taken:
            raw = connection.connection.driver_connection
            await _wait_in_thread(lambda: connection.execute(_WAIT, key),
                                  interrupt=lambda: raw.cancel_safe(timeout=5),
                                  undo=release, failed=give_up)
        return Held(release)


async def _wait_in_thread(block: Callable[[], object], interrupt: Callable[[], None],
                          undo: Callable[[], None], failed: Callable[[], None]) -> None:
    """Run ``block`` (a blocking take) in a daemon thread and wait for it without
    blocking the loop. Cancelled meanwhile: ``interrupt`` the wait; a lock the thread
    gets after all is let go of (``undo``). ``failed``: clean up after a take that
    raised or was interrupted."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    guard = threading.Lock()
    state: dict[str, object] = {"abandoned": False, "finished": False, "error": None}

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        error: BaseException | None = None
        try:
            block()
        except BaseException as caught:  # handed to the waiting flush
            error = caught
        with guard:
            state["finished"], state["error"] = True, error
            abandoned = state["abandoned"]
        if abandoned:
            _quietly(failed if error is not None else undo)
            return
        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:  # the loop is closed: nobody will release it
            _quietly(failed if error is not None else undo)

    # A daemon thread: a wait that outlives its flush never holds the process open.
    threading.Thread(target=run, name="mailhelp-send-lock", daemon=True).start()
    try:
        await done
    except asyncio.CancelledError:
        with guard:
            state["abandoned"] = True
            finished, error = state["finished"], state["error"]
        if finished:
            _quietly(failed if error is not None else undo)
        else:
            _quietly(interrupt)
        raise
    if state["error"] is not None:
        _quietly(failed)
        raise state["error"]


def _quietly(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception as error:
        log.warning("action=send_lock_cleanup_failed error=%s", error)
