"""An attached file as the help desk keeps it: a MIME part, or a file inside winmail.dat."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    payload: bytes = field(repr=False)
    content_id: str = ""

    @property
    def size(self) -> int:
        return len(self.payload)
