"""``tickets attachment N [ID] [-o FILE]``: a ticket's files written out of the store.

Files are stored by their SHA-256 (db/storage.py); written out, each takes its own
name made safe (no directories, no control characters, no leading dot), in the
current directory, mode 0600. An existing file of that name is never overwritten:
``-o FILE`` names the target instead, and replaces what is there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from .db.models import Attachment, Message, Ticket
from .db.storage import AttachmentStore, safe_filename
from .errors import MailhelpError, UsageError


@dataclass(frozen=True)
class Written:
    attachment_id: int
    path: str
    size: int


def files_of(session, ticket_id: int, attachment_id: int | None) -> list[Attachment]:
    query = (select(Attachment).join(Message, Attachment.message_id == Message.id)
             .where(Message.ticket_id == ticket_id).order_by(Attachment.id))
    if attachment_id is not None:
        query = query.where(Attachment.id == attachment_id)
    found = list(session.scalars(query))
    if not found:
        # A merged ticket's messages, and so its files, moved to its survivor.
        survivor = session.scalar(select(Ticket.merged_into_id).where(Ticket.id == ticket_id))
        where = f" (merged into #{survivor}: its files are there)" if survivor else ""
        what = f"no file {attachment_id}" if attachment_id is not None else "no files"
        raise MailhelpError(f"ticket {ticket_id} has {what}{where}")
    return found


def write_out(store: AttachmentStore, attachments: list[Attachment],
              output: str | None) -> list[Written]:
    """Write each file; with ``output``, the one file to that path (replaced)."""
    if output is not None and len(attachments) > 1:
        raise UsageError(f"-o: the ticket has {len(attachments)} files; give the ID of one "
                         f"({', '.join(str(a.id) for a in attachments)})")
    written = []
    for attachment in attachments:
        try:
            payload = store.get(attachment.sha256)
        except FileNotFoundError:
            raise MailhelpError(f"file {attachment.id} ({safe_filename(attachment.filename)}) "
                                f"is missing from the store") from None
        if output is not None:
            path = _replace(Path(output), payload)
        else:
            path = _create(Path(own_name(attachment)), payload)
        written.append(Written(attachment.id, str(path), len(payload)))
    return written


def own_name(attachment: Attachment) -> str:
    """The file's name as its sender gave it, without any directories, made safe."""
    base = attachment.filename.replace("\\", "/").rsplit("/", 1)[-1]
    return safe_filename(base, f"file-{attachment.id}")


def _create(path: Path, payload: bytes) -> Path:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise MailhelpError(f"{path} exists; not overwritten (write it elsewhere with "
                            "-o FILE)") from None
    except OSError as error:
        raise MailhelpError(f"cannot write {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(payload)
    return path


def _replace(path: Path, payload: bytes) -> Path:
    # Written beside it, then renamed over it: never a half-written file under its name.
    temporary = path.with_name(f".{path.name}.mailhelp-tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                             0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise MailhelpError(f"cannot write {path}: {error.strerror}") from None
    return path
