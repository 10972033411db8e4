"""``mailhelp check``'s lines that need no server."""

from __future__ import annotations

import dataclasses

from mailhelp.check import run_checks
from tests.helpers import desk_config


def storage_line(config) -> str:
    [result] = [r for r in run_checks(config) if r.name == "storage"]
    return result.line()


def test_storage_says_where_attachments_and_the_journal_of_sent_mail_go(tmp_path,
                                                                         database_url):
    config = desk_config(tmp_path, database_url)
    line = storage_line(config)
    assert line.startswith(f"ok    storage    {tmp_path / 'att'} takes attachments")
    assert line.endswith("(made when first needed)")
    # On PostgreSQL the senders' journal lives there too (SQLite's is beside its file).
    assert ("journal of sent mail" in line) == database_url.startswith("postgresql")
    (tmp_path / "att").mkdir()
    assert not storage_line(config).endswith("(made when first needed)")


def test_storage_warns_naming_the_key_when_it_cannot_be_written(tmp_path, database_url):
    config = desk_config(tmp_path, database_url)
    (tmp_path / "a-file").write_text("")
    config = dataclasses.replace(config, storage=dataclasses.replace(
        config.storage, attachments_dir=str(tmp_path / "a-file" / "att")))
    line = storage_line(config)
    assert line.startswith(f"warn  storage    storage.attachments_dir: {tmp_path / 'a-file'} "
                           "is not a folder this user can write to: attachments cannot be "
                           "kept")
    assert line.endswith(" and sent mail is marked in the database (slower)") == \
        database_url.startswith("postgresql")
