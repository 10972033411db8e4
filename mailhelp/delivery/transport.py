"""The SMTP transport (aiosmtplib): connect, send one mail, close.

Failures are values: each says whether trying again can help (a 4xx answer, a refused
or dropped connection) or not (a 5xx answer). What to do about them is retry.py's
business, and writing it down the worker's.
"""

from __future__ import annotations

import functools
import socket
import ssl
from dataclasses import dataclass

from ..config import SmtpConfig
from ..oauth2.grants import TokenError
from ..tls import tls_context


@dataclass(frozen=True)
class Failure:
    """Why a delivery did not happen, and whether trying again can help."""

    temporary: bool
    reason: str

    @property
    def permanent(self) -> bool:
        return not self.temporary


class DeliveryError(Exception):
    """A mail could not be handed to the SMTP server at all; ``failure`` says why."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def by_code(code: int, message: str) -> Failure:
    """An SMTP answer as a failure: only a 5xx answer is final."""
    return Failure(code // 100 != 5, f"{code} {message}".strip())


@functools.cache
def _local_hostname() -> str:
    """The name mailhelp gives in EHLO, looked up once: left to aiosmtplib, each new
    connection asks the resolver again from a thread pool (seconds where reverse DNS
    is slow)."""
    return socket.getfqdn()


class SmtpTransport:
    """One SMTP connection, opened on first use and reused until it fails."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.context = tls_context(config.ca_file, config.tls_verify) \
            if config.security != "none" else None
        self.client = None

    async def connect(self) -> None:
        import aiosmtplib

        config = self.config
        client = aiosmtplib.SMTP(
            hostname=config.host, port=config.port, local_hostname=_local_hostname(),
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            tls_context=self.context,
            timeout=config.timeout.total_seconds(),
        )
        await client.connect()
        if config.auth == "oauth2":
            from ..oauth2.tokens import smtp_login

            await smtp_login(client, config)
        elif config.auth == "password" and config.username:
            await client.login(config.username, config.password.reveal())
        self.client = client

    async def send(self, mail_from: str, recipients: list[str], raw: bytes) -> dict[str, Failure]:
        """Send one mail; return the recipients it failed for (empty: all accepted).

        Raises ``DeliveryError`` when nothing could be sent.
        """
        import aiosmtplib

        if self.client is None or not self.client.is_connected:
            await self.connect_or_raise()
        try:
            refused, _ = await self.client.sendmail(mail_from, recipients, raw)
        except aiosmtplib.SMTPRecipientsRefused as error:
            return {r.recipient: by_code(r.code, r.message) for r in error.recipients}
        except aiosmtplib.SMTPResponseException as error:
            if error.code // 100 == 4 or error.code < 400:
                await self.close()
            raise DeliveryError(by_code(error.code, error.message)) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            await self.close()
            raise DeliveryError(Failure(True, f"{type(error).__name__}: {error}")) from error
        return {address: by_code(response.code, response.message)
                for address, response in refused.items()}

    async def connect_or_raise(self) -> None:
        """Connect and log in, or raise ``DeliveryError`` saying why not (`mailhelp
        check` calls this on its own)."""
        import aiosmtplib

        try:
            await self.connect()
        except aiosmtplib.SMTPAuthenticationError as error:
            reason = f"smtp login refused: {error.code} {error.message}"
            raise DeliveryError(Failure(True, reason)) from None
        except ssl.SSLCertVerificationError as error:
            raise DeliveryError(Failure(True, f"smtp certificate not trusted: {error}")) from None
        except TokenError as error:  # [smtp] auth = "oauth2" and no token to be had
            raise DeliveryError(Failure(True, f"smtp login: {error}")) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise DeliveryError(Failure(True, f"cannot connect to smtp server: {error}")) from None

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            try:
                await client.quit()
            except Exception:  # a dead connection has nothing left to say
                client.close()
