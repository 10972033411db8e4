"""``mailhelp ingest`` hands its messages to the running daemon over a Unix socket.

An MTA pipe alias starts one process per message, and most of such a process's life
is spent loading the database layer. With ``[ingest] socket`` set, the daemon listens
there; ingest sends it the bytes and waits for its answer, which comes once the
messages are stored, processed and committed, the same as when ingest does the work
itself. This module is all that the pipe's process loads (no SQLAlchemy, no parser).

The exchange, one connection per ingest: for each message its length in decimal, a
newline and its bytes; then the client ends its side. The daemon answers one JSON line
per message, in order: ``{"raw_id": 12, "state": "processed", "ticket": 7, "error": ""}``.

Nothing is lost on either side: a client that cannot connect does the work itself (the
daemon never saw the message); a client that connected but got no complete answer
exits with EX_TEMPFAIL, so the MTA keeps the message and delivers it again, and a
message the daemon did record meanwhile is then a duplicate by its Message-ID.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TYPE_CHECKING

from .errors import ConfigError, MailhelpError

if TYPE_CHECKING:
    from .config import Config
    from .pipeline import Pipeline

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75  # sysexits.h: the MTA keeps the message and tries again later
ANSWER_TIMEOUT = 300.0  # seconds an ingest waits for the daemon (a big backlog ahead)
READ_TIMEOUT = 60.0  # seconds the daemon waits on a silent client
MAX_HEADER = 20  # bytes of a length line
MAX_CLIENTS = 32  # connections served at once; more wait in the listen queue
GREETING_TIMEOUT = 10.0  # seconds a client waits to be taken before it works alone


class NoDaemon(MailhelpError):
    """Nothing listens on the socket (or this user may not use it): the message was not
    handed over. ``expected``: no daemon runs, as opposed to one that cannot be reached."""

    def __init__(self, message: str, expected: bool = True) -> None:
        super().__init__(message)
        self.expected = expected


class HandOffFailed(MailhelpError):
    """The daemon took the connection but gave no complete answer; the message may or
    may not be recorded, and delivering it again is safe."""


def handed_size(config: Config) -> int:
    """The largest message handed to the daemon; a bigger one ingest processes itself
    (its own work then outweighs the process's start)."""
    return config.limits.max_message_size


def hand_off(path: str, messages: Sequence[bytes], timeout: float = ANSWER_TIMEOUT,
             greeting: bytes = b"") -> list[dict]:
    """Send ``messages`` to the daemon at ``path``; its answer, one dict per message.

    ``greeting``: what the server says first, once it has taken the connection (a
    lingering ingest's does, linger.py): a server that closes without it never read the
    messages, and this process does the work itself (NoDaemon).
    """
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(GREETING_TIMEOUT if greeting else timeout)
    try:
        try:
            client.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise NoDaemon(f"ingest.socket: no daemon listens on {path} "
                           f"({error.strerror})") from None
        except OSError as error:  # not allowed, or the daemon's queue is full: not sent
            raise NoDaemon(f"ingest.socket: cannot connect to {path} "
                           f"({error.strerror or type(error).__name__})", expected=False) from None
        if greeting:
            _expect_greeting(client, path, greeting)
            client.settimeout(timeout)
        try:
            for raw in messages:
                client.sendall(b"%d\n" % len(raw))
                client.sendall(raw)
            client.shutdown(socket.SHUT_WR)
            answer = _read_all(client)
        except OSError as error:
            raise HandOffFailed(f"ingest.socket: the daemon at {path} did not answer: "
                                f"{error.strerror or type(error).__name__}") from None
    finally:
        client.close()
    lines = answer.splitlines()
    try:
        results = [json.loads(line) for line in lines]
    except ValueError:
        results = []
    if len(results) != len(messages) or not all(isinstance(r, dict) for r in results):
        raise HandOffFailed(f"ingest.socket: the daemon at {path} answered "
                            f"{len(lines)} of {len(messages)} message(s)")
    return results


def _expect_greeting(client: socket.socket, path: str, greeting: bytes) -> None:
    heard = b""
    try:
        while len(heard) < len(greeting) and (chunk := client.recv(len(greeting) - len(heard))):
            heard += chunk
    except OSError as error:
        raise NoDaemon(f"ingest.socket: {path} did not take the connection "
                       f"({error.strerror or type(error).__name__})") from None
    if heard != greeting:
        raise NoDaemon(f"ingest.socket: {path} did not take the connection "
                       f"(it said {heard[:40]!r})")


def _read_all(connection: socket.socket) -> bytes:
    parts = []
    while chunk := connection.recv(1 << 16):
        parts.append(chunk)
    return b"".join(parts)


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
                 turn: Callable[[], AbstractContextManager], max_size: int, *,
                 greeting: bytes = b"", answered: Callable[[], object] | None = None,
                 failed: Callable[[], object] | None = None) -> None:
        self.path = path
        self.mode = mode
        # A bigger message is not taken (ingest processes it itself): whoever may use
        # the socket cannot make the daemon hold more than MAX_CLIENTS of these.
        self.max_size = max_size
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.pipeline = pipeline
        self.pipeline.turn = turn
        # Said first on each connection taken (see hand_off); run after each connection's
        # messages are committed, before the answer (a lingering ingest sends their mail);
        # run when the pipeline could not take them (the client is told nothing).
        self.greeting = greeting
        self.answered = answered
        self.failed = failed
        self.served = 0
        self.last_active = time.monotonic()
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
            self.last_active = time.monotonic()
            worker.start()

    def idle_for(self) -> float:
        """Seconds since the last connection ended (0 while one is served)."""
        return 0.0 if self.connections else time.monotonic() - self.last_active

    def _serve(self, connection: socket.socket) -> None:
        from .pipeline import Arrival

        try:
            with connection:
                connection.settimeout(READ_TIMEOUT)
                try:
                    if self.greeting:
                        connection.sendall(self.greeting)
                    messages = _read_messages(connection, self.max_size)
                except (OSError, ValueError) as error:
                    log.warning("action=ingest_read_error error=%s", error)
                    return
                if not messages:
                    return
                try:
                    results = self.pipeline.accept([Arrival(m, "ingest") for m in messages])
                except Exception as error:  # the database is away: the MTA tries again
                    log.error("action=ingest_error messages=%s error=%s", len(messages),
                              str(error).splitlines()[0] if str(error) else repr(error))
                    if self.failed is not None:
                        self.failed()
                    return
                self.served += len(messages)
                if self.answered is not None:
                    try:
                        self.answered()
                    except Exception:  # committed all the same: the answer still goes
                        log.exception("action=ingest_after_error")
                answer = b"".join(json.dumps({
                    "raw_id": r.raw_id, "state": r.state, "error": r.error,
                    "ticket": r.outcome.ticket_id if r.outcome is not None else None,
                }).encode() + b"\n" for r in results)
                try:
                    connection.sendall(answer)
                except OSError as error:  # recorded all the same; a retry is a duplicate
                    log.warning("action=ingest_answer_lost raws=%s error=%s",
                                ",".join(str(r.raw_id) for r in results), error)
        finally:
            self.last_active = time.monotonic()
            self.connections.discard(threading.current_thread())
            self.slots.release()

    def close_door(self) -> None:
        """No new client finds this server (those connected are still served)."""
        self._unlink_ours()

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


def _read_messages(connection: socket.socket, max_size: int) -> list[bytes]:
    """Length-prefixed messages until the client ends its side."""
    data = bytearray()
    messages = []
    while chunk := connection.recv(1 << 16):
        data += chunk
        while True:
            newline = data.find(b"\n", 0, MAX_HEADER)
            if newline < 0:
                if len(data) >= MAX_HEADER:
                    raise ValueError("a length line longer than the protocol allows")
                break
            size = int(data[:newline])
            if not 0 <= size <= max_size:
                raise ValueError(f"a message of {size} bytes (at most {max_size} are taken)")
            if len(data) - newline - 1 < size:
                break
            messages.append(bytes(data[newline + 1:newline + 1 + size]))
            del data[:newline + 1 + size]
    if data:
        raise ValueError(f"the connection ended inside a message ({len(data)} bytes left)")
    return messages
