"""Templates compiled once and kept between processes, never at the cost of a wrong mail."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhelp.delivery import templating


@pytest.fixture
def fresh_process():
    """Each call of the returned function looks like a new process: no template in memory."""
    templating.environment.cache_clear()
    yield templating.environment.cache_clear
    templating.environment.cache_clear()


def write_pair(directory, subject: str) -> None:
    (directory / "ack.txt.j2").write_text(f"Subject: {subject}\n\nHello {{{{ name }}}}\n")
    (directory / "ack.html.j2").write_text("<p>Hello {{ name }}</p>\n")


def test_an_edited_override_is_compiled_afresh(tmp_path, fresh_process):
    write_pair(tmp_path, "First")
    assert templating.render("ack", {"name": "Jane"}, str(tmp_path)).subject == "First"
    cache = templating.environment(str(tmp_path)).bytecode_cache
    key = cache.get_cache_key("ack.txt.j2", str(tmp_path / "ack.txt.j2"))
    assert Path(cache.directory, cache.pattern % key).is_file()
    fresh_process()
    assert templating.render("ack", {"name": "Jane"}, str(tmp_path)).subject == "First"
    write_pair(tmp_path, "Second")
    fresh_process()
    rendered = templating.render("ack", {"name": "<Jane>"}, str(tmp_path))
    assert rendered.subject == "Second"
    assert rendered.text == "Hello <Jane>\n" and rendered.html == "<p>Hello &lt;Jane&gt;</p>\n"


def test_a_cache_that_cannot_be_written_or_made_only_costs_the_compiling(
        tmp_path, fresh_process, monkeypatch):
    write_pair(tmp_path, "Hello")
    monkeypatch.setattr(templating.environment(str(tmp_path)).bytecode_cache, "directory",
                        str(tmp_path / "gone"))
    assert templating.render("ack", {"name": "Jane"}, str(tmp_path)).subject == "Hello"
    fresh_process()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "ack.txt.j2"))  # not a directory
    assert templating.environment(str(tmp_path)).bytecode_cache is None
    assert templating.render("ack", {"name": "Jane"}, str(tmp_path)).subject == "Hello"
