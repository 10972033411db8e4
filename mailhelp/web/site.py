"""``mailhelp serve``: one-click survey answers on the web, as a small ASGI application.

With ``[survey] base_url`` set, the survey mail carries one signed link per rating
(``surveys.web_links``). Opening a link only shows a form with that rating chosen:
mail security scanners open every link in a message, so a GET never counts as an
answer. Sending the form records the answer as a mailed one is recorded: rating,
comment, an event and a thank-you mail, in one transaction; the ticket's status
never changes. The signed link is the capability; a form sent from another site is
refused on its Origin (or Referer) all the same.

Plain ASGI on uvicorn: three routes need no framework, and the imports stay lazy.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from ..db.models import Survey, Ticket
from ..db.session import transaction
from ..delivery.outbox import subject_tag
from ..delivery.templating import BUNDLED
from ..desk import surveys
from ..desk.handlers.survey import keep_answer
from ..desk.merge import survivor_of
from ..errors import ConfigError, MailhelpError

if TYPE_CHECKING:
    import uvicorn

    from ..app import App
    from ..config import Config
    from .guard import Limits

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_COMMENT = 5000
_SIGNED = re.compile(r"[A-Za-z0-9._-]{1,200}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # PostgreSQL refuses NUL in text

OK, EXPIRED, INVALID = "ok", "expired", "invalid"

# The pages that refuse, and their status; templates/web/problem.html.j2 words them.
PROBLEMS = {"invalid": 400, "expired": 410, "unknown": 404, "cross_site": 403,
            "not_found": 404, "method": 405, "too_large": 413, "error": 500}

HEADERS = [
    (b"cache-control", b"no-store"),
    # Same-origin keeps the signed link out of other sites' logs, yet lets the form
    # post carry our Origin and Referer for the cross-site check.
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; "
     b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-robots-tag", b"noindex, nofollow"),
]


@dataclass(frozen=True)
class Link:
    """What the signed link in a path says, once checked."""

    status: str
    token: str = ""
    rating: int = 0


def check_link(secret: str, signed: str, now: datetime) -> Link:
    """OK with the survey token and rating, else EXPIRED (genuine but late) or INVALID."""
    if not secret or not _SIGNED.fullmatch(signed):
        return Link(INVALID)
    try:
        found = surveys.verify(secret, signed, now)
        if found:
            return Link(OK, *found)
        # verify() says None for forged and expired alike: a link that is genuine at
        # its own expiry instant is one that has expired.
        expires = datetime.fromtimestamp(int(signed.split(".")[2]), tz=UTC)
        genuine = surveys.verify(secret, signed, expires)
    except (IndexError, ValueError, OverflowError, OSError):  # a timestamp out of range
        return Link(INVALID)
    return Link(EXPIRED) if genuine else Link(INVALID)


@dataclass
class Request:
    method: str
    path: str
    scheme: str
    headers: dict[str, str]
    receive: Any

    @classmethod
    def of(cls, scope: dict, receive: Any) -> Request:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", ())}
        return cls(scope["method"], scope["path"], scope.get("scheme", "http"), headers,
                   receive)

    async def body(self) -> bytes | None:
        """The request body, or None when it is larger than MAX_BODY."""
        declared = self.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


@dataclass
class Response:
    status: int
    body: str
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def send(self, send: Any, head: bool = False) -> None:
        body = self.body.encode()
        await send({"type": "http.response.start", "status": self.status, "headers": [
            (b"content-type", self.content_type.encode()),
            (b"content-length", str(len(body)).encode()), *HEADERS, *self.headers]})
        await send({"type": "http.response.body", "body": b"" if head else body})


@lru_cache(maxsize=4)
def _pages(override_dir: str):
    import jinja2

    paths = [str(Path(override_dir) / "web")] if override_dir else []
    paths.append(str(BUNDLED / "web"))
    return jinja2.Environment(loader=jinja2.FileSystemLoader(paths), autoescape=True,
                              undefined=jinja2.StrictUndefined, auto_reload=False)


def render_page(config: Config, name: str, **variables: Any) -> str:
    """One of the pages in ``templates/web/`` (overridable like the mail templates)."""
    helpdesk = {"name": config.helpdesk.name, "address": config.helpdesk.address}
    template = _pages(config.templates.dir).get_template(f"{name}.html.j2")
    return template.render(helpdesk=helpdesk, **variables)


def problem_page(config: Config, problem: str) -> tuple[int, str]:
    return PROBLEMS[problem], render_page(config, "problem", problem=problem)


def form_page(config: Config, view: dict, rating: int, comment: str, error: str = "") -> str:
    return render_page(config, "survey", survey=view, chosen=rating, comment=comment,
                       error=error, max_comment=MAX_COMMENT,
                       ratings=list(surveys.RATINGS.items()))


class SurveySite:
    """The ASGI application: the survey pages under base_url's path, and /healthz."""

    def __init__(self, app: App) -> None:
        survey = app.config.survey
        if not survey.base_url:
            raise ConfigError("survey.base_url: not set; without it the survey mail carries "
                              "no web links for 'mailhelp serve' to answer")
        self.secret = survey.secret.reveal()
        if not self.secret:
            raise ConfigError("survey.secret: not set; 'mailhelp serve' needs it to check "
                              "the links' signatures")
        self.app = app
        base = urlsplit(survey.base_url)
        self.prefix = base.path.rstrip("/")
        self.public_host = _host_port(base.scheme, base.netloc)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request.of(scope, receive)
        try:
            response = await self.respond(request)
        except Exception:  # the reader gets a page; the log gets the traceback
            log.exception("web method=%s action=error", request.method)
            response = self.problem("error")
        await response.send(send, head=request.method == "HEAD")

    async def respond(self, request: Request) -> Response:
        name = self._name(request.path)
        if name == "healthz":
            return Response(200, "ok\n", "text/plain; charset=utf-8")
        if name == "robots.txt":
            return Response(200, "User-agent: *\nDisallow: /\n", "text/plain; charset=utf-8")
        if not name or "/" in name:
            return self.problem("not_found")
        if request.method not in ("GET", "HEAD", "POST"):
            return self.problem("method", [(b"allow", b"GET, HEAD, POST")])
        now = self.app.clock()
        link = check_link(self.secret, name, now)
        if link.status != OK:
            # An expired link is ordinary; a forged or mangled one is worth a look.
            log.log(logging.INFO if link.status == EXPIRED else logging.WARNING,
                    "web method=%s action=link_refused reason=%s", request.method,
                    link.status)
            return self.problem(link.status)
        if request.method == "POST":
            return await self.answer(request, link, now)
        view = await asyncio.to_thread(self._view, link.token)
        if view is None:
            return self.problem("unknown")
        log.info("ticket=%s action=survey_page rating=%s", view["id"], link.rating)
        return Response(200, form_page(self.app.config, view, link.rating, view["comment"]))

    async def answer(self, request: Request, link: Link, now: datetime) -> Response:
        """Record the form's rating and comment; the link's rating was only a preset."""
        if not self._same_site(request):
            log.warning("web action=survey_refused reason=cross_site origin=%r referer=%r",
                        request.headers.get("origin"), request.headers.get("referer"))
            return self.problem("cross_site")
        body = await request.body()
        if body is None:
            return self.problem("too_large")
        rating, comment, error = _read_form(body)
        if error:
            view = await asyncio.to_thread(self._view, link.token)
            if view is None:
                return self.problem("unknown")
            page = form_page(self.app.config, view, rating or link.rating, comment, error)
            return Response(400, page)
        view = await asyncio.to_thread(self._record, link.token, rating, comment, now)
        if view is None:
            return self.problem("unknown")
        return Response(200, render_page(self.app.config, "thanks", survey=view))

    def problem(self, name: str, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        status, page = problem_page(self.app.config, name)
        return Response(status, page, headers=headers or [])

    def _name(self, path: str) -> str:
        """The part after base_url's path (or after the root, which works too)."""
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            path = path[len(self.prefix):]
        return path[1:] if path.startswith("/") else path

    def _same_site(self, request: Request) -> bool:
        """False for a form that another site made the browser send."""
        if request.headers.get("sec-fetch-site") == "cross-site":
            return False
        source = request.headers.get("origin") or request.headers.get("referer")
        if source is None:
            return True  # old browsers and privacy tools send neither; the link is the key
        if source == "null":
            return False
        parts = urlsplit(source)
        ours = {self.public_host, _host_port(parts.scheme, request.headers.get("host", ""))}
        return _host_port(parts.scheme, parts.netloc) in ours

    def _view(self, token: str) -> dict | None:
        with self.app.db.sessions() as session:
            survey = session.scalar(select(Survey).where(Survey.token == token))
            if survey is None:
                return None
            return _survey_view(self.app.config, session.get(Ticket, survey.ticket_id), survey)

    def _record(self, token: str, rating: int, comment: str, now: datetime) -> dict | None:
        config = self.app.config
        with transaction(self.app.db) as tx:
            survey = tx.scalar(select(Survey).where(Survey.token == token).with_for_update())
            if survey is None:
                return None
            ticket = tx.get(Ticket, survey.ticket_id)
            if (survey.answered_via, survey.rating, survey.comment) == ("web", rating, comment):
                # A double click or a reload sends the same answer again: one thank-you.
                return _survey_view(config, ticket, survey)
            # The same handler as a mailed answer's, and recorded where it would be: on
            # the ticket this one was merged into, if it was. The page names the ticket
            # the survey asked about.
            keep_answer(tx, config, tx.get(Ticket, survivor_of(tx, ticket.id)), survey,
                        rating, comment, "web", now)
            return _survey_view(config, ticket, survey)


def _survey_view(config: Config, ticket: Ticket, survey: Survey) -> dict:
    return {"id": ticket.id, "tag": subject_tag(config, ticket.id), "subject": ticket.subject,
            "rating": survey.rating, "label": surveys.RATINGS.get(survey.rating or 0, ""),
            "comment": survey.comment or "", "answered": survey.answered_at is not None}


def _read_form(body: bytes) -> tuple[int | None, str, str]:
    """(rating, comment, error): the error is a sentence for the reader, or ''."""
    try:
        form = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None, "", "Your browser sent a form we could not read: please send it again."
    comment = _CONTROL.sub("", form.get("comment", [""])[0].replace("\r\n", "\n")).strip()
    rating_text = form.get("rating", [""])[0].strip()
    rating = int(rating_text) if rating_text in {str(r) for r in surveys.RATINGS} else None
    if rating is None:
        return None, comment, "Please choose a rating from 5 (excellent) to 1 (bad)."
    if len(comment) > MAX_COMMENT:
        return rating, comment, (f"Please shorten your comment to at most {MAX_COMMENT:,} "
                                 "characters.")
    return rating, comment, ""


def _host_port(scheme: str, netloc: str) -> str:
    """``help.school.test:443`` from an Origin's or Host header's parts."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port or {"https": 443, "http": 80}.get(scheme.lower(), 0)
    except ValueError:
        return ""
    return f"{(parts.hostname or '').lower()}:{port}"


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def listen_socket(listen: str) -> socket.socket:
    """A listening socket for ``HOST:PORT`` (``[::1]:8025`` for IPv6)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdecimal() or not 0 <= int(port) < 65536:
        raise ConfigError(f"survey.listen: {listen!r} is not HOST:PORT")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, int(port)), family=family)
    except OSError as error:
        raise MailhelpError(f"serve: cannot listen on {listen}: {error.strerror}") from error


