"""The security suite's fixtures (issue 15)."""

from tests.security.desk import make_desk  # noqa: F401
