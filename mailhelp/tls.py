"""The TLS context mailhelp's clients (IMAP and SMTP) use, built once per setting."""

from __future__ import annotations

import ssl


def tls_context(ca_file: str, verify: bool) -> ssl.SSLContext:
    """One context per connection setting: loading the CA store per mail costs more
    than sending the mail."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
