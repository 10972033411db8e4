"""TOML -> frozen, typed configuration. Every error names the key at fault.

sections.py is the schema (one frozen dataclass per section), values.py the kinds of
value beyond TOML's own (sizes, file modes, secrets), reading.py the reading and
checking. Import from here: ``from mailhelp.config import Config, load``.
"""

from __future__ import annotations

from .reading import default_path, load, loads
from .sections import (
    AuthenticationConfig,
    CalendarConfig,
    Config,
    DatabaseConfig,
    HelpdeskConfig,
    ImapConfig,
    IngestConfig,
    LifecycleConfig,
    LimitsConfig,
    LogConfig,
    OAuth2Config,
    SmtpConfig,
    SpamConfig,
    StaffConfig,
    StorageConfig,
    SurveyConfig,
    TemplatesConfig,
)
from .values import LOG_LEVELS, SECURITY_MODES, ByteSize, FileMode, Secret, parse_mode, parse_size

__all__ = [
    "LOG_LEVELS", "SECURITY_MODES", "AuthenticationConfig", "ByteSize", "CalendarConfig", "Config",
    "DatabaseConfig", "FileMode", "HelpdeskConfig", "ImapConfig", "IngestConfig",
    "LifecycleConfig", "LimitsConfig", "LogConfig", "OAuth2Config", "Secret", "SmtpConfig",
    "SpamConfig", "StaffConfig", "StorageConfig", "SurveyConfig", "TemplatesConfig",
    "default_path", "load", "loads", "parse_mode", "parse_size",
]
