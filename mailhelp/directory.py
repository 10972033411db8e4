"""The district directory: who a requester is (name, school, room, role), from the CSV
file that ``[directory] csv`` names.

The file is what an admin console exports: Google Admin, Active Directory's
``Export-Csv``, a student information system. So: a header row naming the columns in
any order and any case (``email``, ``name``, ``school``, and ``room`` and ``role`` if
there are any; other columns ignored), UTF-8 with or without a byte-order mark (else
UTF-16 with one, else Windows-1252, Excel's own), CRLF or LF, quoted fields, blank
lines, commas (or, for a header with none, semicolons or tabs). A bad row is skipped
with a warning naming its line; a file too large, or with no usable header, is refused
whole and the last good copy stays in use.

``Directory.refresh`` looks at the file's size and modification time and reads it
again only when they changed: the pipeline calls it once per pass, never per message.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
import threading
from dataclasses import dataclass, field

from .errors import MailhelpError

log = logging.getLogger(__name__)

MAX_BYTES = 50 * 1024 * 1024
MAX_ROWS = 200_000
LOGGED_PROBLEMS = 20  # bad rows logged one by one; the rest in one line
_WIDTHS = {"name": 200, "school": 200, "room": 100, "role": 100}  # the columns' in the DB
_ADDRESS = re.compile(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+")

# Header names as exports spell them, after lower-casing and dropping everything but
# letters (Google Admin writes "Email Address [Required]"; AD "mail", "displayName").
_COLUMNS = {
    "email": "email", "emailaddress": "email", "mail": "email", "primaryemail": "email",
    "name": "name", "displayname": "name", "fullname": "name",
    "firstname": "first", "givenname": "first", "lastname": "last", "surname": "last",
    "school": "school", "schoolname": "school", "building": "school", "site": "school",
    "room": "room", "roomnumber": "room", "classroom": "room",
    "role": "role", "title": "role", "jobtitle": "role",
}


_SHARED: dict[str, Directory] = {}
_SHARED_LOCK = threading.Lock()


class DirectoryError(MailhelpError):
    """The directory file cannot be used at all (missing, too large, no header)."""


@dataclass(frozen=True)
class Person:
    """One row of the directory."""

    email: str
    name: str = ""
    school: str = ""
    room: str = ""
    role: str = ""


@dataclass(frozen=True)
class Reading:
    """What one reading of the file gave: the people by lower-cased address, how many
    rows there were, and the bad rows (``line N: what``), in file order."""

    people: dict[str, Person]
    rows: int
    problems: tuple[str, ...] = ()


def _decode(data: bytes) -> tuple[str, str]:
    """The text of the file and, when it was not UTF-8, a note saying what it was read as."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), ""
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return data.decode("cp1252", errors="replace"), \
            f"line {line}: not UTF-8; the file was read as Windows-1252"


def _header_key(cell: str) -> str:
    cell = re.sub(r"\[[^\]]*\]", "", cell)  # "Email Address [Required]"
    return _COLUMNS.get(re.sub(r"[^a-z]", "", cell.lower()), "")


def _clean(value: str) -> str:
    value = value.strip()
    # The usual cell has no run of white space: 200,000 rows read in half the time.
    if "  " in value or "\n" in value or "\t" in value or "\r" in value:
        return " ".join(value.split())
    return value


