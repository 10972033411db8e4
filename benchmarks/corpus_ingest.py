"""The whole mail corpus through mailhelp, and mailhelp's parse against Zammad's.

Part one stores and processes every raw email of ../shared/corpus (rows of
INDEX.tsv without the ``body-only`` tag) on an empty SQLite database, the way
``mailhelp ingest`` does, and counts what became of each message. Part two
parses Zammad's 106 fixtures and compares sender, subject, body and attachment
names with what Zammad's own parser expects (``mailNNN.yml``).

    python -m benchmarks.corpus_ingest [--verbose]
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import logging
import os
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

CORPUS = Path(os.environ.get("MAILHELP_CORPUS")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus")
BATCH = 100
TICKET_ENTRIES = ("new_ticket", "reply", "staff_reply", "recorded")


def raw_rows() -> list[dict[str, str]]:
    with (CORPUS / "INDEX.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [r for r in rows if "body-only" not in r["tag"]]


def ingest(rows: list[dict[str, str]]) -> tuple[Counter, Counter, Counter, float]:
    """(actions, reasons of ignored mail, reasons of failures, seconds) over the corpus."""
    from mailhelp import config as config_module
    from mailhelp.db.migrate import upgrade
    from mailhelp.db.session import Database
    from mailhelp.service.pipeline import Arrival, Pipeline

    actions, ignored, failed = Counter(), Counter(), Counter()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/mailhelp.db"
        config = config_module.loads(f"""
            [helpdesk]
            address = "help@school.test"
            [database]
            url = "{url}"
            [staff]
            addresses = ["tech1@school.test", "tech2@school.test"]
            [storage]
            attachments_dir = "{tmp}/attachments"
            """)
        db = Database(url)
        upgrade(db)
        pipeline = Pipeline(config, db, lambda: datetime(2026, 11, 23, tzinfo=UTC))
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            # Source "ingest" and no UID, as `mailhelp ingest FILE...` stores them.
            arrivals = [Arrival((CORPUS / r["path"]).read_bytes(), "ingest")
                        for r in rows[start:start + BATCH]]
            for result in pipeline.accept(arrivals):
                if result.failed:
                    actions["failed"] += 1
                    failed[result.error] += 1
                elif result.outcome is None:
                    actions[result.state] += 1  # already done: stored before
                else:
                    actions[result.outcome.action] += 1
                    if result.outcome.action == "ignored":
                        # "sent by mailer-daemon@host": one reason, whatever the host.
                        ignored[re.sub(r"@\S+", "@…", result.outcome.detail)] += 1
        seconds = time.perf_counter() - started
        db.dispose()
    return actions, ignored, failed, seconds


def parse_times(rows: list[dict[str, str]]) -> tuple[float, float, str]:
    """(total parse seconds, slowest parse seconds, slowest file) over the corpus."""
    from mailhelp.errors import ParseError
    from mailhelp.mail.parse import parse

    total, worst, worst_path = 0.0, 0.0, ""
    for row in rows:
        raw = (CORPUS / row["path"]).read_bytes()
        started = time.perf_counter()
        with contextlib.suppress(ParseError):
            parse(raw)
        took = time.perf_counter() - started
        total += took
        if took > worst:
            worst, worst_path = took, row["path"]
    return total, worst, worst_path


# --- Zammad's expectations ---------------------------------------------------

def zammad_loader():
    import yaml

    class RubyLoader(yaml.SafeLoader):
        """Reads Zammad's Ruby-tagged YAML as plain dicts, lists and strings."""

    def ruby(loader, suffix: str, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        value = loader.construct_scalar(node)
        return base64.b64decode(value) if suffix == "binary" else value

    RubyLoader.add_multi_constructor("!", ruby)
    return RubyLoader


def zammad_cases() -> list[tuple[Path, dict]]:
    import yaml

    loader = zammad_loader()
    folder = CORPUS / "zammad__zammad"
    return [(box, yaml.load(box.with_suffix(".yml").read_text(encoding="utf-8"), Loader=loader))
            for box in sorted(folder.glob("mail*.box"))]


def flat(text: str) -> str:
    """Whitespace (including no-break spaces) collapsed: layout is not what we compare."""
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ").replace("\u200b", "")).strip()


def expected_body(expected: dict) -> str:
    body = str(expected.get("body") or "")
    return "" if body == "no visible content" else body  # Zammad's word for an empty body


def html_text(html: str) -> str:
    from mailhelp.mail.parse import html_to_text

    # No whitespace at all: converters differ in the spaces around inline elements.
    return re.sub(r"\s+", "", flat(html_to_text(html)))


def expected_attachments(expected: dict) -> list[dict]:
    # Zammad keeps the original HTML part as "message.html"; it is not an attachment.
    return [a for a in expected.get("attachments") or []
            if not (a.get("preferences") or {}).get("original-format")]


def as_bytes(data: object) -> bytes:
    return data if isinstance(data, bytes) else str(data or "").encode("utf-8")


def compare(box: Path, expected: dict) -> dict[str, bool | None]:
    """Per field: True (match), False (mismatch) or None (not applicable)."""
    from mailhelp.errors import ParseError
    from mailhelp.mail.parse import parse

    try:
        inbound = parse(box.read_bytes())
    except ParseError:
        return dict.fromkeys(FIELDS, False)
    html = expected.get("content_type") == "text/html"
    want_files = expected_attachments(expected)
    got_md5 = {hashlib.md5(a.payload).hexdigest() for a in inbound.attachments}
    got_body = (html_text(inbound.html) if inbound.html else re.sub(r"\s+", "", inbound.text)) \
        if html else flat(inbound.text)
    return {
        "from_email": inbound.sender.address == str(expected.get("from_email") or "").lower(),
        "from_display_name": flat(inbound.sender.name)
        == flat(str(expected.get("from_display_name") or "")),
        "subject": flat(inbound.subject) == flat(str(expected.get("subject") or "")),
        "body (text/plain)": None if html else got_body == flat(expected_body(expected)),
        "body (text/html, as text)":
            got_body == html_text(expected_body(expected)) if html else None,
        "attachment filenames": sorted(a.filename for a in inbound.attachments)
        == sorted(flat(str(a.get("filename") or "")) for a in want_files),
        "attachment contents (md5 subset)":
            {hashlib.md5(as_bytes(a.get("data"))).hexdigest() for a in want_files} <= got_md5,
    }


FIELDS = ("from_email", "from_display_name", "subject", "body (text/plain)",
          "body (text/html, as text)", "attachment filenames", "attachment contents (md5 subset)")


def zammad_shares(verbose: bool) -> dict[str, tuple[int, int]]:
    matched: dict[str, list[int]] = {name: [0, 0] for name in FIELDS}
    for box, expected in zammad_cases():
        for name, ok in compare(box, expected).items():
            if ok is None:
                continue
            matched[name][0] += ok
            matched[name][1] += 1
            if verbose and not ok:
                print(f"  MISS {box.name} {name}")
    return {name: (ok, total) for name, (ok, total) in matched.items()}


def main() -> int:
    if not (CORPUS / "INDEX.tsv").exists():
        print(f"corpus not found at {CORPUS}; set MAILHELP_CORPUS", file=sys.stderr)
        return 1
    verbose = "--verbose" in sys.argv
    logging.disable(logging.CRITICAL)  # one line per figure; failures are counted below
    rows = raw_rows()
    actions, ignored, failed, seconds = ingest(rows)
    entries = sum(actions[a] for a in TICKET_ENTRIES)
    print(f"messages: {len(rows)}")
    print(f"ticket entries: {entries} (" + ", ".join(
        f"{a} {actions[a]}" for a in TICKET_ENTRIES) + ")")
    print(f"duplicates: {actions['duplicate']}")
    print(f"ignored: {actions['ignored']}")
    for reason, count in ignored.most_common():
        print(f"  ignored {count}: {reason}")
    print(f"failed: {actions['failed']}")
    for reason, count in failed.most_common():
        print(f"  failed {count}: {reason}")
    print(f"ingest time: {seconds:.1f} s ({len(rows) / seconds:.0f} messages/s)")
    total, worst, worst_path = parse_times(rows)
    print(f"parse alone: {total:.1f} s ({len(rows) / total:.0f} messages/s)")
    print(f"slowest parse: {worst:.3f} s ({worst_path})")
    for name, (ok, count) in zammad_shares(verbose).items():
        share = 100 * ok / count if count else 0.0
        print(f"zammad {name}: {ok}/{count} match ({share:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
