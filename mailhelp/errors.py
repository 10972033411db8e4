"""The one exception hierarchy: a user sees the message, a log sees the traceback."""

from __future__ import annotations


class MailhelpError(Exception):
    """Something went wrong that mailhelp can describe in one line."""

    exit_code = 1


class ConfigError(MailhelpError):
    """The configuration is wrong; the message names the key at fault."""

    exit_code = 2


class UsageError(MailhelpError):
    """The command line asked for something that cannot be done."""

    exit_code = 2


class SourceError(MailhelpError):
    """The mailbox could not be reached or refused an operation."""


class ParseError(MailhelpError):
    """A message's bytes could not be turned into an Inbound value."""


class TemplateError(MailhelpError):
    """A mail template is missing or failed to render."""
