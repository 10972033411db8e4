"""HTML to plain text, for mail that has no plain part. Pure.

inscriptis lays HTML out as a browser's text mode would (tables in columns, lists
indented), and it is the most expensive thing a message can ask for: a table pads each
of its lines to the width of all its columns, so 200 KB of table became 2 GB of text
in 15 s, and an inline ``padding-left: 100000em`` put 100,000 spaces before each
line. So inline margins and paddings are dropped; a document goes to inscriptis only
when it is at most MAX_DOCUMENT long, has at most MAX_CELLS table cells and an upper
bound of what its tables can make is small; and one whose text still comes out much
longer than the HTML (deep nesting indents every line) is converted plainly instead:
tags out, line breaks kept, linear and in C.
"""

from __future__ import annotations

import html as html_entities
import os
import re

MAX_DOCUMENT = 128 * 1024  # characters of HTML inscriptis is given (some 0.2 s of work)
MAX_PLAIN = 4 * 1024 * 1024  # characters of HTML converted plainly (some 0.4 s)
# What a table can make is at most (its lines) x (the width of all its columns): above
# this many characters, or this many cells (each costs inscriptis some 20 µs), it is
# not laid out.
MAX_TABLE_TEXT = 4_000_000
MAX_CELLS = 5000
# Text this much longer than its HTML was laid out by nesting, not written.
_GROWTH = 4
_INDENT = 8  # what one level of nesting can add to a line (an indent, a bullet, "10. ")
# What inscriptis lays out as blocks (its CSS profile, and line breaks and tables).
_BLOCKS = frozenset({
    "br", "table", "p", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li",
    "address", "article", "aside", "div", "footer", "header", "hgroup", "layer", "main",
    "nav", "figcaption", "blockquote", "pre", "xmp", "listing", "plaintext"})

_XML_DECLARATION = re.compile(r"^<\?xml [^>]+?\?>")
# Cells outside rows, rows outside tables: laid out in ways not bounded here.
_STRAY = ("boolean(//*[self::td or self::th][not(parent::tr)] | //tr[not(parent::table"
          " or parent::tbody or parent::thead or parent::tfoot)])")

# The plain conversion.
_INVISIBLE_START = re.compile(r"<(script|style|head|title)\b", re.I)
_INVISIBLE_END = {name: re.compile(rf"</{name}\s*>", re.I)
                  for name in ("script", "style", "head", "title")}
_HTML_SPACE = dict.fromkeys(map(ord, "\t\n\f\r"), " ")  # what HTML reads as a space
_SPACES = re.compile(" {2,}")
_BREAK = re.compile(r"<(?:br|/?(?:p|div|tr|li|h[1-6]|table|blockquote|pre|ul|ol|dl|dt|dd|hr"
                    r"|address|center|section|article|header|footer|form|fieldset|caption))"
                    r"\b[^<>]*>", re.I)
_CELL = re.compile(r"</?t[dh]\b[^<>]*>", re.I)
_LIST_ITEM = re.compile(r"<li\b[^<>]*>", re.I)
_TAG = re.compile(r"</?[A-Za-z!?][^<>]*>")
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """The text of an HTML document, as a mail client would show it."""
    tree = _laid_out_tree(html) if len(html) <= MAX_DOCUMENT else None
    if tree is None:
        return plain_text(html)
    if tree is False:
        return ""
    from inscriptis.html_engine import Inscriptis

    try:
        text = Inscriptis(tree).get_text()
    except Exception:  # inscriptis rejects some broken documents
        return plain_text(html)
    if len(text) > _GROWTH * len(html) + 65536:
        return plain_text(html)
    return "\n".join(_dedented([line.rstrip() for line in text.split("\n")])).strip("\n")


def _laid_out_tree(html: str):
    """The document's tree for inscriptis, without inline styles; False for an empty
    document, None for one to convert plainly (unreadable, or tables too large)."""
    from lxml.html import document_fromstring

    content = html.strip()
    if not content:
        return False
    if content.startswith("<?xml "):
        content = _XML_DECLARATION.sub("", content, count=1)
    try:
        try:
            tree = document_fromstring(content)
        except Exception:  # as inscriptis does: what lxml cannot read is preformatted
            tree = document_fromstring("<pre>" + content + "</pre>")
        for styled in tree.xpath("//*[@style]"):
            styled.attrib["style"] = _without_spacing(styled.attrib["style"])
        if tree.xpath("count(//td | //th)") > MAX_CELLS or tree.xpath(_STRAY):
            return None
        laid_out = 0
        for table in tree.xpath("//table[not(ancestor::table)]"):
            lines, width = _extent(table)
            laid_out += lines * (width + 1)
            if laid_out > MAX_TABLE_TEXT:
                return None
    except Exception:  # lxml refused it: the plain conversion still reads it
        return None
    return tree


