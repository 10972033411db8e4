"""How the local servers put a message into a user's INBOX without SMTP: LMTP into
Dovecot, or IMAP APPEND as the recipient for pymap (which has no LMTP)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ._proc import set_nodelay


class DeliveryError(Exception):
    """Mail could not be put into a mailbox; ``temporary`` means try again later (4xx)."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


class Delivery(Protocol):
    """Puts one message into one local user's INBOX (blocking)."""

    def deliver(self, mail_from: str, rcpt: str, data: bytes) -> None: ...


class LmtpDelivery:
    """Deliver over LMTP to a unix socket path or ``host:port`` (Dovecot's lmtp service)."""

    def __init__(self, target: str, timeout: float = 30.0) -> None:
        self.target = str(target)
        self.timeout = timeout

    def deliver(self, mail_from: str, rcpt: str, data: bytes) -> None:
        import smtplib

        host, port = self.target, 0
        if not host.startswith("/"):
            host, _, port_text = host.rpartition(":")
            port = int(port_text)
        try:
            lmtp = smtplib.LMTP(host, port, local_hostname="localhost", timeout=self.timeout)
        except OSError as exc:
            raise DeliveryError(f"LMTP {self.target} unreachable: {exc}") from exc
        try:
            # One recipient per transaction: after DATA, LMTP answers once per recipient
            # and smtplib reads only the first answer.
            lmtp.sendmail(mail_from, [rcpt], data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(rcpt, (451, b"refused"))
            raise DeliveryError(
                f"LMTP refused {rcpt}: {code} {text!r}", temporary=code < 500
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"LMTP: {exc.smtp_code} {exc.smtp_error!r}", temporary=exc.smtp_code < 500
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"LMTP {self.target}: {exc}") from exc
        finally:
            try:
                lmtp.quit()
            except (smtplib.SMTPException, OSError):
                lmtp.close()


class ImapAppendDelivery:
    """Deliver by logging in as the recipient and APPENDing to INBOX (for pymap)."""

    def __init__(self, host: str, port: int, users: Mapping[str, str], timeout: float = 30.0):
        self.host = host
        self.port = port
        self.users = dict(users)
        self.timeout = timeout

    def deliver(self, mail_from: str, rcpt: str, data: bytes) -> None:
        from imapclient import IMAPClient
        from imapclient.exceptions import IMAPClientError

        # What an MDA adds, so both server kinds show the same headers.
        headers = f"Return-Path: <{mail_from}>\r\nDelivered-To: {rcpt}\r\n".encode()
        body = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # IMAP wants CRLF
        try:
            client = IMAPClient(self.host, self.port, ssl=False, timeout=self.timeout)
        except OSError as exc:
            raise DeliveryError(f"IMAP {self.host}:{self.port} unreachable: {exc}") from exc
        set_nodelay(client)
        try:
            client.login(rcpt, self.users[rcpt])
            client.append("INBOX", headers + body)
        except (IMAPClientError, OSError, KeyError) as exc:
            raise DeliveryError(f"IMAP APPEND for {rcpt} failed: {exc}") from exc
        finally:
            try:
                client.logout()
            except (IMAPClientError, OSError):
                client.shutdown()
