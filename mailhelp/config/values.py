"""The kinds of value a config key holds beyond TOML's own: sizes, file modes, secrets."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

from ..errors import ConfigError

SECURITY_MODES = ("tls", "starttls", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.I)


class ByteSize(int):
    """A size in bytes, written in the config as 25MB, 512KB, 1GB or plain bytes."""


def parse_size(text: str) -> ByteSize:
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (write 25MB, 512KB or 1GB)")
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    return ByteSize(int(float(match.group(1)) * factor))


class FileMode(int):
    """Permission bits, written in the config as a string of octal digits: "0660"."""


def parse_mode(value: object) -> FileMode:
    # A bare number is refused: TOML reads 660 as decimal, which is not what was meant.
    match = re.fullmatch(r"0?([0-7]{3})", value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a file mode (write it in octal, as a string: "
                         f"\"0660\")")
    return FileMode(int(match.group(1), 8))


def choice(*options: str) -> dict:
    return {"choices": options}


# A field filled in by ``loads`` from the rest of the file, never read from it.
INTERNAL = {"internal": True}


@dataclass(frozen=True)
class Secret:
    """A password given inline, by environment variable, or by a command's output.

    It is resolved only when a connection needs it, and never printed.
    """

    key: str
    value: str | None = field(default=None, repr=False)
    env: str | None = None
    command: str | None = None

    def reveal(self) -> str:
        if self.value is not None:
            return self.value
        if self.env is not None:
            if self.env not in os.environ:
                raise ConfigError(f"{self.key}_env: environment variable {self.env} is not set")
            return os.environ[self.env]
        if self.command is not None:
            done = subprocess.run(self.command, shell=True, capture_output=True, text=True)
            if done.returncode != 0:
                raise ConfigError(f"{self.key}_command: exited {done.returncode}")
            return done.stdout.rstrip("\n")
        return ""

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.value, self.env, self.command))