def server(app: App, limits: Limits | None = None) -> uvicorn.Server:
    """A uvicorn server for the survey site; ``.run(sockets=[...])`` serves it.
    ``limits``: how long a client may take and how many connections it may hold."""
    import uvicorn

    from .guard import KEEP_ALIVE, Limits, guarded_protocol

    config = uvicorn.Config(
        SurveySite(app), http=guarded_protocol(limits or Limits()), ws="none",
        loop="asyncio", lifespan="on",
        # mailhelp's own logging; no access log, since every path holds a capability.
        log_config=None, access_log=False, server_header=False, proxy_headers=True,
        limit_concurrency=200, timeout_keep_alive=KEEP_ALIVE, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def serve(app: App, listen: str) -> None:
    """Serve until SIGINT or SIGTERM (put a TLS reverse proxy in front of it)."""
    site = server(app)
    sock = listen_socket(listen)
    log.info("action=serve listen=%s base_url=%s", listen, app.config.survey.base_url)
    # uvicorn stops on these signals and then raises them again for the handlers it
    # found; these ones let 'mailhelp serve' return and exit 0, as 'mailhelp run' does.
    previous = {number: signal.signal(number, _stopped)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        site.run(sockets=[sock])
    finally:
        sock.close()
        for number, handler in previous.items():
            signal.signal(number, handler)
    log.info("action=serve_stopped")


def _stopped(number: int, frame: Any) -> None:
    """uvicorn has already stopped the server when it raises the signal again."""
