"""Every real-world message of the shared corpus goes through the whole pipeline:
stored, parsed, classified, threaded, applied. None crashes, none is lost."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from mailhelp.db.migrate import upgrade
from mailhelp.db.models import RawMessage
from mailhelp.db.session import Database
from mailhelp.service.pipeline import Arrival, Pipeline
from tests.corpus import CORPUS, corpus_rows, skip_without_corpus
from tests.helpers import desk_config


def test_the_whole_corpus_goes_through(tmp_path, database_url):
    rows = [r for r in corpus_rows() if "body-only" not in r["tag"]]
    if not rows:
        skip_without_corpus()
    config = desk_config(tmp_path, database_url)
    db = Database(database_url)
    upgrade(db)
    pipeline = Pipeline(config, db, lambda: datetime(2026, 11, 23, tzinfo=UTC))
    results = []
    for start in range(0, len(rows), 100):
        batch = rows[start:start + 100]
        arrivals = [Arrival((CORPUS / r["path"]).read_bytes(), "corpus", 1, start + i + 1)
                    for i, r in enumerate(batch)]
        results += list(zip(batch, pipeline.accept(arrivals), strict=True))
    failed = [(row["path"], result.error) for row, result in results if result.failed]
    assert failed == [("SpamScope__mail-parser/mail_outlook_1",
                       "a binary Outlook .msg file, not an RFC 5322 message")]
    states = {result.state for _, result in results}
    assert states <= {"processed", "duplicate", "ignored", "spam", "failed"}
    with db.sessions() as session:
        stored = session.scalar(select(func.count()).select_from(RawMessage))
    assert stored == len(rows)  # nothing lost: every message's bytes are kept
    db.dispose()
