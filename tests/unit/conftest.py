"""Fixtures the unit tests of the sender share: an SMTP server that answers as told,
and a desk with mail waiting in its outbox (tests/unit/smtp_answering.py)."""

from tests.unit.smtp_answering import setup, smtp_server  # noqa: F401 (fixtures)
