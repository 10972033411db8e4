"""Real mail servers on loopback for tests, ``mailhelp demo`` and benchmarks.

IMAP is a private Dovecot instance (IMAP + STARTTLS, IMAPS, LMTP) or, where Dovecot is not
installed, pymap (plain IMAP, in memory). An aiosmtpd relay accepts SMTP and delivers into
the users' INBOXes. Start with ``LocalMail.start()``, reconnect from another process with
``LocalMail.attach(state_dir)``, or run ``python -m mailhelp.localmail start``.

Importing this package is cheap: aiosmtpd, pymap and imapclient are imported when used.
"""

from __future__ import annotations

from ._proc import LocalMailError, free_port
from .controller import (
    DEFAULT_ADDRESSES,
    DEFAULT_PASSWORD,
    LocalMail,
    default_users,
    resolve_kind,
)
from .delivery import DeliveryError, ImapAppendDelivery, LmtpDelivery
from .dovecot import find_dovecot
from .smtp import SmtpRelay

__all__ = [
    "DEFAULT_ADDRESSES",
    "DEFAULT_PASSWORD",
    "DeliveryError",
    "ImapAppendDelivery",
    "LmtpDelivery",
    "LocalMail",
    "LocalMailError",
    "SmtpRelay",
    "default_users",
    "find_dovecot",
    "free_port",
    "resolve_kind",
]
