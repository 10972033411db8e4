from __future__ import annotations

import dataclasses
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from mailhelp import config
from mailhelp.durations import format_duration, parse_duration
from mailhelp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = '[helpdesk]\naddress = "help@school.test"\n'
IMAP = MINIMAL + '[imap]\nhost = "h"\nusername = "u"\n'


def load(text: str) -> config.Config:
    return config.loads(MINIMAL + text)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config.loads(text)
    return str(caught.value)


def test_example_config_loads_and_documents_every_key():
    loaded = config.load(ROOT / "config.example.toml")
    document = tomllib.loads((ROOT / "config.example.toml").read_text())
    text = (ROOT / "config.example.toml").read_text()
    for section in dataclasses.fields(config.Config):
        if section.name == "path":  # where it was read from, not a key
            continue
        assert section.name in document, f"[{section.name}] missing from config.example.toml"
        value = getattr(loaded, section.name)
        if isinstance(value, tuple):  # [[categories]]: an array of tables
            value = value[0]
        for key in dataclasses.fields(value):
            if key.metadata.get("internal"):  # filled in from the rest of the file
                continue
            assert f"\n{key.name} =" in text or f"\n# {key.name} =" in text, \
                f"{section.name}.{key.name} is not documented"


def test_design_example_values():
    loaded = config.load(ROOT / "config.example.toml")
    assert loaded.helpdesk.address == "help@school.test"
    assert loaded.imap.security == "tls" and loaded.imap.port == 993
    assert loaded.smtp.security == "starttls"
    assert loaded.lifecycle.pending_resolve_after == timedelta(days=7)
    assert loaded.survey.delay == timedelta(hours=1)


def test_defaults_from_a_minimal_file():
    loaded = load("")
    assert loaded.database.url == "sqlite:///mailhelp.db"
    assert loaded.imap is None and loaded.smtp is None
    assert loaded.helpdesk.subject_tag == "#{id}"


@pytest.mark.parametrize(("text", "expected"), [
    (MINIMAL + "[foo]\nx = 1\n", "foo: unknown section"),
    (MINIMAL + "[imap]\nhost = \"h\"\nusername = \"u\"\nprot = 1\n", "imap.prot: unknown key"),
    (MINIMAL + "[imap]\nhost = \"h\"\n", "imap.username: missing"),
    (IMAP + 'port = "x"\n', "imap.port: expected a whole number"),
    (IMAP + 'security = "ssl"\n', "imap.security: must be one of"),
    (MINIMAL + "[lifecycle]\nauto_close_after = \"3 days\"\n", "lifecycle.auto_close_after:"),
    (MINIMAL + "[survey]\nenabled = \"yes\"\n", "survey.enabled: expected true or false"),
    (MINIMAL + "[staff]\naddresses = \"tech@x\"\n", "staff.addresses: expected a list"),
    ("[helpdesk]\nname = \"x\"\n", "helpdesk.address: missing"),
    ("[helpdesk]\naddress = \"nobody\"\n", "helpdesk.address:"),
    (MINIMAL + '[smtp]\nhost = "h"\npassword = "a"\npassword_env = "B"\n',
     "smtp.password: give only one of password"),
    ("[helpdesk\n", "not valid TOML"),
])
def test_errors_name_the_key(text, expected):
    assert expected in error_of(text)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "absent.toml")


def test_secrets(monkeypatch):
    loaded = load('[imap]\nhost = "h"\nusername = "u"\npassword_env = "MH_TEST_PW"\n'
                  '[smtp]\nhost = "h"\npassword_command = "echo s3cret"\n')
    monkeypatch.setenv("MH_TEST_PW", "from-env")
    assert loaded.imap.password.reveal() == "from-env"
    assert loaded.smtp.password.reveal() == "s3cret"
    monkeypatch.delenv("MH_TEST_PW")
    with pytest.raises(ConfigError, match="MH_TEST_PW is not set"):
        loaded.imap.password.reveal()


def test_secret_never_in_repr():
    loaded = load('[imap]\nhost = "h"\nusername = "u"\npassword = "hunter2"\n')
    assert "hunter2" not in repr(loaded)


def test_staff_is_case_insensitive_on_the_address():
    loaded = load('[staff]\naddresses = ["Tech1@School.test"]\ndomains = ["IT.School.test"]\n')
    assert loaded.staff.is_staff("tech1@school.TEST")
    assert loaded.staff.is_staff("anyone@it.school.test")
    assert not loaded.staff.is_staff("tech1@school.test.evil.example")


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("15m", 900), ("1h", 3600), ("3d", 259200), ("2w", 1209600), ("0s", 0),
    ("1h30m", 5400),
])
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "3", "d", "3x", "-1h", "1.5h"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_retired_key_still_loads_and_the_log_says_it_can_go(caplog):
    """An upgrade must not stop a desk whose config names a key mailhelp no longer reads
    ([ingest] linger went with the lingering ingest in issue 17)."""
    with caplog.at_level("WARNING"):
        loaded = load('[ingest]\nlinger = "30s"\n')
    assert loaded.helpdesk.address
    assert "ingest.linger: no longer used" in caplog.text
    assert error_of(MINIMAL + '[ingest]\nlingers = "30s"\n') == "ingest.lingers: unknown key"
