"""An ingest that did the work itself stays on, warm, for the next messages of a burst.

An MTA pipe alias starts one process per message, and most of such a process's life
goes to loading SQLAlchemy, the models and the templates. With no daemon to hand the
message to ([ingest] socket unset), a second message within [ingest] linger of the one
before makes the ingest that processed it fork once it is done: the parent exits as
before; the child, everything already loaded, listens on a private socket for the next
ingests of the same desk, the way the daemon does (handoff.py), until it has been idle
that long. It sends the mail a message causes before it answers, so that when ingest
exits its ticket is committed and its acknowledgement sent, as when it works alone.

Which helper an ingest may use: its socket lies in a directory only this user may enter
(``$XDG_RUNTIME_DIR/mailhelp``, else ``/tmp/mailhelp-UID``; refused when anyone else
may write there), named after everything the work depends on: the config file, the
template overrides, mailhelp's own files, the interpreter, the user,
the working directory and the environment. A changed config or upgraded code is never
served by an old helper: that one is not found, and idles out. Between messages a
helper holds no database connection.

A helper logs to [log] file (without one there is nowhere for its events to go, and no
ingest lingers). It says a greeting first on each connection it takes: an ingest that
connected as the helper was leaving, and heard none, knows its message was not read and
does the work itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import App
    from ..config import Config

log = logging.getLogger(__name__)

GREETING = b"mailhelp-ingest 1\n"
PACKAGE = Path(__file__).resolve().parent
MAX_SOCKET_PATH = 107  # bytes (sun_path)
READY_TIMEOUT = 5.0  # seconds the parent waits for its helper to listen
# The environment that may change what mailhelp does (besides the config's *_env names):
# its own variables, Python's, locale and time zone, libpq's, TLS certificates, paths.
ENVIRONMENT = frozenset({"PATH", "HOME", "TZ", "LANG", "LANGUAGE", "TMPDIR"})
ENVIRONMENT_PREFIXES = ("MAILHELP", "PYTHON", "LC_", "PG", "SSL_", "XDG_", "SQLALCHEMY")
MARKER_LIFETIME = 3600.0  # seconds after which another key's marker is swept away


@dataclass(frozen=True)
class Spot:
    """Where the helper for this desk, code and environment listens; ``marker``'s time is
    when the last ingest of the same kind worked alone."""

    socket: str
    marker: str


def spot_for(config: Config) -> Spot | None:
    """This ingest's helper spot, or None when no ingest of this config may linger."""
    if config.ingest.socket or not config.log.file or config.ingest.linger.total_seconds() <= 0:
        return None
    if not config.stamp:  # changed while it was read: which version this is, is unclear
        return None
    directory = runtime_dir()
    if directory is None:
        return None
    key = helper_key(config)
    spot = Spot(socket=os.path.join(directory, f"ingest-{key}.sock"),
                marker=os.path.join(directory, f"ingest-{key}.seen"))
    if len(os.fsencode(spot.socket)) > MAX_SOCKET_PATH:
        log.debug("action=ingest_linger_off reason=%s is too long for a Unix socket",
                  spot.socket)
        return None
    return spot


def runtime_dir() -> str | None:
    """A directory of this user's alone, made if missing; None if it is anyone else's."""
    uid = os.getuid()
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = (os.path.join(base, "mailhelp") if base
            else os.path.join(os.environ.get("TMPDIR") or "/tmp", f"mailhelp-{uid}"))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as error:
        log.debug("action=ingest_linger_off reason=cannot make %s: %s", path, error.strerror)
        return None
    found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != uid or found.st_mode & 0o077:
        # Someone else's (or open to others): a socket there could be anyone's.
        log.warning("action=ingest_linger_off reason=%s is not a directory of this user's "
                    "alone (mode 0700)", path)
        return None
    return path


def helper_key(config: Config) -> str:
    """A name for everything a helper's work depends on; any change makes a new one."""
    parts = [sys.executable, sys.version, str(os.getuid()), str(os.getgid()), os.getcwd(),
             os.path.realpath(config.path), config.stamp]
    for directory in (config.templates.dir, str(PACKAGE)):
        if directory:
            parts.extend(_tree_stamps(directory))
    secrets = {s.env for s in (config.imap.password if config.imap else None,
                               config.smtp.password if config.smtp else None,
                               config.survey.secret) if s is not None and s.env}
    parts.extend(f"{name}={value}" for name, value in sorted(os.environ.items())
                 if name in secrets or _counts(name))
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogateescape"),
                           digest_size=10).hexdigest()


def _counts(variable: str) -> bool:
    """Whether mailhelp's work may depend on this environment variable. Not an MTA's
    per-message ones (Postfix's SENDER, RECIPIENT, CLIENT_ADDRESS, ..., Exim's
    MESSAGE_ID, ...): with those, no two messages would meet the same helper."""
    return variable in ENVIRONMENT or variable.startswith(ENVIRONMENT_PREFIXES)


def _stamp(path: str) -> str:
    try:
        found = os.stat(path)
    except OSError:
        return f"{path}:absent"
    return f"{path}:{found.st_dev}:{found.st_ino}:{found.st_size}:{found.st_mtime_ns}"


