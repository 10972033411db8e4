"""What the servers and client libraries alone can do: the ceilings mailhelp is held to.

Each bare loop runs in a process of its own (as mailhelp does), so that it does not
share the interpreter lock with the sink, and reports the seconds of its loop only:

    python -m benchmarks.ceilings fetch HOST PORT USER PASSWORD FOLDER BATCH
    python -m benchmarks.ceilings send HOST PORT COUNT CONNECTIONS SIZE

``idle_delays`` (in-process) times Dovecot's IDLE notifications after SMTP delivery.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import Callable


def bare_fetch(host: str, port: int, user: str, password: str, folder: str,
               batch: int) -> dict:
    """SELECT (read-only), SEARCH ALL, FETCH BODY.PEEK[] in batches: messages and bytes."""
    from imapclient import IMAPClient

    started = time.perf_counter()
    client = IMAPClient(host, port, ssl=False, timeout=60)
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.login(user, password)
    client.select_folder(folder, readonly=True)
    uids = sorted(client.search("ALL"))
    count = size = 0
    for start in range(0, len(uids), batch):
        fetched = client.fetch(uids[start:start + batch], ["BODY.PEEK[]"])
        for data in fetched.values():
            count += 1
            size += len(data[b"BODY[]"])
    client.logout()
    return {"seconds": time.perf_counter() - started, "messages": count, "bytes": size}


def bare_send(host: str, port: int, count: int, connections: int, size: int) -> dict:
    """``count`` mails of about ``size`` bytes over ``connections`` kept-open connections."""
    import aiosmtplib

    body = ("x" * 75 + "\r\n") * max(1, size // 77)

    def mail(i: int) -> bytes:
        return (f"From: help@school.test\r\nTo: tech{i % 2 + 1}@school.test\r\n"
                f"Subject: [#{i}] ceiling\r\nMessage-ID: <ceiling.{i}@school.test>\r\n"
                f"In-Reply-To: <ceiling-request.{i}@school.test>\r\n"
                f"Auto-Submitted: auto-generated\r\n\r\n{body}").encode()

    async def worker(numbers: range) -> None:
        client = aiosmtplib.SMTP(hostname=host, port=port, use_tls=False, start_tls=False,
                                 timeout=60)
        await client.connect()
        for i in numbers:
            await client.sendmail("help@school.test", [f"tech{i % 2 + 1}@school.test"],
                                  mail(i))
        await client.quit()

    async def main() -> None:
        await asyncio.gather(*(worker(range(k, count, connections))
                               for k in range(connections)))

    started = time.perf_counter()
    asyncio.run(main())
    return {"seconds": time.perf_counter() - started, "mails": count}


def idle_delays(mail, send: Callable[[bytes], float], messages: list[bytes],
                rate: float, user: str = "help@school.test") -> list[float]:
    """Deliver ``messages`` by SMTP at ``rate`` per second while a bare imapclient IDLEs;
    return, per message, seconds from the end of its SMTP transaction to the EXISTS
    that first counts it."""
    client = mail.imap(user)
    base = client.select_folder("INBOX")[b"EXISTS"]
    notices: list[tuple[float, int]] = []
    stop = threading.Event()

    def watch() -> None:
        client.idle()
        while not stop.is_set():
            for response in client.idle_check(timeout=0.2):
                if isinstance(response, tuple) and len(response) >= 2 \
                        and response[1] == b"EXISTS":
                    notices.append((time.monotonic(), int(response[0])))
        client.idle_done()

    watcher = threading.Thread(target=watch, name="bare-idle", daemon=True)
    watcher.start()
    time.sleep(0.5)  # in IDLE before the first delivery
    ended: list[float] = []
    start = time.monotonic()
    for i, raw in enumerate(messages):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        ended.append(send(raw))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not notices or notices[-1][1] < base + len(messages)):
        time.sleep(0.05)
    stop.set()
    watcher.join(5)
    client.logout()
    delays = []
    for i, end in enumerate(ended):
        seen = next((at for at, exists in notices if exists >= base + i + 1), None)
        if seen is not None:
            delays.append(seen - end)
    return delays


def main(argv: list[str]) -> int:
    what, *args = argv
    if what == "fetch":
        host, port, user, password, folder, batch = args
        result = bare_fetch(host, int(port), user, password, folder, int(batch))
    elif what == "send":
        host, port, count, connections, size = args
        result = bare_send(host, int(port), int(count), int(connections), int(size))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
