"""``mailhelp ingest``: messages from an MTA's pipe or from files.

A pipe alias runs this once per message, so start-up is most of its time: it hands
the message to the running daemon where one listens ([ingest] socket), and otherwise
loads the database layer and does the work itself. A temporary failure (the database
locked or away, the daemon gone mid-answer) exits 75, EX_TEMPFAIL, so that the MTA
keeps the message and tries again.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import UsageError
from ..mail.printable import printable

log = logging.getLogger("mailhelp")


def ingest(config, files: list[str]) -> int:
    """``mailhelp ingest``: the exit status (75 on a temporary failure)."""
    messages = []
    for name in files:
        try:
            with open(name, "rb") as handle:
                messages.append(handle.read())
        except OSError as error:
            raise UsageError(f"{name}: {error.strerror}") from error
    if not files:
        messages.append(sys.stdin.buffer.read())
    if config.ingest.socket:
        handed = _hand_off(config, messages, config.ingest.socket)
        if handed is not None:
            return handed
    try:
        return _ingest_here(config, messages)
    except Exception as error:
        from ..db.session import temporary

        if not temporary(error):
            raise
        from ..mail.parse import message_id_of
        from .handoff import EX_TEMPFAIL

        # Exit status 75 (EX_TEMPFAIL): the MTA keeps the message and delivers it again;
        # a copy recorded meanwhile is then a duplicate by its Message-ID.
        named = ", ".join(message_id_of(raw)[:200] for raw in messages[:3])
        more = f" and {len(messages) - 3} more" if len(messages) > 3 else ""
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        print(f"mailhelp: message {printable(named)}{more} not taken: database unavailable "
              f"({reason[0] if reason else type(error).__name__}); the mail server will "
              "try again", file=sys.stderr)
        return EX_TEMPFAIL


def _ingest_here(config, messages: list[bytes]) -> int:
    """The messages processed by this process, with no daemon to take them."""
    with start_up():
        from ..app import App, flush_outbox
        from .pipeline import Arrival

        app = App.create(config)
        pipeline = app.pipeline()
    pipeline.sweep()
    results = pipeline.accept([Arrival(raw, "ingest") for raw in messages])
    report_failures((r.raw_id, r.error) for r in results if r.failed)
    if config.smtp is not None:  # without it the mail stays in the outbox, as flush_outbox does
        flush_outbox(app)
    return 0


def _hand_off(config, messages: list[bytes], path: str) -> int | None:
    """The messages given to the running daemon: the exit status, or None when nobody
    listens (then this process does the work)."""
    from .handoff import EX_TEMPFAIL, HandOffFailed, NoDaemon, hand_off, handed_size

    largest = max(len(raw) for raw in messages)
    if largest > handed_size(config):
        log.info("action=ingest_alone reason=a message of %s bytes is processed here",
                 largest)
        return None
    try:
        # Besides this user and root, the config's owner may listen: it decides anyway.
        owner = os.stat(config.path).st_uid if os.path.exists(config.path) else None
        answers = hand_off(path, messages, trusted=() if owner is None else (owner,))
    except NoDaemon as error:
        log.log(logging.INFO if error.expected else logging.WARNING,
                "action=ingest_alone reason=%s", error)
        return None
    except HandOffFailed as error:
        # Exit status 75 (EX_TEMPFAIL): the MTA keeps the message and delivers it again.
        print(f"mailhelp: {error}; the mail server will try again", file=sys.stderr)
        return EX_TEMPFAIL
    report_failures((a.get("raw_id"), a.get("error")) for a in answers
                     if a.get("state") == "failed")
    return 0


def report_failures(failures) -> None:
    for raw_id, error in failures:
        # Stored all the same: 'mailhelp failed retry' takes it up after a fix.
        print(f"mailhelp: message {raw_id} failed: {printable(str(error))}", file=sys.stderr)


@contextmanager
def start_up() -> Iterator[None]:
    """A fresh process's imports and set-up, without the cyclic garbage collector.

    Start-up makes some sixty thousand objects that live as long as the process
    (SQLAlchemy and the models above all); the collector would walk them again and
    again while they are made and once more at exit: a quarter of an ingest's time. After
    start-up they are frozen out of its sight, and it runs as usual on what the work makes.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()
