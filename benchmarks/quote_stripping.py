"""How often mailhelp's quote stripping gives the expected new text of a reply.

Runs over every reply in ../shared/corpus that comes with an expected stripped text
(talon's standard replies from 12 mail clients, and its signature fixtures) and
prints the share that matches, for mailhelp and, where installed, the two reply
parsers it was chosen between.

    python -m benchmarks.quote_stripping [--verbose]
"""

from __future__ import annotations

import csv
import email
import email.policy
import os
import sys
from pathlib import Path

from mailhelp.mail.quoting import new_text

CORPUS = Path(os.environ.get("MAILHELP_CORPUS")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus")


def cases() -> list[tuple[str, str, str]]:
    """(path, text of the reply, expected new text)."""
    found = []
    with (CORPUS / "INDEX.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        expectation = row["expectation"]
        if row["source"] != "mailgun__talon" or expectation == "-":
            continue
        path = CORPUS / row["path"]
        if path.suffix == ".eml":
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
            text = part.get_content()
            expected = ("Hello" if expectation == "implicit:Hello"
                        else (CORPUS / expectation).read_text())
        else:  # signature fixtures: the body without its signature is the new text
            text = path.read_text()
            signature = (CORPUS / expectation).read_text().strip()
            expected = text[: text.rindex(signature)] if signature in text else text
        found.append((row["path"], text, expected))
    return found


def normal(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())


def strippers() -> dict:
    result = {"mailhelp (mail-parser-reply + fixes)": new_text}
    try:
        from mailparser_reply import EmailReplyParser as Mpr

        parser = Mpr(languages=["en", "de"])
        result["mail-parser-reply alone"] = lambda t: parser.read(t).replies[0].body
    except ImportError:
        pass
    try:
        from email_reply_parser import EmailReplyParser as Erp

        result["email-reply-parser"] = Erp.parse_reply
    except ImportError:
        pass
    return result


def main() -> int:
    if not (CORPUS / "INDEX.tsv").exists():
        print(f"corpus not found at {CORPUS}; set MAILHELP_CORPUS", file=sys.stderr)
        return 1
    verbose = "--verbose" in sys.argv
    all_cases = cases()
    groups = {
        "replies from 12 mail clients (quote cut, signature kept)":
            [c for c in all_cases if c[0].endswith(".eml")],
        "signature fixtures (signature cut as well)":
            [c for c in all_cases if not c[0].endswith(".eml")],
    }
    for name, strip in strippers().items():
        for group, group_cases in groups.items():
            matched = 0
            for path, text, expected in group_cases:
                got = strip(text)
                ok = normal(got) == normal(expected)
                matched += ok
                if verbose and not ok and name.startswith("mailhelp"):
                    print(f"  MISS {path}: got {normal(got)[:60]!r}, "
                          f"want {normal(expected)[:60]!r}")
            share = 100 * matched / len(group_cases)
            print(f"{name:<38} {group}: {matched}/{len(group_cases)} match ({share:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