def parse(text: str, source: str = "directory") -> Reading:
    """The people in a directory file's text. Raises DirectoryError for a file that
    has no header with an email column, and over MAX_ROWS rows."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = "," if "," in first else "\t" if "\t" in first else ";" if ";" in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns: dict[str, int] = {}
    people: dict[str, Person] = {}
    problems: list[str] = []
    rows = 0
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue  # blank lines, and rows of empty cells (a spreadsheet's tail)
            if not columns:
                columns = _columns(cells, source)
                continue
            rows += 1
            if rows > MAX_ROWS:
                raise DirectoryError(f"{source}: more than {MAX_ROWS:,} rows")
            found = _row(cells, columns)
            if isinstance(found, str):
                problems.append(f"line {reader.line_num}: {found}")
            elif found.email in people:
                problems.append(f"line {reader.line_num}: {found.email} is on an earlier "
                                "line too; the first is used")
            else:
                people[found.email] = found
    except csv.Error as error:
        raise DirectoryError(f"{source}: line {reader.line_num}: not CSV ({error})") from None
    if not columns:
        raise DirectoryError(f"{source}: empty (expected a header row: email,name,school)")
    return Reading(people, rows, tuple(problems))


def _columns(header: list[str], source: str) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        key = _header_key(cell)
        if key and key not in columns:
            columns[key] = index
    shown = ",".join(header)[:200]
    if "email" not in columns:
        raise DirectoryError(f"{source}: the header has no email column ({shown!r}; "
                             "expected email,name,school[,room,role])")
    if "name" not in columns and "first" not in columns and "school" not in columns:
        raise DirectoryError(f"{source}: the header has neither a name nor a school column "
                             f"({shown!r}; expected email,name,school[,room,role])")
    return columns


def _row(cells: list[str], columns: dict[str, int]) -> Person | str:
    """A row's person, or what is wrong with the row."""
    size = len(cells)
    found = {key: _clean(cells[index]) if index < size else ""
             for key, index in columns.items()}

    def cell(key: str) -> str:
        return found.get(key, "")

    email = cell("email").lower().removeprefix("mailto:")
    if not email:
        return "no email address"
    if len(email) > 320 or not _ADDRESS.fullmatch(email):
        return f"{email[:60]!r} is not an email address"
    name = cell("name") or _clean(f"{cell('first')} {cell('last')}")
    values = {"name": name, "school": cell("school"), "room": cell("room"),
              "role": cell("role")}
    for key, width in _WIDTHS.items():
        if len(values[key]) > width:
            return f"{key} longer than {width} characters"
    return Person(email, **values)


def read(path: str) -> Reading:
    """Read and parse the file; DirectoryError names what is wrong."""
    source = f"directory.csv {path}"
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as error:
        raise DirectoryError(f"{source}: cannot read: {error.strerror}") from None
    if len(data) > MAX_BYTES:
        raise DirectoryError(f"{source}: larger than {MAX_BYTES // (1024 * 1024)} MB")
    text, note = _decode(data)
    del data
    reading = parse(text, source)
    if note:
        reading = Reading(reading.people, reading.rows, (note, *reading.problems))
    return reading


def path_of(config) -> str:
    """``[directory] csv`` as a path: a relative one is read from the config file's
    directory (the config is found there; the daemon's working directory may be /)."""
    csv_path = config.directory.csv
    if not csv_path or os.path.isabs(csv_path):
        return csv_path
    here = config.path if config.path and not config.path.startswith("<") else ""
    return os.path.join(os.path.dirname(os.path.abspath(here)) if here else os.getcwd(),
                        csv_path)


@dataclass
class Directory:
    """The directory as the desk sees it: the last good reading of the file."""

    path: str
    reading: Reading = field(default_factory=lambda: Reading({}, 0))
    error: str = ""  # why the last attempt to read the file failed ('' if it did not)
    _seen: tuple | None = None  # (size, mtime, inode) of the file last read
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, config) -> Directory:
        """The process's one copy of the directory at this path: the daemon makes a
        pipeline for each of its sources and sweeps, and each would read it again."""
        path = path_of(config)
        with _SHARED_LOCK:
            return _SHARED.setdefault(path, cls(path))

    def refresh(self) -> bool:
        """Read the file again if it changed since the last look; True if it was read.
        A file that cannot be used is logged once, and the last good reading kept."""
        if not self.path:
            return False
        with self._lock:  # the daemon's sources are threads
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            status = os.stat(self.path)
            seen: tuple | None = (status.st_size, status.st_mtime_ns, status.st_ino)
        except OSError:
            seen = None
        if seen == self._seen and (seen is not None or self.error):
            return False
        self._seen = seen
        try:
            reading = read(self.path)
        except DirectoryError as error:
            self.error = str(error)
            kept = f"; the last good copy ({len(self.reading.people)} people) stays in use" \
                if self.reading.rows else ""
            log.error("action=directory_refused %s%s", error, kept)
            return False
        self.reading, self.error = reading, ""
        for problem in reading.problems[:LOGGED_PROBLEMS]:
            log.warning("action=directory_problem file=%s %s", self.path, problem)
        if len(reading.problems) > LOGGED_PROBLEMS:
            log.warning("action=directory_problem file=%s more=%s (rows skipped; "
                        "`mailhelp check` shows the first of them)", self.path,
                        len(reading.problems) - LOGGED_PROBLEMS)
        log.info("action=directory_read file=%s people=%s rows=%s skipped=%s", self.path,
                 len(reading.people), reading.rows, len(reading.problems))
        return True

    def read_once(self) -> None:
        """Read the file if it was never looked at (a single message retried)."""
        if self._seen is None and not self.error and not self.reading.rows:
            self.refresh()

    def lookup(self, address: str) -> Person | None:
        return self.reading.people.get(address.lower())
