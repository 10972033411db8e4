"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mailhelp.db.migrate import current_revision, head_revision, upgrade
from mailhelp.db.models import Base
from mailhelp.db.session import Database
from mailhelp.search import include_name


def test_upgrade_to_head_matches_the_models(database_url):
    db = Database(database_url)
    before, after = upgrade(db)
    assert before is None and after == head_revision(db) == current_revision(db)
    with db.engine.connect() as connection:
        # Migration 0010's search tables and indexes are not models (mailhelp/search.py).
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        differences = compare_metadata(context, Base.metadata)
    db.dispose()
    assert differences == []


def test_the_head_mailhelp_expects_is_alembics_head(database_url):
    from mailhelp.db import SCHEMA_HEAD

    db = Database(database_url)
    assert head_revision(db) == SCHEMA_HEAD
    upgrade(db)
    assert db.schema_revision() == SCHEMA_HEAD
    db.dispose()


def test_upgrade_is_idempotent(database_url):
    db = Database(database_url)
    upgrade(db)
    assert upgrade(db)[0] == upgrade(db)[1]
    db.dispose()


def test_on_postgresql_large_columns_are_compressed_with_lz4(database_url):
    db = Database(database_url)
    if db.dialect != "postgresql":
        db.dispose()
        pytest.skip("lz4 compression of columns is PostgreSQL's (the PostgreSQL pass runs it)")
    upgrade(db)
    with db.engine.begin() as connection:
        offered = connection.exec_driver_sql(
            "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'").scalar()
        compressions = dict(connection.exec_driver_sql(
            "SELECT attrelid::regclass::text || '.' || attname, attcompression FROM pg_attribute "
            "WHERE attrelid IN ('raw_message_bodies'::regclass, 'messages'::regclass, "
            "'outbox'::regclass) AND attname IN ('raw', 'body', 'text', 'body_text', "
            "'body_html')").all())
    db.dispose()
    expected = "l" if offered and "lz4" in offered else ""
    assert compressions == {"raw_message_bodies.raw": expected, "messages.body": expected,
                            "messages.text": expected, "outbox.body_text": expected,
                            "outbox.body_html": expected, "outbox.raw": ""}
