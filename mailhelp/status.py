"""``mailhelp status``: is the desk working? One item per line, or one JSON object.

It reads, and never changes: the state the running daemon publishes (livestate.py),
the database (outbox, failed messages) and the sign-in token's health. Healthy means
nothing below needs a person; degraded names what does, and exits 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .config import Config
from .service.livestate import read_state, state_path
from .states import OutboxStatus, RawState

# A daemon rewrites its state every few seconds while its loop turns; one that has not
# for this long is gone or stuck (an IMAP command waits [imap] timeout at most).
STALE_AFTER = timedelta(seconds=90)
# Mail queued for longer than this is late (the server refuses it, or nobody sends).
OUTBOX_AGE = timedelta(hours=1)
# Failures this recent need a look; older ones are counted but no longer degrade.
RECENT = timedelta(days=7)


@dataclass(frozen=True)
class Item:
    """One line of the report: what, whether it is fine, and the facts behind it."""

    name: str
    ok: bool
    detail: str
    facts: dict = field(default_factory=dict)

    def line(self) -> str:
        return f"{'ok' if self.ok else 'DEGRADED':<9}{self.name:<17}{self.detail}"


@dataclass(frozen=True)
class Health:
    items: list[Item]
    checked_at: datetime

    @property
    def healthy(self) -> bool:
        return all(item.ok for item in self.items)

    def lines(self) -> list[str]:
        problems = [item.name for item in self.items if not item.ok]
        verdict = "healthy" if not problems else "degraded: " + ", ".join(problems)
        return [item.line() for item in self.items] + [f"status: {verdict}"]

    def as_json(self) -> dict:
        data: dict = {"status": "healthy" if self.healthy else "degraded",
                      "healthy": self.healthy, "checked_at": _iso(self.checked_at),
                      "problems": [f"{i.name}: {i.detail}" for i in self.items if not i.ok],
                      "mailboxes": []}
        for item in self.items:
            if item.name.startswith("mailbox"):
                data["mailboxes"].append({"ok": item.ok, **item.facts})
            else:
                facts = dict(item.facts)
                key = facts.pop("key", item.name)
                data[key] = {"ok": item.ok, **facts}
        return data


def token_health(config: Config) -> dict | None:
    """The OAuth 2.0 sign-in's health, or None where the desk signs in with passwords
    (or has not asked for a token yet): the one place status asks about tokens.

    Read from the record the processes that get tokens keep (oauth2_health.py). Keys:
    ``ok`` (can a token still be had?), ``expires_at`` (datetime or None), ``detail``
    (one line: the method, or what is wrong), and the record's facts.
    """
    from .oauth2.health import read_health

    health = read_health(config)
    if health is None:
        return None
    return {"ok": not health.degraded, "expires_at": health.expires_at,
            "detail": health.line() if health.degraded else f"by {health.method}",
            "method": health.method, "checked_at": _iso(health.checked_at),
            "error": health.error, "permanent": health.permanent,
            "failing_since": _iso(health.failing_since)}


def collect(config: Config, now: datetime | None = None,
            outbox_age: timedelta = OUTBOX_AGE) -> Health:
    now = now or datetime.now(UTC)
    items = _daemon_items(config, now)
    items += _database_items(config, now, outbox_age)
    items.append(_token_item(config, now))
    return Health(items, now)


def _daemon_items(config: Config, now: datetime) -> list[Item]:
    path = state_path(config)
    path = os.path.abspath(path) if path else None
    expected = config.imap is not None or bool(config.ingest.socket)
    facts: dict = {"state_file": path, "running": False}
    state = read_state(path) if path else None
    unwatched = []
    if config.imap is not None:  # the same words as ImapMailbox.account
        imap = config.imap
        account = f"{imap.username}@{imap.host}:{imap.port}/{imap.folder}"
        unwatched.append(Item(f"mailbox {imap.folder}", False,
                              f"{account}: not watched (no daemon)",
                              {"account": account, "folder": imap.folder, "connected": False}))
    if state is None:
        where = f"no state at {path}" if path else "no place for a state file"
        return [Item("daemon", not expected, f"not running ({where})", facts), *unwatched]
    updated = _time(state.get("updated_at"))
    age = (now - updated).total_seconds() if updated else None
    facts.update(pid=state.get("pid"), started_at=state.get("started_at"),
                 updated_at=state.get("updated_at"), age_seconds=age,
                 status=state.get("status"), ingest_socket=state.get("ingest_socket") or None)
    items = []
    if not state.get("running"):
        items.append(Item("daemon", not expected,
                          f"stopped (at {_local(updated)}, pid {state.get('pid')})", facts))
        return items + unwatched
    if age is None or age > STALE_AFTER.total_seconds() or not _alive(state.get("pid")):
        gone = "gone without stopping" if not _alive(state.get("pid")) else "not responding"
        items.append(Item("daemon", False, f"{gone}: pid {state.get('pid')}, state last "
                          f"written {_ago(age)}", facts))
        return items + unwatched
    facts["running"] = True
    items.append(Item("daemon", True, f"running, pid {state.get('pid')} since "
                      f"{_local(_time(state.get('started_at')))}: {state.get('status')}", facts))
    if state.get("reload_error"):
        items.append(Item("reload", False, f"the config file no longer loads (the daemon "
                          f"runs on the one it had): {state['reload_error']}",
                          {"key": "reload", "error": state["reload_error"],
                           "at": state.get("reloaded_at")}))
    for record in state.get("mailboxes") or []:
        items.append(_mailbox_item(record, now))
    return items


def _mailbox_item(record: dict, now: datetime) -> Item:
    name = f"mailbox {record.get('folder', '')}"
    seen = []
    if record.get("last_check"):
        seen.append(f"checked {_ago(_age(record['last_check'], now))}")
    seen.append(f"last fetch {_ago(_age(record['last_fetch'], now))}"
                if record.get("last_fetch") else "nothing fetched yet")
    if record.get("waiting") is not None:
        seen.append(f"{record['waiting']} waiting")
    if record.get("connected"):
        mode = "IDLE" if record.get("mode") == "idle" else "polling"
        return Item(name, True, f"{record['account']}: connected, {mode}, "
                    + ", ".join(seen), record)
    since = _local(_time(record.get("since")))
    return Item(name, False, f"{record['account']}: not connected since {since}: "
                f"{record.get('error') or 'no connection yet'}; " + ", ".join(seen), record)


@dataclass(frozen=True)
class _Counts:
    """What the database says about the desk's work, read in one session."""

    queued: int
    oldest_queued: datetime | None
    recent: dict[str, int]  # outbox rows failed / suppressed lately, by status
    failed: int  # messages in the failed folder
    failed_recent: int
    last_failed: datetime | None
    last_error: str | None


