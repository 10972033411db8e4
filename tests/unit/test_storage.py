from __future__ import annotations

import pytest

from mailhelp.db.storage import AttachmentStore, safe_filename


@pytest.mark.parametrize(("name", "expected"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "_.._etc_passwd"),
    ("C:\\Users\\x\\evil.exe", "C_Users_x_evil.exe"),
    ("a\r\nb.txt", "a_b.txt"),
    (".hidden", "hidden"),
    ("", "attachment"),
    ("///", "attachment"),
])
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


def test_long_names_keep_their_extension():
    name = safe_filename("x" * 500 + ".docx")
    assert len(name) <= 120 and name.endswith(".docx")


def test_store_is_content_addressed(tmp_path):
    store = AttachmentStore(tmp_path / "att")
    digest = store.put(b"hello")
    assert store.put(b"hello") == digest
    assert store.get(digest) == b"hello"
    assert len(list((tmp_path / "att").rglob("*"))) == 3  # two levels of folders, one file
