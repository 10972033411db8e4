"""What every command that touches the help desk needs, wired once: config, database,
clock. Kept light: `mailhelp ingest` (an MTA pipe, a process per message) starts here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .db import SCHEMA_HEAD
from .db.session import Database
from .errors import MailhelpError

if TYPE_CHECKING:
    from .config import Config
    from .delivery.worker import FlushStats, OutboxSender
    from .service.pipeline import Pipeline


@dataclass
class App:
    """Everything one run needs, wired once."""

    config: Config
    db: Database
    clock: Callable[[], datetime]

    @classmethod
    def create(cls, config: Config, now: datetime | None = None) -> App:
        db = Database(config.database.url)
        if not db.schema_ready():
            raise MailhelpError("database: no schema yet; run 'mailhelp init' first")
        current, head = db.schema_revision(), SCHEMA_HEAD
        if current != head:
            # Writing with an older schema would fail on every message and send them
            # all to the failed folder; better not to start.
            raise MailhelpError(f"database: schema {current} is older than this mailhelp's "
                                f"{head}; run 'mailhelp init' to upgrade it")
        clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
        return cls(config, db, clock)

    # Imported on first use: `mailhelp tickets` needs neither the pipeline nor SMTP.
    def pipeline(self) -> Pipeline:
        from .service.pipeline import Pipeline

        return Pipeline(self.config, self.db, self.clock)

    def sender(self) -> OutboxSender:
        from .delivery.worker import OutboxSender

        return OutboxSender(self.config.require_smtp(), self.db, self.clock,
                            self.config.storage.attachments_dir)


def flush_outbox(app: App) -> FlushStats:
    from .delivery.worker import FlushStats

    if app.config.smtp is None:
        return FlushStats()
    import asyncio

    sender = app.sender()

    async def flush() -> FlushStats:
        try:
            return await sender.flush()
        finally:
            await sender.close()

    return asyncio.run(flush())
