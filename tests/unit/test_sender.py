"""The sender process's stop: a flush under way gets its grace, then is cut."""

from __future__ import annotations

import asyncio
import threading

from mailhelp.delivery.sender import _flush
from mailhelp.delivery.worker import FlushStats


class SlowSender:
    """An OutboxSender whose flush takes ``seconds`` (a backlog to a slow server)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.cancelled = False

    async def flush(self) -> FlushStats:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return FlushStats(sent=3)


def test_a_flush_that_ends_within_the_grace_is_kept():
    stopping = threading.Event()
    stopping.set()
    sender = SlowSender(0.05)
    assert asyncio.run(_flush(sender, stopping, grace=5)).sent == 3
    assert not sender.cancelled


def test_a_flush_longer_than_the_grace_is_cut_once_stopping(caplog):
    stopping = threading.Event()
    sender = SlowSender(30)

    async def stop_soon() -> FlushStats:
        asyncio.get_running_loop().call_later(0.1, stopping.set)
        return await _flush(sender, stopping, grace=0.2)

    assert asyncio.run(asyncio.wait_for(stop_soon(), 5)).sent == 0
    assert sender.cancelled
    assert "action=send_cut" in caplog.text


def test_run_once_waits_for_its_flush_to_end():
    stopping = threading.Event()
    stopping.set()
    sender = SlowSender(0.3)
    assert asyncio.run(_flush(sender, stopping, grace=None)).sent == 3