def _database_items(config: Config, now: datetime, outbox_age: timedelta) -> list[Item]:
    from sqlalchemy.exc import SQLAlchemyError

    from .db.session import Database
    from .errors import MailhelpError

    sqlite_file = _sqlite_file(config.database.url)
    if sqlite_file is not None and not os.path.exists(sqlite_file):
        # Opening it would make an empty one (a relative path, run from elsewhere).
        return [Item("database", False, f"no database at {os.path.abspath(sqlite_file)} "
                     "(run from the daemon's directory, or give database.url an absolute "
                     "path)")]
    try:
        db = Database(config.database.url)
        if not db.schema_ready():
            return [Item("database", False, "no schema yet; run 'mailhelp init'")]
        counts = _read_counts(db, now)
        db.dispose()
    except (MailhelpError, SQLAlchemyError) as error:
        text = str(getattr(error, "orig", None) or error).strip().splitlines()
        return [Item("database", False, text[0] if text else type(error).__name__)]
    return _count_items(counts, now, outbox_age)


def _read_counts(db, now: datetime) -> _Counts:
    from sqlalchemy import case, func, select

    from .db.models import Outbox, RawMessage

    with db.sessions() as session:
        queued, oldest = session.execute(
            select(func.count(), func.min(Outbox.created_at))
            .where(Outbox.status == OutboxStatus.QUEUED)).one()
        recent = dict(session.execute(
            select(Outbox.status, func.count())
            .where(Outbox.status.in_((OutboxStatus.FAILED, OutboxStatus.SUPPRESSED)),
                   Outbox.created_at >= now - RECENT)
            .group_by(Outbox.status)).all())
        failed_time = func.coalesce(RawMessage.processed_at, RawMessage.received_at)
        failed, failed_recent, last_failed = session.execute(
            select(func.count(), func.sum(case((failed_time >= now - RECENT, 1), else_=0)),
                   func.max(failed_time))
            .where(RawMessage.state == RawState.FAILED)).one()
        last_error = session.scalar(
            select(RawMessage.error).where(RawMessage.state == RawState.FAILED)
            .order_by(RawMessage.id.desc()).limit(1))
    return _Counts(queued, oldest, recent, failed, failed_recent or 0, last_failed, last_error)


