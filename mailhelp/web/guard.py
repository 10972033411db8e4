"""``mailhelp serve``'s guard on connections, so that one client cannot lock out the rest.

uvicorn answers 503 to everyone once ``limit_concurrency`` connections are open, and it
waits for ever on a client that opened one and sent nothing, or half a request line:
250 such connections from one machine took the survey page down. So each connection
must send its request's line and headers within HEAD_TIMEOUT (of being opened, or of
its last response), and one address (an IPv6 /64) may hold at most PER_CLIENT at once;
more are closed as they come. A reverse proxy's addresses (uvicorn's
``FORWARDED_ALLOW_IPS``, default 127.0.0.1) are not capped: every visitor comes through
them, and the proxy has limits of its own (README, "Behind a reverse proxy").
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0  # seconds to send a request line and headers
KEEP_ALIVE = 5  # seconds an idle connection is kept for the next request (uvicorn's)
PER_CLIENT = 20  # connections one address may hold open at once

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxies(setting: str | None = None) -> tuple[Network, ...]:
    """The addresses uvicorn takes X-Forwarded-For from; ``*`` (anyone) exempts no one."""
    if setting is None:
        setting = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
    networks = []
    for item in setting.split(","):
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:  # "*", or a Unix socket's path
            continue
    return tuple(networks)


@dataclass(frozen=True)
class Limits:
    """How long a client may take over a request's head, how many connections one
    address may hold, and which addresses (the reverse proxy's) are not capped."""

    head_timeout: float = HEAD_TIMEOUT
    per_client: int = PER_CLIENT
    exempt: tuple[Network, ...] = field(default_factory=proxies)


def client_key(peer: Any) -> str:
    """What the per-client cap counts by: the address, or an IPv6 address's /64."""
    address = peer[0] if isinstance(peer, tuple) and peer else ""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return str(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # ::ffff:192.0.2.7, a dual-stack socket's
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def guarded_protocol(limits: Limits) -> type:
    """uvicorn's h11 protocol with the head timeout and the per-client cap."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    open_by_client: Counter[str] = Counter()
    noted: set[str] = set()  # clients at their cap, logged once until they drop below

    def exempt(peer: Any) -> bool:
        try:
            address = ipaddress.ip_address(peer[0])
        except (TypeError, IndexError, ValueError):  # not an IP socket
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in limits.exempt)

    class GuardedH11Protocol(H11Protocol):
        key = ""
        refused = False
        head_timer = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            self.key = client_key(peer)
            if open_by_client[self.key] >= limits.per_client and not exempt(peer):
                self.refused = True
                if self.key not in noted:
                    noted.add(self.key)
                    log.warning("web action=connection_refused client=%s reason=more than "
                                "%s connections open", self.key, limits.per_client)
                transport.abort()
                return
            open_by_client[self.key] += 1
            super().connection_made(transport)
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.refused:
                return
            open_by_client[self.key] -= 1
            if open_by_client[self.key] <= 0:
                del open_by_client[self.key]
                noted.discard(self.key)
            if self.head_timer is not None:
                self.head_timer.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_head()  # the next request's head, in as much time again

        def _await_head(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
            self.head_timer = self.loop.call_later(limits.head_timeout, self._head_late)

        def _head_late(self) -> None:
            # IDLE: no whole request line and headers yet (nothing, or part of them).
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                log.info("web action=connection_dropped client=%s reason=no request head "
                         "within %ss", self.key, limits.head_timeout)
                self.transport.abort()

    return GuardedH11Protocol
