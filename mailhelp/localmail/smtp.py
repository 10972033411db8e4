"""A small aiosmtpd relay that delivers accepted mail into the local users' INBOXes.

Delivery goes to Dovecot over LMTP or, for pymap, by IMAP APPEND as the recipient
(delivery.py).
The relay runs its own event loop in a thread, so sync and async callers can use it.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import weakref
from collections.abc import Mapping
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from .delivery import Delivery, DeliveryError

# Imported from here before delivery.py was split off (tests/servers.py still does).
from .delivery import ImapAppendDelivery as ImapAppendDelivery
from .delivery import LmtpDelivery as LmtpDelivery

if TYPE_CHECKING:
    import asyncio
    import ssl

log = logging.getLogger(__name__)


class SmtpRelay:
    """SMTP server on a loopback port that delivers to local users only.

    * RCPT to another domain or an unknown local user: 550.
    * AUTH PLAIN/LOGIN with the users' passwords is offered without TLS and optional
      (``require_auth=False``); a wrong password still gets 535.
    * ``tls_context`` (optional) enables STARTTLS; it is off by default because aiosmtplib
      upgrades whenever STARTTLS is offered and would then need the CA file.
    * A failed delivery answers DATA with 451 (or 554 if permanent).
    * ``oauth2_introspection_url`` (optional) also offers AUTH XOAUTH2, each token asked
      about at that RFC 7662 endpoint and refused the way Gmail does (334 with a JSON
      error, then 535).
    """

    def __init__(
        self,
        users: Mapping[str, str],
        delivery: Delivery,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = "localmail.test",
        require_auth: bool = False,
        tls_context: ssl.SSLContext | None = None,
        bounce_domains: tuple[str, ...] = (),
        outside_mailbox: str = "",
        oauth2_introspection_url: str | None = None,
    ) -> None:
        self.users = {addr.lower(): pw for addr, pw in users.items()}
        self.oauth2_introspection_url = oauth2_introspection_url
        # Mail to these domains is taken, then returned to its envelope sender as a
        # delivery status notification: what an MTA does when the next hop refuses it.
        self.bounce_domains = {d.lower() for d in bounce_domains}
        # Mail to any other domain lands in this local mailbox: the rest of the internet,
        # for a test that wants to read what mailhelp sent to a stranger.
        self.outside_mailbox = outside_mailbox.lower()
        self.domains = {addr.rpartition("@")[2] for addr in self.users}
        self.delivery = delivery
        self.host = host
        self.port = port
        self.hostname = hostname
        self.require_auth = require_auth
        self.tls_context = tls_context
        self.delivered = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._protocols: weakref.WeakSet[Any] = weakref.WeakSet()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> SmtpRelay:
        """Listen on ``host:port`` (0 = pick a free port, see ``.port``); returns self."""
        import asyncio  # lazily: importing mailhelp.localmail stays cheap

        if self._thread is not None:
            raise RuntimeError("SmtpRelay already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # Bound here, in the caller's thread, so a busy port raises OSError right away.
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto
        # says TCP, and socket.create_server() leaves it 0 -> 40 ms Nagle stall per reply.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(100)
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"smtp-relay-{self.port}", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(sock), self._loop).result(timeout)
        except BaseException:
            sock.close()
            self.stop()
            raise
        log.info("SMTP relay listening on %s:%d", self.host, self.port)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and all client connections; join the thread."""
        import asyncio

        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()
            self._loop = self._thread = self._server = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> SmtpRelay:
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, sock: socket.socket) -> None:
        import asyncio

        from aiosmtpd.smtp import SMTP

        loop = asyncio.get_running_loop()
        handler = _Handler(self)

        def factory() -> SMTP:
            proto = SMTP(
                handler,
                hostname=self.hostname,  # else socket.getfqdn(): slow without DNS
                authenticator=handler.authenticate,
                auth_required=self.require_auth,
                auth_require_tls=False,
                tls_context=self.tls_context,
                auth_exclude_mechanism=() if self.oauth2_introspection_url else ("XOAUTH2",),
                loop=loop,
            )
            self._protocols.add(proto)
            return proto

        self._server = await loop.create_server(factory, sock=sock)

    async def _shutdown(self) -> None:
        import asyncio

        if self._server is not None:
            self._server.close()
        for proto in list(self._protocols):
            transport = getattr(proto, "transport", None)
            if transport is not None:
                transport.close()
        if self._server is not None:
            await self._server.wait_closed()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_default_executor()