def _extent(element) -> tuple[int, int]:
    """(lines, width): at least as many lines, and as long, as inscriptis makes of
    ``element``. Text counts whole on its line and each of its line breaks as a line
    too (true whether it is preformatted or not); any element may be a block (a style
    can make it one), with margins; only a block starts a new line, and it may indent
    it or number it; an inline element gets a space on either side."""
    if element.tag == "table":
        return _table_extent(element)
    text = element.text or ""
    lines, width, line = 1 + text.count("\n"), 0, len(text)
    for child in element:
        if isinstance(child.tag, str):
            inner_lines, inner_width = _extent(child)
            lines += inner_lines + 3
            if child.tag in _BLOCKS:
                width = max(width, line, inner_width + _indent(child))
                line = 0
            else:
                line += inner_width + 2
        tail = child.tail or ""
        line += len(tail)
        lines += tail.count("\n")
    return lines, max(width, line)


def _indent(block) -> int:
    if block.tag != "li":
        return _INDENT
    numbered = next(block.iterancestors("ol"), None)  # "1000000. " takes its room
    return _INDENT + (len(numbered.get("start", "")) if numbered is not None else 0)


def _table_extent(table) -> tuple[int, int]:
    """A table's rows one below the other, each as high as its highest cell; its
    columns side by side, each as wide as its widest cell, with separators. A table
    of another shape (text or a table between its rows or cells) is taken for too
    large: what inscriptis makes of it is not known here."""
    if not _table_shaped(table):
        return MAX_TABLE_TEXT, MAX_TABLE_TEXT
    widths: list[int] = []
    lines = 1
    for row in table.iter("tr"):
        if next(row.iterancestors("table"), None) is not table:
            continue  # a row of a table inside this one: counted in its cell
        row_lines = 1
        for column, cell in enumerate(row.iterchildren("td", "th")):
            cell_lines, cell_width = _extent(cell)
            row_lines = max(row_lines, cell_lines)
            if column < len(widths):
                widths[column] = max(widths[column], cell_width)
            else:
                widths.append(cell_width)
        lines += row_lines
    return lines, sum(widths) + 3 * len(widths) + _INDENT


def _without_spacing(style: str) -> str:
    """An inline style less its margins and paddings (kept: display, white-space)."""
    return ";".join(rule for rule in style.split(";")
                    if not rule.strip().lower().startswith(("margin", "padding")))


def plain_text(html: str) -> str:
    """The text of any HTML, however broken, in time linear in its length: scripts and
    styles out, block tags as line breaks, cells apart, entities decoded. Of HTML
    longer than MAX_PLAIN (no mail a person writes), the start is converted."""
    head = html[:MAX_PLAIN]
    if len(html) > MAX_PLAIN and head.rfind("<") > head.rfind(">"):  # not inside a tag
        head = head[:head.rfind("<")]
    rest = len(html) - len(head)
    html = _without_invisible(head).translate(_HTML_SPACE)
    text = _BREAK.sub("\n", _LIST_ITEM.sub("\n* ", html))
    text = _TAG.sub("", _CELL.sub(" ", text))
    text = html_entities.unescape(text).replace("\xa0", " ")
    text = _SPACES.sub(" ", text).replace(" \n", "\n").replace("\n ", "\n")
    text = _BLANK_LINES.sub("\n\n", text).strip()
    if rest > 0:
        text += f"\n\n[{rest} more characters of HTML are not shown as text]"
    return text


def _without_invisible(html: str) -> str:
    """The HTML without script, style, head and title elements (an unclosed one runs
    to the end). Each search starts where the last ended, so this reads it once."""
    kept = []
    position = 0
    while True:
        start = _INVISIBLE_START.search(html, position)
        if start is None:
            break
        kept.append(html[position:start.start()])
        end = _INVISIBLE_END[start.group(1).lower()].search(html, start.end())
        if end is None:
            return "".join(kept)
        position = end.end()
    kept.append(html[position:])
    return "".join(kept)


def _dedented(lines: list[str]) -> list[str]:
    """The lines less the indent they all share (textwrap.dedent compiles that indent
    into a regular expression: two megabytes of it took seven seconds)."""
    indents = [line[:len(line) - len(line.lstrip())] for line in lines if line]
    margin = len(os.path.commonprefix(indents)) if indents else 0
    return [line[margin:] for line in lines] if margin else lines


_SECTIONS = frozenset({"tbody", "thead", "tfoot"})
_TABLE_PARTS = frozenset({"tr", "caption", "colgroup", "col"}) | _SECTIONS


def _table_shaped(table) -> bool:
    """Rows in the table (or its sections), cells in the rows, nothing else but space."""
    if (table.text or "").strip():
        return False
    for child in table.iterchildren():
        if (child.tail or "").strip():
            return False
        if not isinstance(child.tag, str):
            continue  # a comment
        if child.tag not in _TABLE_PARTS:
            return False
        rows = child.iterchildren() if child.tag in _SECTIONS else (child,)
        if child.tag in _SECTIONS and (child.text or "").strip():
            return False
        for row in rows:
            if not isinstance(row.tag, str):
                continue
            if row is not child and (row.tag != "tr" or (row.tail or "").strip()):
                return False
            if row.tag == "tr" and not _row_shaped(row):
                return False
    return True


def _row_shaped(row) -> bool:
    if (row.text or "").strip():
        return False
    return all((cell.tag in ("td", "th") or not isinstance(cell.tag, str))
               and not (cell.tail or "").strip() for cell in row.iterchildren())
