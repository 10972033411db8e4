"""OAuth 2.0 sign-in for [imap] and [smtp] (auth = "oauth2").

One token source per process and [oauth2] section: a token is kept (in memory, and in
``[oauth2] cache_file`` where given) until shortly before it expires; a token the server
refuses is replaced once and the login tried again. Every token had or not had is
written down for ``mailhelp status`` (oauth2_health.py); the grants themselves are in
oauth2_grants.py.

IMAP signs in with SASL XOAUTH2 (imapclient's ``oauth2_login``), or OAUTHBEARER where
the server offers only that; SMTP with AUTH XOAUTH2 (aiosmtplib's ``auth_xoauth2``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .grants import (
    Token,
    TokenError,
    TokenRevoked,
    fetch,
    scope,
    token_url,
    write_private,
)
from .health import read_health, record_failure, record_ok

if TYPE_CHECKING:
    from ..config import Config, ImapConfig, SmtpConfig

log = logging.getLogger(__name__)

# A token is replaced this long before it expires (a tenth of its life if that is less).
MARGIN = timedelta(minutes=5)

__all__ = ["TokenError", "TokenRevoked", "TokenSource", "check_token", "imap_login",
           "smtp_login", "source_for", "read_health"]


class TokenSource:
    """Access tokens for one mailbox, by the method [oauth2] names."""

    def __init__(self, desk: Config, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 fetcher: Callable[..., Token] = fetch) -> None:
        if desk.oauth2 is None:
            raise ConfigError('oauth2: section missing (auth = "oauth2" needs it)')
        self.desk = desk
        self.settings = desk.oauth2
        self.user = mailbox_user(desk)
        self.clock = clock
        self.fetcher = fetcher
        self.lock = threading.Lock()
        self.cached: tuple[Token, datetime] | None = None  # with when it was had

    def token(self, refused: str = "") -> Token:
        """A token good for a while yet. ``refused``: the one the server just refused,
        which is then not taken again whatever its stated expiry."""
        with self.lock:
            now = self.clock()
            for entry in (self.cached, self._read_cache_file()):
                if entry is not None and entry[0].access_token != refused \
                        and _fresh(*entry, now):
                    self.cached = entry
                    return entry[0]
            try:
                token = self.fetcher(self.settings, self.user)
            except TokenError as error:
                self.cached = None
                record_failure(self.desk, self.settings.method, str(error),
                               isinstance(error, TokenRevoked), now)
                raise
            self.cached = (token, now)
            self._write_cache_file(token, now)
            record_ok(self.desk, token, now)
            log.info("action=oauth2_token method=%s user=%s expires=%s", token.method,
                     self.user, token.expires_at.isoformat(timespec="seconds")
                     if token.expires_at else "unknown")
            return token

    def refused(self, server: str, reason: str) -> None:
        """A server refused a token just had: the grant gives tokens the mailbox does
        not take (the app lost its permission, the wrong user): a person must act."""
        with self.lock:
            self.cached = None
            record_failure(self.desk, self.settings.method,
                           f"{server} refused a new token for {self.user}: {reason}", True,
                           self.clock())

    def _cache_key(self) -> str:
        settings = self.settings
        what = [settings.method, settings.provider, settings.tenant, settings.client_id,
                token_url(settings), scope(settings), settings.service_account_file,
                settings.refresh_token_file, self.user]
        return hashlib.sha256("\0".join(what).encode()).hexdigest()[:32]

    def _read_cache_file(self) -> tuple[Token, datetime] | None:
        path = self.settings.cache_file
        if not path or self.settings.method == "command":
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if data.get("key") != self._cache_key():
                return None
            return (Token(str(data["access_token"]), datetime.fromisoformat(data["expires_at"]),
                          str(data["method"])), datetime.fromisoformat(data["fetched_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_cache_file(self, token: Token, now: datetime) -> None:
        path = self.settings.cache_file
        if not path or token.expires_at is None or self.settings.method == "command":
            return
        entry = {"key": self._cache_key(), "access_token": token.access_token,
                 "expires_at": token.expires_at.isoformat(), "method": token.method,
                 "fetched_at": now.isoformat()}
        try:
            write_private(path, json.dumps(entry) + "\n")
        except OSError as error:
            log.warning("action=oauth2_cache_not_written path=%s error=%s", path,
                        error.strerror or error)


def _fresh(token: Token, fetched_at: datetime, now: datetime) -> bool:
    if token.expires_at is None:  # a program's token of unknown life: asked for each time
        return False
    margin = min(MARGIN, (token.expires_at - fetched_at) / 10)
    return now < token.expires_at - margin


def mailbox_user(desk: Config) -> str:
    """The mailbox the tokens are for: [imap] username, else [smtp] username."""
    if desk.imap is not None:
        return desk.imap.username
    return desk.smtp.username if desk.smtp is not None else ""


_sources: dict[tuple, TokenSource] = {}
_sources_lock = threading.Lock()


def source_for(desk: Config) -> TokenSource:
    """This process's token source for the config (a reloaded config with the same
    [oauth2] keys keeps the tokens it had)."""
    key = (desk.oauth2, mailbox_user(desk), desk.database.url, desk.storage.attachments_dir)
    with _sources_lock:
        if key not in _sources:
            _sources[key] = TokenSource(desk)
        return _sources[key]


def _desk(section: ImapConfig | SmtpConfig, name: str) -> Config:
    if section.desk is None or section.desk.oauth2 is None:
        raise ConfigError(f'{name}.auth: "oauth2" needs an [oauth2] section')
    return section.desk


def imap_login(client, config: ImapConfig) -> None:
    """Sign in with a token; once more with a new one if the server refuses it (it
    expired, or was revoked, before the time it gave). Raises imapclient's LoginError
    when the second is refused too, TokenError when no token can be had."""
    from imapclient.exceptions import LoginError

    source = source_for(_desk(config, "imap"))
    token = source.token()
    try:
        _imap_authenticate(client, config.username, token)
    except LoginError as error:
        log.warning("action=oauth2_token_refused server=imap user=%s error=%s (asking for "
                    "a new token)", config.username, _text(error))
        token = source.token(refused=token.access_token)
        try:
            _imap_authenticate(client, config.username, token)
        except LoginError as again:
            source.refused("imap", _text(again))
            raise


def _imap_authenticate(client, user: str, token: Token) -> None:
    # XOAUTH2 is what Exchange Online and Gmail offer; OAUTHBEARER (RFC 7628) is the
    # standard one, used where a server offers only that.
    if client.has_capability("AUTH=OAUTHBEARER") and not client.has_capability("AUTH=XOAUTH2"):
        client.oauthbearer_login(user, token.access_token)
    else:
        client.oauth2_login(user, token.access_token)


async def smtp_login(client, config: SmtpConfig) -> None:
    """AUTH XOAUTH2 on a connected aiosmtplib client, with one retry as for IMAP."""
    import aiosmtplib

    desk = _desk(config, "smtp")
    source = source_for(desk)
    user = config.username or mailbox_user(desk)
    token = await asyncio.to_thread(source.token)
    try:
        await client.auth_xoauth2(user, token.access_token)
    except aiosmtplib.SMTPAuthenticationError as error:
        log.warning("action=oauth2_token_refused server=smtp user=%s error=%s %s (asking "
                    "for a new token)", user, error.code, error.message)
        token = await asyncio.to_thread(source.token, token.access_token)
        try:
            await client.auth_xoauth2(user, token.access_token)
        except aiosmtplib.SMTPAuthenticationError as again:
            await asyncio.to_thread(source.refused, "smtp", f"{again.code} {again.message}")
            raise


def check_token(config: Config) -> str:
    """``mailhelp check``: have a token (or use the one kept) and say until when."""
    source = source_for(config)
    token = source.token()
    what = config.oauth2.provider or "token_command"
    expiry = f"expires {token.expires_at.astimezone().isoformat(timespec='seconds')}" \
        if token.expires_at else "expiry not known (not a JWT)"
    return f"token for {source.user} from {token.method} ({what}), {expiry}"


def _text(error: BaseException) -> str:
    text = str(error)
    return text[2:-1] if text.startswith("b'") else text