def _tree_stamps(top: str) -> list[str]:
    stamps = []
    for directory, subdirectories, files in os.walk(top):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        stamps.extend(_stamp(os.path.join(directory, name)) for name in sorted(files))
    return stamps


def in_a_burst(spot: Spot, linger: float) -> bool:
    """Whether another ingest of this kind worked alone within ``linger`` seconds; this
    one's time is noted for the next."""
    now = time.time()
    try:
        recent = now - os.stat(spot.marker).st_mtime < linger
        os.utime(spot.marker)
    except FileNotFoundError:
        recent = False
        _sweep_markers(os.path.dirname(spot.marker), now)
        try:
            with open(spot.marker, "a"):
                pass
        except OSError as error:
            log.debug("action=ingest_linger_off reason=%s: %s", spot.marker, error.strerror)
    except OSError as error:
        log.debug("action=ingest_linger_off reason=%s: %s", spot.marker, error.strerror)
        return False
    return recent


def _sweep_markers(directory: str, now: float) -> None:
    """Markers of configs and environments gone by (a test suite leaves many), and the
    sockets of helpers that were killed (nobody answers there)."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if now - entry.stat(follow_symlinks=False).st_mtime <= MARKER_LIFETIME:
                    continue
                if entry.name.endswith(".seen") or \
                        (entry.name.endswith(".sock") and not _answers(entry.path)):
                    os.unlink(entry.path)
    except OSError:
        pass


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def stay(app: App, spot: Spot) -> None:
    """Fork a helper that serves at ``spot`` until idle for [ingest] linger; return in
    the parent (which exits as usual) once the helper listens, never in the helper."""
    if threading.active_count() > 1:  # a fork would copy a thread's state, not the thread
        log.debug("action=ingest_linger_off reason=threads running")
        return
    app.db.engine.dispose()  # the parent's connections stay the parent's
    sys.stdout.flush()  # nothing buffered is written twice
    sys.stderr.flush()
    ready, told = os.pipe()
    try:
        pid = os.fork()
    except OSError as error:
        log.warning("action=ingest_linger_off reason=fork failed: %s", error.strerror)
        os.close(ready)
        os.close(told)
        return
    if pid:
        os.close(told)
        # Until the helper listens (or gave up): the next ingest, started as this one
        # exits, finds it.
        select.select([ready], [], [], READY_TIMEOUT)
        os.close(ready)
        return
    status = 0
    try:
        os.close(ready)
        _detach(keep=told)
        _serve(app, spot, told)
    except BaseException:
        log.exception("action=ingest_linger_error")
        status = 1
    finally:
        logging.shutdown()
        os._exit(status)


def _detach(keep: int) -> None:
    """Off the MTA's pipes (it reads them to the end), out of its process group, and
    holding none of its other descriptors; the log file and ``keep`` stay open."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(null, descriptor)
    os.close(null)
    kept = {keep} | {handler.stream.fileno() for handler in logging.getLogger().handlers
                     if isinstance(handler, logging.FileHandler) and handler.stream}
    with suppress(OSError):
        for name in os.listdir("/proc/self/fd"):  # Linux; elsewhere they stay open
            if int(name) > 2 and int(name) not in kept:
                with suppress(OSError):
                    os.close(int(name))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _serve(parent: App, spot: Spot, told: int) -> None:
    from ..app import App, flush_outbox
    from ..db.session import Database
    from ..errors import ConfigError
    from .handoff import IngestServer, Turns, handed_size

    linger = parent.config.ingest.linger.total_seconds()
    # A connection only while a message is worked on: a SQLite file replaced meanwhile
    # is opened anew, and a PostgreSQL database can be dropped.
    app = App(parent.config, Database(parent.config.database.url, pooled=False),
              parent.clock)
    pipeline = app.pipeline()
    turn = Turns()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    finishing = threading.Lock()

    def finish() -> None:
        """What an ingest does before it exits: send the mail (and, as it does when it
        starts, take up messages a crash left behind)."""
        with finishing:  # one flush at a time, as one ingest process would
            if app.config.smtp is not None:
                flush_outbox(app)
        with turn():
            pipeline.sweep()

    def failed() -> None:
        # The database is away, say: the next ingests work alone (and say why) rather
        # than each be turned away by this one.
        server.close_door()
        stop.set()

    server = IngestServer(spot.socket, 0o600, pipeline, turn, handed_size(app.config),
                          greeting=GREETING, answered=finish, failed=failed)
    try:
        server.start()
    except ConfigError as error:  # another ingest's helper got there first
        log.debug("action=ingest_linger_off reason=%s", error)
        return  # (the parent stops waiting as this process ends)
    log.info("action=ingest_linger pid=%s socket=%s idle=%.0fs", os.getpid(), spot.socket,
             linger)
    os.close(told)  # listening, and said so
    try:
        while not stop.wait(min(1.0, linger / 4)):
            if server.idle_for() >= linger:
                break
    finally:
        server.stop(timeout=None)  # what it took is committed and answered before it goes
    log.info("action=ingest_linger_end pid=%s served=%s", os.getpid(), server.served)
