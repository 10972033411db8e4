"""TOML text -> Config: each value converted by its field's type, every error naming
the key at fault, and [oauth2] checked and handed to the sections that sign in with it."""

from __future__ import annotations

import logging
import os
import tomllib
import types
import typing
from dataclasses import MISSING, fields, replace
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..durations import parse_duration
from ..errors import ConfigError
from ..weekly import DateSpan, WeeklyAt, WeeklyHours
from .sections import Config
from .values import ByteSize, FileMode, Secret, parse_mode, parse_size


def default_path() -> Path:
    return Path(os.environ.get("MAILHELP_CONFIG") or "mailhelp.toml")


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a config file; raise ConfigError naming the key at fault."""
    path = Path(path) if path else default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (give --config or set MAILHELP_CONFIG)") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file: {error.strerror}") from None
    return loads(text, str(path))


def loads(text: str, path: str = "<string>") -> Config:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return _check_categories(
        _wire_oauth2(_build(Config, document, prefix="", extra={"path": path})))


def _wire_oauth2(config: Config) -> Config:
    """Check [oauth2] where a section signs in with it, and hand those sections the
    whole file (the token source needs [oauth2], the mailbox user, the database)."""
    users = [name for name in ("imap", "smtp")
             if getattr(config, name) is not None and getattr(config, name).auth == "oauth2"]
    if not users:
        return config
    oauth2 = config.oauth2
    if oauth2 is None:
        raise ConfigError(f'{users[0]}.auth: "oauth2" needs an [oauth2] section')
    if oauth2.token_command:
        if oauth2.provider:
            raise ConfigError("oauth2.token_command: give token_command or provider, not both")
    elif not oauth2.provider:
        raise ConfigError("oauth2.provider: missing (microsoft or google), or give "
                          "token_command")
    elif oauth2.provider == "google" and oauth2.service_account_file:
        if config.imap is None and not (config.smtp and config.smtp.username):
            raise ConfigError("oauth2.service_account_file: acts as the mailbox user, "
                              "[imap] username (or [smtp] username): none is given")
    else:
        if not oauth2.client_id:
            raise ConfigError(f"oauth2.client_id: missing ({oauth2.provider} needs the "
                              "app's client ID)")
        if oauth2.method == "client_credentials":
            if oauth2.provider == "google":
                raise ConfigError("oauth2.refresh_token_file: missing (google needs it, "
                                  "or service_account_file)")
            if not oauth2.client_secret.given:
                raise ConfigError("oauth2.client_secret: missing (client credentials need "
                                  "it; for delegated access give refresh_token_file)")
            if not oauth2.tenant and not oauth2.token_url:
                raise ConfigError("oauth2.tenant: missing (client credentials need your "
                                  "tenant's ID or domain)")
        elif oauth2.provider == "google" and not oauth2.client_secret.given:
            raise ConfigError("oauth2.client_secret: missing (google's installed apps have "
                              "one; it is in the downloaded client JSON)")
    _check_token_url(oauth2.token_url)
    if config.smtp is not None and config.smtp.auth == "oauth2" and not config.smtp.username \
            and config.imap is None:
        raise ConfigError("smtp.username: missing (XOAUTH2 names the mailbox)")
    sections = {name: replace(getattr(config, name), desk=config) for name in users}
    return replace(config, **sections)


def _check_token_url(url: str) -> None:
    from urllib.parse import urlsplit

    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    # Plain HTTP sends the client secret in the clear: only to this machine (tests).
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        return
    raise ConfigError(f"oauth2.token_url: {url!r} is not an https:// URL")


# Keys an older mailhelp read that mean nothing now: a config that has them still loads
# (an upgrade must not stop the desk), and the log says they can go.
RETIRED = {
    "ingest.linger": "ingest no longer stays on; run the daemon ('mailhelp run') with "
                     "[ingest] socket for MTA pipe delivery",
}


def _build(cls: type, table: dict, prefix: str, extra: dict | None = None) -> typing.Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)
             if f.name != "path" and not f.metadata.get("internal")}
    values: dict[str, typing.Any] = dict(extra or {})
    secret_keys = {f"{f.name}{s}" for f in known.values() if hints[f.name] is Secret
                   for s in ("", "_env", "_command")}
    for key in table:
        if f"{prefix}{key}" in RETIRED:
            logging.getLogger(__name__).warning("config %s%s: no longer used (%s); remove it",
                                                prefix, key, RETIRED[f"{prefix}{key}"])
            continue
        if key not in known and key not in secret_keys:
            kind = "section" if isinstance(table[key], dict) and not prefix else "key"
            raise ConfigError(f"{prefix}{key}: unknown {kind}")
    for name, spec in known.items():
        key = f"{prefix}{name}"
        hint = hints[name]
        if hint is Secret:
            values[name] = _secret(table, name, key)
            continue
        if name not in table:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise ConfigError(f"{key}: missing (required)")
            continue
        values[name] = _convert(table[name], hint, key, spec.metadata)
    return cls(**values)


def _is_section(hint: typing.Any) -> bool:
    """A section's dataclass (sections.py), not a value's (weekly.DateSpan)."""
    return isinstance(hint, type) and hasattr(hint, "__dataclass_fields__") \
        and hint.__module__ == Config.__module__


# Keywords in all [[categories]]: each new ticket's subject and body are matched
# against them all (one pattern, linear in the text; see desk/categories.py).
MAX_KEYWORDS = 10_000


def _check_categories(config: Config) -> Config:
    """[[categories]]: each has a name and a keyword, and no two share a name (in any
    case): ``#category NAME`` must name one."""
    seen: set[str] = set()
    total = 0
    for number, category in enumerate(config.categories, 1):
        key = f"categories[{number}]"
        name = " ".join(category.name.split())
        if not name or len(name) > 100:
            raise ConfigError(f"{key}.name: must be 1 to 100 characters, got "
                              f"{category.name!r}")
        if name.casefold() in seen:
            raise ConfigError(f"{key}.name: {name!r} is given twice")
        seen.add(name.casefold())
        if not category.keywords or not all(w.strip() for w in category.keywords):
            raise ConfigError(f"{key}.keywords: give at least one keyword, none empty")
        if any(len(w) > 100 for w in category.keywords):
            raise ConfigError(f"{key}.keywords: a keyword longer than 100 characters")
        total += len(category.keywords)
    if total > MAX_KEYWORDS:
        raise ConfigError(f"categories: {total} keywords, more than {MAX_KEYWORDS}")
    return config


