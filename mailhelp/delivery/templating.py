"""Jinja2 rendering of the mail templates: a text and an HTML part for each kind of mail.

A text template starts with a ``Subject: ...`` line, so an admin who overrides a
template controls the subject too. HTML templates are autoescaped.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import TemplateError

BUNDLED = Path(__file__).parent.parent / "templates"

# Every template pair and what it is for (the variables are documented in README.md).
KINDS = ("ack", "notification", "relay", "resolved", "reminder", "survey", "survey_thanks",
         "command_error", "unverified", "alert", "outsider", "assigned", "note",
         "queue", "escalation", "merged", "digest")
# What every mail's layout (base.txt.j2, base.html.j2) gets as ``brand``, where the
# config sets nothing ([helpdesk] color, footer, logo).
DEFAULT_BRAND = {"color": "#1a5fb4", "footer": "", "logo": ""}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=8)
def environment(override_dir: str = ""):
    import jinja2

    paths = [override_dir] if override_dir else []
    paths.append(str(BUNDLED))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths),
        autoescape=lambda name: bool(name) and ".html" in name,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
        bytecode_cache=_bytecode_cache(jinja2),
    )
    env.filters["desk_time"] = jinja2.pass_context(desk_time)
    return env


def desk_time(context, value, format: str = "%a %d %b %Y %H:%M %Z") -> str:
    """``{{ created_at | desk_time }}``: a time (a datetime, or ISO 8601 text as the
    variables carry it) on the desk's clock, ``helpdesk.timezone`` (UTC where the mail's
    variables name none); a naive time is taken as UTC. Not a time: shown as it is."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return str(value)
    helpdesk = context.get("helpdesk")
    name = helpdesk.get("timezone", "UTC") if isinstance(helpdesk, dict) else "UTC"
    try:
        zone = ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone).strftime(format)


def reset() -> None:
    """Forget every template read so far: the next mail reads its files afresh.

    An environment keeps what it loaded (auto_reload is off: a daemon would otherwise
    look at each file's time before every mail); the daemon calls this on SIGHUP.
    """
    environment.cache_clear()


def _bytecode_cache(jinja2):
    """Compiled templates kept between processes, or None where no cache can be kept.

    `mailhelp ingest` runs once per message, and compiling a template costs a hundred
    times more than rendering it (10 ms against 0.1 for a text and HTML pair). Each entry
    carries its source's checksum; the file names carry this module and the installed
    Jinja2 (the compiled code depends on both), so an upgrade of either starts afresh.
    """
    from jinja2.bccache import FileSystemBytecodeCache

    class Cache(FileSystemBytecodeCache):
        # A cache that cannot be read or written only costs the compiling it would save.
        def load_bytecode(self, bucket) -> None:
            try:
                super().load_bytecode(bucket)
            except OSError:
                bucket.reset()

        def dump_bytecode(self, bucket) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    try:
        stamps = (Path(__file__).stat(), Path(jinja2.__file__).with_name("compiler.py").stat())
        stamp = hashlib.sha1(repr([(s.st_mtime_ns, s.st_size) for s in stamps]).encode(),
                             usedforsecurity=False)
        return Cache(pattern=f"mailhelp-{stamp.hexdigest()[:12]}-%s.cache")
    except (OSError, RuntimeError):  # RuntimeError: no private directory in the temp dir
        return None


def render(kind: str, variables: dict, override_dir: str = "",
           brand: dict | None = None) -> Rendered:
    """Render ``kind.txt.j2`` and ``kind.html.j2``; raise TemplateError naming the file."""
    import jinja2

    env = environment(override_dir)
    variables = {**variables, "brand": brand or DEFAULT_BRAND}
    parts = []
    for name in (f"{kind}.txt.j2", f"{kind}.html.j2"):
        try:
            parts.append(env.get_template(name).render(variables))
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {name}: not found") from None
        except jinja2.TemplateError as error:
            where = f" line {error.lineno}" if getattr(error, "lineno", None) else ""
            raise TemplateError(f"template {name}{where}: {error.message}") from error
    text, html = parts
    first, _, body = text.partition("\n")
    if not first.lower().startswith("subject:"):
        raise TemplateError(f"template {kind}.txt.j2: the first line must be 'Subject: ...'")
    subject = " ".join(first[len("subject:"):].split())
    return Rendered(subject=subject, text=body.lstrip("\n"), html=html)
