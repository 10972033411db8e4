"""The daemon's end of the hand-off (handoff.py): it takes messages on the Unix socket
and puts each through the pipeline as it arrives, answering once it is committed.

One thread per connection, MAX_CLIENTS at once; they take turns at the pipeline, first
come, first served. A connection carries at most MAX_MESSAGES messages and MAX_BYTES
bytes, and a message larger than [limits] max_message_size is refused at its length
line: whoever may use the socket cannot make the daemon hold more than one message per
connection, nor keep a connection for ever.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .handoff import MAX_BYTES, MAX_MESSAGES

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger(__name__)

READ_TIMEOUT = 60.0  # seconds the daemon waits on a silent client
MAX_HEADER = 20  # bytes of a length line
MAX_CLIENTS = 32  # connections served at once; more wait in the listen queue


class Turns:
    """One thread at a time processes mail, in the order they asked (first come, first
    served): the mailbox's next batch does not overtake a message an MTA handed in."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next = 0
        self._serving = 0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._changed:
            ticket = self._next
            self._next += 1
            while self._serving != ticket:
                self._changed.wait()
        try:
            yield
        finally:
            with self._changed:
                self._serving += 1
                self._changed.notify_all()


class IngestServer:
    """The daemon's end: accepts connections on the socket, one thread each; they read
    the messages and put them through the pipeline, taking their turn at it."""

    def __init__(self, path: str, mode: int, pipeline: Pipeline,
                 turn: Callable[[], AbstractContextManager], max_size: int) -> None:
        self.path = path
        self.mode = mode
        # A bigger message is not taken (ingest processes it itself): whoever may use
        # the socket cannot make the daemon hold more than MAX_CLIENTS of these at once.
        self.max_size = max_size
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.pipeline = pipeline
        self.pipeline.turn = turn
        self.listener: socket.socket | None = None
        self.bound: tuple[int, int] | None = None  # (device, inode) of the socket file
        self.thread: threading.Thread | None = None
        self.connections: set[threading.Thread] = set()
        self.stopping = threading.Event()

    def start(self) -> None:
        self.listener = self._listen()
        self.thread = threading.Thread(target=self._accept, name="mailhelp-ingest",
                                       daemon=True)
        self.thread.start()
        log.info("action=ingest_listen socket=%s mode=%o", self.path, self.mode)

    def _listen(self) -> socket.socket:
        if len(os.fsencode(self.path)) > 107:
            raise ConfigError(f"ingest.socket: {self.path} is too long for a Unix socket "
                              "(107 bytes at most)")
        self._remove_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Made with the right bits from the start, not opened wide and narrowed after.
        umask = os.umask(0o777 & ~self.mode)
        try:
            listener.bind(self.path)
        except OSError as error:
            listener.close()
            raise ConfigError(f"ingest.socket: cannot listen on {self.path}: "
                              f"{error.strerror}") from None
        finally:
            os.umask(umask)
        os.chmod(self.path, self.mode)
        bound = os.stat(self.path)
        self.bound = (bound.st_dev, bound.st_ino)
        listener.listen(64)
        listener.settimeout(0.5)  # to see ``stopping`` between connections
        return listener

    def _remove_stale(self) -> None:
        """A socket a dead daemon left is removed; a live daemon's is not taken over."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ConfigError(f"ingest.socket: {self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except ConnectionRefusedError:
            os.unlink(self.path)
            return
        except OSError:
            return  # bind will say what is wrong
        finally:
            probe.close()
        raise ConfigError(f"ingest.socket: another mailhelp daemon listens on {self.path}")

    def _accept(self) -> None:
        assert self.listener is not None
        while not self.stopping.is_set():
            if not self.slots.acquire(timeout=0.5):
                continue
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                self.slots.release()
                continue
            except OSError as error:
                self.slots.release()
                if self.stopping.is_set():
                    break
                log.error("action=ingest_accept_error error=%s", error)
                self.stopping.wait(0.5)
                continue
            worker = threading.Thread(target=self._serve, args=(connection,),
                                      name="mailhelp-ingest-client", daemon=True)
            self.connections.add(worker)
            worker.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            with connection:
                connection.settimeout(READ_TIMEOUT)
                reader = _Reader(connection, self.max_size)
                try:
                    # Each message is processed as it arrives: what a client sends is
                    # never all held at once.
                    while (message := reader.next_message()) is not None:
                        if not self._take(connection, message):
                            return
                except (OSError, ValueError) as error:
                    log.warning("action=ingest_read_error taken=%s error=%s", reader.count,
                                error)
        finally:
            self.connections.discard(threading.current_thread())
            self.slots.release()

    def _take(self, connection: socket.socket, raw: bytes) -> bool:
        """Put a message through the pipeline and answer for it; False when it could not
        be taken (the connection is then dropped: the client hears of no more)."""
        from .pipeline import Arrival

        try:
            results = self.pipeline.accept([Arrival(raw, "ingest")])
        except Exception as error:  # the database is away: the MTA tries again
            log.error("action=ingest_error error=%s",
                      str(error).splitlines()[0] if str(error) else repr(error))
            return False
        answer = b"".join(json.dumps({
            "raw_id": r.raw_id, "state": r.state, "error": r.error,
            "ticket": r.outcome.ticket_id if r.outcome is not None else None,
        }).encode() + b"\n" for r in results)
        try:
            connection.sendall(answer)
        except OSError as error:  # recorded all the same; a retry is a duplicate
            log.warning("action=ingest_answer_lost raws=%s error=%s",
                        ",".join(str(r.raw_id) for r in results), error)
            return False
        return True

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop taking connections; let those under way finish (up to ``timeout``).

        The socket file goes first, so that an ingest from now on finds nobody (and works
        alone) rather than a listener about to close under it; only ours is removed, not
        one a newer server has bound at the same path meanwhile.
        """
        self._unlink_ours()
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)
        for worker in list(self.connections):
            worker.join(timeout)
        if self.listener is not None:
            self.listener.close()

    def _unlink_ours(self) -> None:
        with suppress(FileNotFoundError):
            found = os.stat(self.path)
            if self.bound == (found.st_dev, found.st_ino):
                os.unlink(self.path)