class _Handler:
    """aiosmtpd hooks: recipient checks, authentication and delivery."""

    def __init__(self, relay: SmtpRelay) -> None:
        self.relay = relay

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace").lower()
            password = auth_data.password.decode("utf-8", "replace")
            if user in self.relay.users and self.relay.users[user] == password:
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:  # noqa: N802
        """SASL XOAUTH2: ``user=U^Aauth=Bearer T^A^A``, the token asked about at the
        introspection endpoint; it must be active and U's."""
        import asyncio
        import base64
        import json

        from aiosmtpd.smtp import MISSING, AuthResult

        if len(args) == 1:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except ValueError:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in blob.decode("utf-8", "replace")
                      .split("\x01") if "=" in part)
        user = fields.get("user", "").lower()
        token = fields.get("auth", "").removeprefix("Bearer ").strip()
        url = self.relay.oauth2_introspection_url or ""
        answer = await asyncio.get_running_loop().run_in_executor(None, _introspect, url, token)
        if answer.get("active") is True and str(answer.get("username", "")).lower() == user:
            return AuthResult(success=True, auth_data=user)
        # Gmail's way: the error as a JSON challenge; the client answers with an empty line.
        error = json.dumps({"status": "401", "schemes": "Bearer", "scope": ""})
        await server.challenge_auth(error)
        return AuthResult(success=False, message="535 5.7.8 Username and Password not "
                          "accepted (XOAUTH2)")

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:  # noqa: N802
        addr = address.lower()
        domain = addr.rpartition("@")[2]
        if domain in self.relay.bounce_domains:
            envelope.rcpt_tos.append(addr)
            return "250 2.1.5 OK"
        if domain not in self.relay.domains and self.relay.outside_mailbox:
            envelope.rcpt_tos.append(addr)
            return "250 2.1.5 OK"
        if domain not in self.relay.domains:
            return f"550 5.7.1 <{address}>: relay access denied (not a local domain)"
        if _mailbox_of(addr) not in self.relay.users:
            return f"550 5.1.1 <{address}>: user unknown"
        envelope.rcpt_tos.append(addr)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        import asyncio

        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        proto = (
            "ESMTPA" if session.authenticated else ("ESMTP" if session.extended_smtp else "SMTP")
        )
        queue_id = secrets.token_hex(6).upper()
        data = _authentication_results(data, self.relay.hostname, session)
        received = (
            f"Received: from {session.host_name or 'unknown'} ([{peer}])\r\n"
            f"\tby {self.relay.hostname} (mailhelp localmail) with {proto} id {queue_id};\r\n"
            f"\t{formatdate(localtime=True)}\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        failures: list[DeliveryError] = []
        for rcpt in envelope.rcpt_tos:
            sender = envelope.mail_from
            if rcpt.rpartition("@")[2] in self.relay.bounce_domains:
                # Returned to the envelope sender, from the null sender (RFC 3464).
                failed, rcpt, sender = rcpt, (envelope.mail_from or "").lower(), ""
                if _mailbox_of(rcpt) not in self.relay.users:
                    continue  # no one to return it to
                data_for = _dsn(self.relay.hostname, rcpt, failed, data)
            else:
                data_for = received + data
                if rcpt.rpartition("@")[2] not in self.relay.domains:
                    rcpt = self.relay.outside_mailbox
            # Subaddressing as Postfix and Dovecot do it: help+42@ lands in help@'s
            # INBOX, with the address it was sent to in Delivered-To.
            delivered_to = f"Delivered-To: {rcpt}\r\n".encode() if "+" in rcpt else b""
            try:
                await loop.run_in_executor(
                    None, self.relay.delivery.deliver, sender, _mailbox_of(rcpt),
                    delivered_to + data_for,
                )
            except DeliveryError as exc:
                log.warning("delivery to %s failed: %s", rcpt, exc)
                failures.append(exc)
        if failures:
            if all(not f.temporary for f in failures):
                return f"554 5.3.0 delivery failed: {failures[0]}"
            return f"451 4.3.0 delivery failed, try again later: {failures[0]}"
        self.relay.delivered += len(envelope.rcpt_tos)
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _introspect(url: str, token: str) -> dict:
    """RFC 7662: POST token=...; the answer's JSON object, or {} when unreachable."""
    import json
    import urllib.parse
    import urllib.request

    request = urllib.request.Request(url, data=urllib.parse.urlencode({"token": token}).encode(),
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError) as exc:
        log.warning("token introspection at %s failed: %s", url, exc)
        return {}
    return answer if isinstance(answer, dict) else {}


def _dsn(hostname: str, to: str, recipient: str, original: bytes) -> bytes:
    """A delivery status notification (RFC 3464) to ``to``: ``recipient`` failed. It
    quotes the headers of the mail, as Postfix's does."""
    from email.utils import formatdate, make_msgid

    head = original.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
    boundary = secrets.token_hex(8)
    text = (f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\nTo: {to}\n"
            f"Subject: Undelivered Mail Returned to Sender\nDate: {formatdate(localtime=True)}\n"
            f"Message-ID: {make_msgid(domain=hostname)}\nAuto-Submitted: auto-replied\n"
            "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;"
            f' boundary="{boundary}"\n\n--{boundary}\nContent-Type: text/plain\n\n'
            f"Your message could not be delivered to {recipient}.\n\n"
            f"--{boundary}\nContent-Type: message/delivery-status\n\n"
            f"Reporting-MTA: dns; {hostname}\n\nFinal-Recipient: rfc822; {recipient}\n"
            f"Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <{recipient}>: "
            f"Recipient address rejected: User unknown\n\n"
            f"--{boundary}\nContent-Type: text/rfc822-headers\n\n")
    tail = f"\n--{boundary}--\n"
    return (text.encode() + head + tail.encode()).replace(b"\n", b"\r\n")


def _authentication_results(data: bytes, hostname: str, session: Any) -> bytes:
    """What a receiving server does for Authentication-Results (RFC 8601): headers that
    claim its own authserv-id are removed, and for a client that logged in (SMTP AUTH)
    it adds its own on top, naming whom it authenticated. mailhelp trusts this server's
    id in the tests and the demo, as a district trusts its own MX."""
    import re

    end = data.find(b"\r\n\r\n")
    end = data.find(b"\n\n") if end < 0 else end
    end = len(data) if end < 0 else end
    own = re.compile(rb"^authentication-results:[ \t]*(?:\([^()]*\)[ \t]*)*"
                     + re.escape(hostname.encode()) + rb"[ \t]*;.*(?:\r?\n[ \t].*)*\r?\n",
                     re.I | re.M)
    data = own.sub(b"", data[:end]) + data[end:]
    if not session.authenticated or not isinstance(session.auth_data, str):
        return data
    return (f"Authentication-Results: {hostname}; auth=pass "
            f"smtp.auth={session.auth_data}\r\n").encode() + data


def _mailbox_of(address: str) -> str:
    """``help+42@school.test`` -> ``help@school.test``."""
    local, _, domain = address.partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"