def _secret(table: dict, name: str, key: str) -> Secret:
    given = {s: table[f"{name}{s}"] for s in ("", "_env", "_command") if f"{name}{s}" in table}
    if len(given) > 1:
        raise ConfigError(f"{key}: give only one of {name}, {name}_env, {name}_command")
    for suffix, value in given.items():
        if not isinstance(value, str):
            raise ConfigError(f"{key}{suffix}: expected a string")
    return Secret(key, value=given.get(""), env=given.get("_env"), command=given.get("_command"))


def _convert(value: typing.Any, hint: typing.Any, key: str, metadata: typing.Mapping) -> typing.Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        section = next(a for a in typing.get_args(hint) if a is not type(None))
        return _convert(value, section, key, metadata)
    if hint in (WeeklyAt, WeeklyHours, DateSpan):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        try:
            return hint.parse(value)
        except ValueError as error:
            raise ConfigError(f"{key}: {error}") from None
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a [{key}] section")
        return _build(hint, value, prefix=f"{key}.")
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is ByteSize:
        if isinstance(value, int) and not isinstance(value, bool):
            return ByteSize(value)
        try:
            return parse_size(str(value))
        except ValueError as error:
            raise ConfigError(f"{key}: {error}") from None
    if hint is FileMode:
        try:
            return parse_mode(value)
        except ValueError as error:
            raise ConfigError(f"{key}: {error}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{key}: must not be negative")
        return value
    if hint is timedelta:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a duration such as \"30s\", \"1h\", \"3d\"")
        try:
            return parse_duration(value)
        except ValueError as error:
            raise ConfigError(f"{key}: {error}") from None
    if origin is tuple and _is_section(typing.get_args(hint)[0]):
        # An array of tables ([[categories]]): each entry a section of its own.
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"{key}: expected [[{key}]] entries")
        return tuple(_build(typing.get_args(hint)[0], entry, prefix=f"{key}[{number}].")
                     for number, entry in enumerate(value, 1))
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if item is not str:
            return tuple(_convert(v, item, key, metadata) for v in value)
        return tuple(v.strip().lower() for v in value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        choices = metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {value!r}")
        if metadata.get("zone"):
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"{key}: {value!r} is not a time zone (write an IANA name "
                                  f"such as \"Europe/London\" or \"America/Chicago\")") from None
        if key == "helpdesk.address" and "@" not in value:
            raise ConfigError(f"{key}: {value!r} is not an email address")
        return value
    raise AssertionError(f"no converter for {hint!r}")  # a schema bug, not a user's
