"""How the OAuth 2.0 sign-in is doing, where ``mailhelp status`` reads it, and the alarm
when it stops working.

The record is a small JSON file, mode 0600, beside the database (SQLite:
``mailhelp.db-oauth2.json``) or in [storage] attachments_dir (PostgreSQL:
``oauth2-token.json``), replaced whole (write, then rename) by whichever process (the
daemon, its sender, run --once, check) last got a token or failed to::

    {"version": 1, "state": "ok" | "failing", "method": "refresh_token",
     "expires_at": "2026-12-01T10:00:00+00:00" | null, "checked_at": "...",
     "error": "", "permanent": false, "failing_since": null, "alarm_at": null}

A token that can no longer be had (``permanent``: revoked, an expired secret), or one
that could not be had for ALARM_AFTER, mails ``[helpdesk] admin`` (alerts.py: at most
once a day); every failed attempt is logged.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ..private import desk_file
from .grants import Token, write_private

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

VERSION = 1
ALARM_KEY = "oauth2"
ALARM_EVERY = timedelta(days=1)
# A token endpoint out of reach for this long is worth a person's look too.
ALARM_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class TokenHealth:
    """The last word on the token: ``state`` "ok" or "failing" (then ``degraded``)."""

    state: str
    method: str
    checked_at: datetime
    expires_at: datetime | None = None
    error: str = ""
    permanent: bool = False
    failing_since: datetime | None = None
    alarm_at: datetime | None = None

    @property
    def degraded(self) -> bool:
        return self.state != "ok"

    def line(self) -> str:
        """One line for ``status`` and ``check``."""
        if self.degraded:
            since = self.failing_since.isoformat(timespec="seconds") \
                if self.failing_since else "?"
            return f"failing since {since}: {self.error}"
        if self.expires_at is None:
            return f"ok ({self.method}), expiry not known"
        return f"ok ({self.method}), expires {self.expires_at.isoformat(timespec='seconds')}"

    def as_json(self) -> dict:
        out = asdict(self)
        for name in ("checked_at", "expires_at", "failing_since", "alarm_at"):
            out[name] = out[name].isoformat(timespec="seconds") if out[name] else None
        return {"version": VERSION, **out}


def health_path(config: Config) -> str | None:
    """Where this config's token health is kept (None: nowhere it could be)."""
    return desk_file(config, "oauth2.json", "oauth2-token.json")


def read_health(config: Config) -> TokenHealth | None:
    """The token's last known health; None where no token was ever asked for (or the
    config signs in with no OAuth 2.0 at all)."""
    path = health_path(config)
    if path is None or not _uses_oauth2(config):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return TokenHealth(
            state=str(data["state"]), method=str(data.get("method", "")),
            checked_at=_time(data["checked_at"]), expires_at=_time(data.get("expires_at")),
            error=str(data.get("error", "")), permanent=bool(data.get("permanent")),
            failing_since=_time(data.get("failing_since")), alarm_at=_time(data.get("alarm_at")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_ok(config: Config, token: Token, now: datetime) -> None:
    before = read_health(config)
    if before is not None and before.degraded:
        log.warning("action=oauth2_token_recovered method=%s (failing since %s)",
                    token.method, before.failing_since)
    _write(config, TokenHealth("ok", token.method, now, token.expires_at))


def record_failure(config: Config, method: str, error: str, permanent: bool,
                   now: datetime) -> TokenHealth:
    """Log the failure, keep it in the record, and alarm the admin where it is time."""
    before = read_health(config)
    since = before.failing_since if before is not None and before.degraded else None
    health = TokenHealth("failing", method, now, before.expires_at if before else None,
                         error, permanent, since or now,
                         before.alarm_at if before is not None else None)
    log.error("action=oauth2_token_failed method=%s permanent=%s error=%s%s", method,
              "yes" if permanent else "no", error,
              " (the desk cannot sign in until a person acts: see the README, "
              "'Signing in with OAuth 2.0')" if permanent else "")
    due = permanent or now - health.failing_since >= ALARM_AFTER
    recent = health.alarm_at is not None and now - health.alarm_at < ALARM_EVERY
    if due and not recent and _alarm(config, health, now):
        health = replace(health, alarm_at=now)
    _write(config, health)
    return health


def _alarm(config: Config, health: TokenHealth, now: datetime) -> bool:
    """Queue the mail to [helpdesk] admin (alerts.py keeps it to one a day)."""
    from ..db.session import Database, transaction
    from ..desk.alerts import admin_alert

    user = config.imap.username if config.imap is not None else \
        (config.smtp.username if config.smtp is not None else "")
    problem = f"mailhelp cannot sign in to {user}: no OAuth 2.0 access token"
    detail = (f"{health.error}\n\nMethod: {health.method}. Failing since "
              f"{health.failing_since.isoformat(timespec='seconds')}. Until this is "
              "mended no mail is read (and, where [smtp] uses the same token, none is "
              "sent). For delegated access run 'mailhelp oauth2 authorize' again; for "
              "client credentials renew the client secret; for a service account check "
              "its key and domain-wide delegation.")
    db = None
    try:
        db = Database(config.database.url, pooled=False)
        with transaction(db) as tx:
            return admin_alert(tx, config, ALARM_KEY, problem, detail, now, ALARM_EVERY)
    except Exception as error:  # the alarm must not hide the failure it reports
        log.warning("action=oauth2_alarm_not_queued error=%s", str(error).splitlines()[0]
                    if str(error) else type(error).__name__)
        return False
    finally:
        if db is not None:
            db.dispose()


def _write(config: Config, health: TokenHealth) -> None:
    path = health_path(config)
    if path is None:
        return
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        write_private(path, json.dumps(health.as_json(), indent=1) + "\n")
    except OSError as error:
        log.warning("action=oauth2_health_not_written path=%s error=%s", path,
                    error.strerror or error)


def _uses_oauth2(config: Config) -> bool:
    return any(section is not None and section.auth == "oauth2"
               for section in (config.imap, config.smtp))


def _time(text) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(str(text))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