class _Reader:
    """Length-prefixed messages off a connection until the client ends its side, one at
    a time, within the connection's limits; a message over ``max_size`` is refused at its
    length line, before its bytes are read."""

    def __init__(self, connection: socket.socket, max_size: int) -> None:
        self.connection = connection
        self.max_size = max_size
        self.most = max(MAX_BYTES, max_size)
        self.buffer = bytearray()  # received, not yet taken
        self.count = 0
        self.total = 0

    def next_message(self) -> bytes | None:
        """The next message, or None when the client ended its side between two."""
        while (newline := self.buffer.find(b"\n", 0, MAX_HEADER)) < 0:
            if len(self.buffer) >= MAX_HEADER:
                raise ValueError("a length line longer than the protocol allows")
            chunk = self.connection.recv(1 << 16)
            if not chunk:
                if self.buffer:
                    raise ValueError("the connection ended inside a length line")
                return None
            self.buffer += chunk
        size = int(self.buffer[:newline])
        if not 0 <= size <= self.max_size:
            raise ValueError(f"a message of {size} bytes (at most {self.max_size} are taken)")
        self.count += 1
        self.total += size
        if self.count > MAX_MESSAGES or self.total > self.most:
            raise ValueError(f"more than {MAX_MESSAGES} messages or {self.most} bytes on "
                             "one connection")
        del self.buffer[:newline + 1]
        # Read straight into a buffer of the message's size: nothing grows as it comes.
        body = bytearray(size)
        filled = min(size, len(self.buffer))
        body[:filled] = self.buffer[:filled]
        del self.buffer[:filled]
        with memoryview(body) as view:
            while filled < size:
                received = self.connection.recv_into(view[filled:])
                if not received:
                    raise ValueError(f"the connection ended inside a message ({filled} "
                                     f"of {size} bytes)")
                filled += received
        return bytes(body)
