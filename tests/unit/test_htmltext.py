"""HTML to text: inscriptis's layout where it is safe, a plain linear conversion where
it is not (issue 15: 200 KB of table became 2 GB of text)."""

from __future__ import annotations

import re
import time
import tracemalloc

from mailhelp.mail.htmltext import MAX_DOCUMENT, MAX_PLAIN, html_to_text, plain_text


def test_a_small_table_is_laid_out_in_columns():
    html = ("<table><tr><td>Room</td><td>Projector</td></tr>"
            "<tr><td>12</td><td>no picture</td></tr></table>")
    assert html_to_text(html) == "Room  Projector\n12    no picture"


def test_lists_and_paragraphs_keep_their_shape():
    html = "<p>Steps:</p><ul><li>restart</li><li>call us</li></ul><p>Thanks</p>"
    assert html_to_text(html) == "Steps:\n\n  * restart\n  * call us\n\nThanks"


def test_a_table_that_would_pad_into_gigabytes_is_converted_plainly():
    html = ("<table><tr><td>" + "x<br>" * 20_000 + "</td><td>" + "y" * 100_000
            + "</td></tr></table>")
    tracemalloc.start()
    started = time.process_time()
    try:
        text = html_to_text(html)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.process_time() - started < 2
    assert peak < 50_000_000 and len(text) < 2 * len(html)
    assert text.count("x") == 20_000 and "y" * 100_000 in text


def test_inline_margins_and_paddings_are_not_laid_out():
    html = "<div style='padding-left:100000em; margin-top:100000em'>" + "x<br>" * 100 + "</div>"
    assert html_to_text(html) == "\n".join(["x"] * 100)


def test_hidden_text_stays_hidden():
    html = "<p>Visible</p><div style='display:none'>preheader</div>"
    assert html_to_text(html) == "Visible"


def test_deep_nesting_does_not_indent_into_megabytes():
    html = "<div>" * 200 + "x<br>" * 20_000
    assert len(html_to_text(html)) < 4 * len(html)


def test_a_large_document_is_converted_plainly_and_linearly():
    html = "<html><head><title>T</title><style>p {}</style></head><body>" \
        + "<p>Hello &amp; <b>welcome</b></p>" * (MAX_DOCUMENT // 20) + "<script>x()</script>"
    text = html_to_text(html)
    assert text.startswith("Hello & welcome\n\nHello & welcome")
    assert "x()" not in text and "p {}" not in text and "T" not in text


def test_the_plain_conversion_reads_any_html():
    assert plain_text("<ul><li>one<li>two</ul><table><tr><td>a</td><td>b</td></tr></table>"
                      "<!-- note -->end") == "* one\n* two\n\na b\n\nend"
    assert plain_text("<" * 100_000 + "x" + "<script" * 1000) == "<" * 100_000 + "x"
    assert plain_text("a <b>\n\n b</b>\t c") == "a b c"


def test_html_beyond_the_plain_limit_is_named_not_read():
    text = plain_text("a<br>" * (MAX_PLAIN // 5 + 1000))
    assert re.search(r"\na\na\n\n\[\d+ more characters of HTML are not shown as text\]$",
                     text)
    assert "<" not in text


def test_a_common_indent_is_removed_in_linear_time():
    started = time.process_time()
    assert html_to_text("<pre>" + " " * 60_000 + "x\n" + " " * 60_000 + "y</pre>") \
        == "x\ny"
    assert time.process_time() - started < 2


def test_an_empty_document():
    assert html_to_text("") == html_to_text("   ") == ""
