"""What a test or the demo does with the local servers' mailboxes: log in, read, wait
for mail, empty them, and put mail in without SMTP. LocalMail (controller.py) has these."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from ._proc import LocalMailError, set_nodelay
from .delivery import Delivery, ImapAppendDelivery, LmtpDelivery
from .smtp import SmtpRelay

if TYPE_CHECKING:
    import ssl

    from imapclient import IMAPClient


class Mailboxes:
    """The mailbox side of a LocalMail: everything here reads the attributes below."""

    kind: str
    imap_host: str
    imap_port: int
    imaps_port: int | None
    smtp_host: str
    users: dict[str, str]
    ca_file: str | None
    lmtp_socket: str | None

    def ssl_context(self) -> ssl.SSLContext:
        """Client context that trusts the self-signed certificate (needs ``ca_file``)."""
        import ssl

        if not self.ca_file:
            raise LocalMailError(f"{self.kind} servers have no TLS")
        return ssl.create_default_context(cafile=self.ca_file)

    def imap(
        self, user: str | None = None, security: str = "plain", timeout: float = 10.0
    ) -> IMAPClient:
        """Logged-in IMAPClient; ``security`` is ``plain``, ``starttls`` or ``ssl`` (IMAPS)."""
        from imapclient import IMAPClient

        user = user or next(iter(self.users))
        if security == "ssl":
            if self.imaps_port is None:
                raise LocalMailError(f"{self.kind} has no IMAPS port")
            client = IMAPClient(
                self.imap_host,
                self.imaps_port,
                ssl=True,
                ssl_context=self.ssl_context(),
                timeout=timeout,
            )
        elif security in ("plain", "starttls"):
            client = IMAPClient(self.imap_host, self.imap_port, ssl=False, timeout=timeout)
        else:
            raise ValueError(f"security must be plain, starttls or ssl, not {security!r}")
        set_nodelay(client)
        try:
            if security == "starttls":
                client.starttls(self.ssl_context())
            client.login(user, self.users[user])
        except BaseException:
            client.shutdown()
            raise
        return client

    def messages(self, user: str | None = None, folder: str = "INBOX") -> list[bytes]:
        """Raw messages in a folder, oldest first (BODY.PEEK: flags are not changed)."""
        client = self.imap(user)
        try:
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search("ALL"))
            fetched = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [fetched[uid][b"BODY[]"] for uid in uids]
        finally:
            client.logout()

    def wait_for_messages(
        self, user: str | None = None, count: int = 1, folder: str = "INBOX", timeout: float = 10.0
    ) -> list[bytes]:
        """Poll until ``folder`` holds at least ``count`` messages; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(user, folder)
            if len(found) >= count or time.monotonic() > deadline:
                if len(found) < count:
                    raise LocalMailError(
                        f"{len(found)} of {count} messages in {folder} "
                        f"of {user} after {timeout:.0f} s"
                    )
                return found
            time.sleep(0.05)

    def clear_mailboxes(self, keep_folders: bool = False) -> None:
        """Empty every user's INBOX and delete their other folders (over IMAP).

        ``keep_folders=True`` empties the other folders instead of deleting them (for a
        running daemon that expects its Processed/Failed folders to exist).
        """
        for user in self.users:
            self._clear_user(user, keep_folders)

    def _clear_user(self, user: str, keep_folders: bool) -> None:
        from imapclient.exceptions import IMAPClientError

        client = self.imap(user)
        try:
            listed = client.list_folders()
            selectable = [
                n for flags, _d, n in listed if b"\\noselect" not in map(bytes.lower, flags)
            ]
            others = [name for _f, _d, name in listed if name.upper() != "INBOX"]
            if not keep_folders:
                # Children before parents; "/" is the separator on both server kinds.
                for name in sorted(others, key=lambda n: n.count("/"), reverse=True):
                    with contextlib.suppress(IMAPClientError):
                        client.delete_folder(name)
                for name in {n for _f, _d, n in client.list_sub_folders()} - {"INBOX"}:
                    with contextlib.suppress(IMAPClientError):
                        client.unsubscribe_folder(name)
                selectable = ["INBOX"]
            for folder in selectable:
                client.select_folder(folder)
                uids = client.search("ALL")
                if uids:
                    client.delete_messages(uids)
                    client.expunge()
        finally:
            client.logout()

    def delivery(self) -> Delivery:
        """How mail gets into a mailbox without SMTP (LMTP for Dovecot, APPEND for pymap)."""
        if self.lmtp_socket:
            return LmtpDelivery(self.lmtp_socket)
        return ImapAppendDelivery(self.imap_host, self.imap_port, self.users)

    def deliver(self, rcpt: str, message: bytes, mail_from: str = "sender@example.org") -> None:
        """Put a raw message into ``rcpt``'s INBOX directly, bypassing SMTP."""
        self.delivery().deliver(mail_from, rcpt.lower(), message)

    def smtp_relay(self, port: int = 0, **kwargs: Any) -> SmtpRelay:
        """A new, not yet started, in-process SMTP relay delivering to these servers."""
        kwargs.setdefault("host", self.smtp_host)
        return SmtpRelay(self.users, self.delivery(), port=port, **kwargs)
