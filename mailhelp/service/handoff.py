"""``mailhelp ingest`` hands its messages to the running daemon over a Unix socket.

An MTA pipe alias starts one process per message, and most of such a process's life
is spent loading the database layer. With ``[ingest] socket`` set, the daemon listens
there; ingest sends it the bytes and waits for its answer, which comes once the
messages are stored, processed and committed, the same as when ingest does the work
itself. This module, the client, is all that the pipe's process loads (no SQLAlchemy,
no parser); the daemon's end is handoff_server.py.

The exchange, one connection per ingest: for each message its length in decimal, a
newline and its bytes; then the client ends its side. The daemon answers one JSON line
per message, in order: ``{"raw_id": 12, "state": "processed", "ticket": 7, "error": ""}``.
It processes messages as they arrive, and takes at most MAX_MESSAGES messages and
MAX_BYTES bytes on one connection (a client with more opens another).

Before it sends anything, the client asks the kernel who listens (SO_PEERCRED): a socket
in a shared directory may be anyone's, and mail goes only to a process of this user,
of root, or of the config file's owner (who decides where mail goes anyway).

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
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import MailhelpError

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75  # sysexits.h: the MTA keeps the message and tries again later
ANSWER_TIMEOUT = 300.0  # seconds an ingest waits for the daemon (a big backlog ahead)
MAX_MESSAGES = 100  # messages taken on one connection
MAX_BYTES = 100 * 1024 * 1024  # bytes taken on one connection (or one message's, if more)


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
             trusted: Iterable[int] = ()) -> list[dict]:
    """Send ``messages`` to the daemon at ``path``; its answer, one dict per message.

    ``trusted``: user ids besides this process's and root's that may listen there.
    """
    answers: list[dict] = []
    for group in _connections(messages):
        try:
            answers += _hand_over(path, group, timeout, trusted)
        except NoDaemon as error:
            if not answers:
                raise
            # Part went over: working alone now would process that part twice.
            raise HandOffFailed(f"{error}, after {len(answers)} message(s)") from None
    return answers


def _connections(messages: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    """The messages in groups a connection takes (MAX_MESSAGES, MAX_BYTES), in order."""
    start, size = 0, 0
    for end, raw in enumerate(messages):
        if end > start and (end - start == MAX_MESSAGES or size + len(raw) > MAX_BYTES):
            yield messages[start:end]
            start, size = end, 0
        size += len(raw)
    if start < len(messages):
        yield messages[start:]


def _hand_over(path: str, messages: Sequence[bytes], timeout: float,
               trusted: Iterable[int]) -> list[dict]:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        try:
            client.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise NoDaemon(f"ingest.socket: no daemon listens on {path} "
                           f"({error.strerror})") from None
        except OSError as error:  # not allowed, or the daemon's queue is full: not sent
            raise NoDaemon(f"ingest.socket: cannot connect to {path} "
                           f"({error.strerror or type(error).__name__})", expected=False) from None
        _check_listener(client, path, {os.getuid(), 0, *trusted})
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


def listener_uid(client: socket.socket, path: str) -> int:
    """The user id of the process listening at the other end of ``client``."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux: what the kernel noted at listen()
        credentials = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                        struct.calcsize("3i"))
        return struct.unpack("3i", credentials)[1]
    return os.stat(path).st_uid  # elsewhere: who made the socket file


def _check_listener(client: socket.socket, path: str, trusted: set[int]) -> None:
    try:
        uid = listener_uid(client, path)
    except OSError as error:
        raise NoDaemon(f"ingest.socket: cannot tell who listens on {path} "
                       f"({error.strerror or type(error).__name__})", expected=False) from None
    if uid not in trusted:
        # Anyone may bind a name in a shared directory such as /tmp before the daemon.
        raise NoDaemon(f"ingest.socket: {path} is served by user id {uid}, not by this "
                       f"user ({os.getuid()}), root or the config file's owner: nothing "
                       "handed over", expected=False)


def _read_all(connection: socket.socket) -> bytes:
    parts = []
    while chunk := connection.recv(1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def __getattr__(name: str):
    """The daemon's end, IngestServer and Turns, lives in handoff_server.py: an ingest
    never loads it."""
    if name in ("IngestServer", "Turns"):
        from . import handoff_server

        return getattr(handoff_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