def _count_items(counts: _Counts, now: datetime, outbox_age: timedelta) -> list[Item]:
    oldest = counts.oldest_queued
    oldest_age = (now - oldest).total_seconds() if oldest is not None else None
    late = oldest_age is not None and oldest_age > outbox_age.total_seconds()
    pending = f", the oldest queued {_ago(oldest_age)}" if oldest is not None else ""
    items = [Item("outbox", not late, f"{counts.queued} queued{pending}"
                  + (f" (later than {_span(outbox_age.total_seconds())})" if late else ""),
                  {"queued": counts.queued, "oldest_queued_at": _iso(oldest),
                   "oldest_age_seconds": oldest_age,
                   "late_after_seconds": outbox_age.total_seconds()})]
    days = RECENT.days
    sent_failed = counts.recent.get(OutboxStatus.FAILED, 0)
    items.append(Item("mail failed", not sent_failed,
                      f"{sent_failed} refused for good in the last {days} days"
                      + (" (see the tickets' history)" if sent_failed else ""),
                      {"key": "outbox_failed", "recent": sent_failed, "days": days}))
    suppressed = counts.recent.get(OutboxStatus.SUPPRESSED, 0)
    items.append(Item("mail suppressed", True,
                      f"{suppressed} held back (rate limit, bounced address) in the last "
                      f"{days} days", {"key": "outbox_suppressed", "recent": suppressed,
                                       "days": days}))
    failed, failed_recent = counts.failed, counts.failed_recent
    if failed:
        detail = (f"{failed} in the failed folder, {failed_recent} in the last {days} days, "
                  f"the latest {_ago(_age(counts.last_failed, now))}: "
                  f"{counts.last_error or '?'}; see 'mailhelp failed list'")
    else:
        detail = "none in the failed folder"
    items.append(Item("failed messages", not failed_recent, detail,
                      {"key": "failed_messages", "count": failed, "recent": failed_recent,
                       "days": days, "latest_at": _iso(counts.last_failed),
                       "latest_error": counts.last_error}))
    return items


def _token_item(config: Config, now: datetime) -> Item:
    health = token_health(config)
    if health is None:
        used = any(getattr(section, "auth", "") == "oauth2"
                   for section in (config.imap, config.smtp) if section is not None)
        return Item("oauth2 token", True, "no token got yet" if used
                    else "not used (password sign-in)", {"key": "token", "used": used})
    expires = health.get("expires_at")
    expires = _time(expires) if isinstance(expires, str) else expires
    facts = {**{k: v for k, v in health.items() if k != "ok"}, "key": "token",
             "expires_at": _iso(expires)}
    when = f"expires {_local(expires)}" if expires else "no expiry known"
    if not health.get("ok", False):
        return Item("oauth2 token", False, f"{health.get('detail') or 'cannot be refreshed'}"
                    f" ({when})", facts)
    return Item("oauth2 token", True, when + (f": {health['detail']}"
                                              if health.get("detail") else ""), facts)


def _sqlite_file(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        found = make_url(url)
    except ArgumentError:
        return None
    path = found.database or ""
    if found.get_backend_name() != "sqlite" or path in ("", ":memory:") \
            or path.startswith("file:"):
        return None
    return path


def _alive(pid: object) -> bool:
    """Whether ``pid`` names a process (a pid of this host: the state file's is)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        return True
    return True


def _time(text: object) -> datetime | None:
    if isinstance(text, datetime):
        return text
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _age(value: object, now: datetime) -> float | None:
    moment = _time(value)
    return (now - moment).total_seconds() if moment else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _local(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if value else "?"


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{_span(seconds)} ago"
