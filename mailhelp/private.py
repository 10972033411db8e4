"""Files only mailhelp's own user may read: the database, the journal of sent mail, the log.

They hold every message, the people in them and the survey tokens, and the daemon may
share its server with other users. Each is created mode 0600 whatever the umask, and
one found open to others is narrowed, with a warning (a file an older mailhelp made
under umask 022 was 0644). SQLite gives a database's ``-wal`` and ``-shm`` files the
mode of the database file itself, so making that one private first is enough for new
ones; ones already there are narrowed alongside.
"""

from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger(__name__)

MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_file(path: str) -> None:
    """Make ``path`` if missing (empty, mode 0600); narrow it if others may use it.

    A file this user does not own is left as it is (with a warning): its owner decides.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, MODE)
    except IsADirectoryError:
        return  # the caller's own open says what is wrong
    except OSError as error:
        if _exists(path):
            _narrow(path)  # e.g. read-only to us: still worth a look at its mode
        else:
            log.debug("action=private_file_skipped path=%s error=%s", path, error.strerror)
        return
    try:
        _narrow_open(descriptor, path)
    finally:
        os.close(descriptor)


def private_sqlite(path: str) -> None:
    """A SQLite database file, and the companion files SQLite keeps beside it."""
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        if _exists(path + suffix):
            _narrow(path + suffix)


def _exists(path: str) -> bool:
    return os.path.lexists(path)


def _narrow(path: str) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        log.warning("action=private_file_unchecked path=%s error=%s", path, error.strerror)
        return
    try:
        _narrow_open(descriptor, path)
    finally:
        os.close(descriptor)


def _narrow_open(descriptor: int, path: str) -> None:
    found = os.fstat(descriptor)
    if not stat.S_ISREG(found.st_mode) or not found.st_mode & 0o077:
        return
    mode = stat.S_IMODE(found.st_mode)
    try:
        os.fchmod(descriptor, mode & 0o700)
    except OSError as error:
        log.warning("action=private_file_open path=%s mode=%04o error=%s (others may read "
                    "it; its owner should chmod 600 it)", path, mode, error.strerror)
        return
    log.warning("action=private_file_narrowed path=%s mode=%04o now=%04o (others could "
                "read it)", path, mode, mode & 0o700)


def desk_file(config, name: str, shared_name: str) -> str | None:
    """Where a file of this desk's own goes (its live state, its token's health): beside
    a SQLite database (``<database>-<name>``), else in ``[storage] attachments_dir``,
    the one directory every process of a desk shares (``shared_name``). None: nowhere."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(config.database.url)
    except ArgumentError:
        return None
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return f"{database}-{name}"
    directory = config.storage.attachments_dir
    return os.path.join(directory, shared_name) if directory else None
