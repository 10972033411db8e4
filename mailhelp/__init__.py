"""mailhelp: an email-driven help desk for school districts."""

__version__ = "0.1.0"
