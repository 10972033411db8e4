"""The district's look on every mail: colour, footer line, logo (``[helpdesk]``).

The logo travels inside each mail as an inline image (``cid:``), never as a link to
a remote image: Outlook and Gmail block those until the reader allows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..config import Config
from ..errors import ConfigError

MAX_LOGO = 512 * 1024
LOGO_CID = "logo@mailhelp"
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_KINDS = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg"}


@dataclass(frozen=True)
class Logo:
    data: bytes
    subtype: str  # png | jpeg
    cid: str = LOGO_CID


def brand(config: Config) -> dict:
    """What the layouts get as ``brand``."""
    helpdesk = config.helpdesk
    if not _COLOR.fullmatch(helpdesk.color):
        raise ConfigError(f"helpdesk.color: {helpdesk.color!r} is not a colour like #1a5fb4")
    return {"color": helpdesk.color, "footer": " ".join(helpdesk.footer.split()),
            "logo": f"cid:{LOGO_CID}" if helpdesk.logo else ""}


def logo(config: Config) -> Logo | None:
    return load_logo(config.helpdesk.logo) if config.helpdesk.logo else None


@lru_cache(maxsize=4)
def load_logo(path: str) -> Logo:
    """The logo file, read once per process; a one-line error naming the key."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_LOGO + 1)
    except OSError as error:
        raise ConfigError(f"helpdesk.logo: cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_LOGO:
        raise ConfigError(f"helpdesk.logo: {path} is larger than {MAX_LOGO // 1024} KB "
                          "(every mail carries it)")
    subtype = next((kind for magic, kind in _KINDS.items() if data.startswith(magic)), None)
    if subtype is None:
        raise ConfigError(f"helpdesk.logo: {path} is not a PNG or JPEG file")
    return Logo(data, subtype)
