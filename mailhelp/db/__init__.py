"""Models, sessions and migrations."""

# The newest migration; tests/unit/test_migrations.py checks it against Alembic.
SCHEMA_HEAD = "0011"
