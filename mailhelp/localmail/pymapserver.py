"""pymap (pure-Python IMAP server, in-memory ``dict`` backend) with our own users.

pymap's CLI only knows one demo user, so the backend is built here the way
``pymap.main.run`` does it and the other users are added through the backend's API.
Plain IMAP only (no TLS): LOGIN, SELECT, UID FETCH/SEARCH, APPEND, CREATE, MOVE, IDLE work.
Mail lives in memory: it does not survive a restart of the process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)


async def serve_pymap(host: str, port: int, users: Mapping[str, str], stop: asyncio.Event) -> None:
    """Serve IMAP on ``host:port`` until ``stop`` is set."""
    # pymap's greeting calls socket.getfqdn() per connection unless FQDN is set: slow without DNS.
    os.environ.setdefault("FQDN", "localhost")
    from pymap.backend.dict import DictBackend, Identity
    from pymap.imap import IMAPService
    from pymap.user import Passwords, UserMetadata
    from pysasl.hashing import Cleartext

    if not users:
        raise ValueError("pymap needs at least one user")
    (first, first_password), *others = [(a.lower(), p) for a, p in users.items()]
    # The attributes pymap's argparse would set (pymap.main + IMAPService.add_arguments).
    args = argparse.Namespace(
        debug=False,
        host=host,
        port=port,
        cert=None,
        key=None,
        tls=False,
        proxy_protocol=None,
        passlib_cfg=None,
        inherited_sockets=None,
        demo_data=False,
        demo_user=first,
        demo_password=first_password,
    )
    # tls=False: with TLS enabled pymap refuses LOGIN before STARTTLS.
    # Cleartext: the default PBKDF2 (500,000 rounds) costs 0.1 s per LOGIN and per user at start.
    backend, config = await DictBackend.init(
        args,
        invalid_user_sleep=0.0,
        reject_dnsbl=False,
        bad_command_limit=None,
        hash_context=Cleartext(),
    )
    config.apply_context()
    passwords = Passwords(config)
    for name, password in others:  # the first one is pymap's "demo user"
        meta = UserMetadata(config, name, password=await passwords.hash_password(password))
        await Identity(name, backend.login, None, frozenset()).set(meta)
    async with contextlib.AsyncExitStack() as stack:
        await backend.start(stack)
        await IMAPService(backend, config).start(stack)
        log.info("pymap listening on %s:%d for %d users", host, port, len(users))
        await stop.wait()
