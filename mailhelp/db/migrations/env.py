"""Alembic environment: the engine comes from mailhelp, not from alembic.ini.

All pending migrations run in one transaction. On SQLite, foreign keys are off around
it (batch mode rebuilds tables) and PRAGMA foreign_key_check runs after each migration
instead: see mailhelp/db/migrate.py.
"""

from __future__ import annotations

from contextlib import nullcontext

from alembic import context

from mailhelp.db.migrate import Progress, check_foreign_keys, foreign_keys_off
from mailhelp.db.models import Base
from mailhelp.db.session import WRITE, Database
from mailhelp.search import include_name

config = context.config
engine = (config.attributes.get("engine")
          or Database(config.get_main_option("sqlalchemy.url")).engine)
progress = config.attributes.get("progress") or Progress([])

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    # On SQLite, BEGIN IMMEDIATE: the write lock from the start (session.py).
    connection.execution_options(**{WRITE: True})

    def applied(ctx, step, heads, run_args) -> None:
        if sqlite:
            check_foreign_keys(connection, step.up_revision_id)
        progress.done.append(step.up_revision_id)

    with foreign_keys_off(connection) if sqlite else nullcontext():
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            # SQLite cannot ALTER constraints; batch mode rebuilds the table instead.
            render_as_batch=sqlite,
            # Alembic thinks SQLite's DDL is not transactional and commits each migration
            # on its own; it is, once sqlite3 leaves BEGIN to us (session.py).
            transactional_ddl=True,
            on_version_apply=[applied],
            # Migration 0010's search tables and indexes are not models: autogenerate
            # must not drop them.
            include_name=include_name,
        )
        with context.begin_transaction():
            if sqlite and progress.pending:
                check_foreign_keys(connection, progress.running, before=True)
            context.run_migrations()
