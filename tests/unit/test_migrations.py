"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mailhelp.db.migrate import current_revision, head_revision, upgrade
from mailhelp.db.models import Base
from mailhelp.db.session import Database


def test_upgrade_to_head_matches_the_models(database_url):
    db = Database(database_url)
    before, after = upgrade(db)
    assert before is None and after == head_revision(db) == current_revision(db)
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
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
