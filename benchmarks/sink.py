"""An SMTP sink in the benchmark process: accepts every mail and records when it came.

aiosmtpd on its own event loop thread. Per mail it keeps the arrival time
(``time.monotonic()``, the clock the benchmarks measure with), In-Reply-To,
References, Subject, Message-ID and the recipients; nothing is delivered.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from dataclasses import dataclass

_HEADER = re.compile(rb"^(in-reply-to|references|subject|message-id|auto-submitted):[ \t]*"
                     rb"(.*(?:\r?\n[ \t].*)*)", re.I | re.M)
_MSGID = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True)
class Arrival:
    at: float
    recipients: tuple[str, ...]
    in_reply_to: str
    references: tuple[str, ...]
    subject: str
    message_id: str
    auto_submitted: str
    size: int


def _arrival(at: float, recipients: list[str], data: bytes) -> Arrival:
    head = data.split(b"\r\n\r\n", 1)[0]
    found: dict[str, str] = {}
    for name, value in _HEADER.findall(head):
        found.setdefault(name.decode().lower(), " ".join(value.decode("latin-1").split()))
    in_reply_to = _MSGID.findall(found.get("in-reply-to", ""))
    message_id = _MSGID.findall(found.get("message-id", ""))
    return Arrival(at, tuple(r.lower() for r in recipients),
                   in_reply_to[0] if in_reply_to else "",
                   tuple(_MSGID.findall(found.get("references", ""))),
                   found.get("subject", ""), message_id[0] if message_id else "",
                   found.get("auto-submitted", ""), len(data))


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        at = time.monotonic()
        self.sink._record(_arrival(at, list(envelope.rcpt_tos), envelope.original_content
                                   or envelope.content or b""))
        return "250 2.0.0 Ok: sunk"


class SmtpSink:
    """``with SmtpSink() as sink:``; ``sink.port``; ``sink.wait_for(n)``; ``sink.reset()``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.arrivals: list[Arrival] = []
        self._by_reply: dict[str, list[Arrival]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    def start(self) -> SmtpSink:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say TCP;
        # without it each SMTP reply waits 40 ms for the peer's delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(100)
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-sink",
                                        daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(sock), self._loop).result(10)
        return self

    async def _serve(self, sock: socket.socket) -> None:
        from aiosmtpd.smtp import SMTP

        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        # A fixed hostname: aiosmtpd otherwise asks socket.getfqdn(), slow without DNS.
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.test", loop=loop,
                         data_size_limit=100 * 1024 * 1024), sock=sock)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            self._server.close()
            current = asyncio.current_task()
            for task in [t for t in asyncio.all_tasks() if t is not current]:
                task.cancel()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
            self._loop = self._thread = self._server = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- records --------------------------------------------------------------------------

    def _record(self, arrival: Arrival) -> None:
        with self._changed:
            self.arrivals.append(arrival)
            if arrival.in_reply_to:
                self._by_reply.setdefault(arrival.in_reply_to, []).append(arrival)
            self._changed.notify_all()

    def reset(self) -> None:
        with self._lock:
            self.arrivals = []
            self._by_reply = {}

    @property
    def count(self) -> int:
        return len(self.arrivals)

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` mails arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.arrivals) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 1.0))
        return True

    def answers_to(self, message_id: str) -> list[Arrival]:
        """Mails whose In-Reply-To is ``message_id``, in arrival order."""
        with self._lock:
            return list(self._by_reply.get(message_id, ()))
