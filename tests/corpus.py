"""The shared corpus of real-world mail (../shared/corpus), read in place, never copied."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

CORPUS = Path(os.environ.get("MAILHELP_CORPUS")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus")


def corpus_rows() -> list[dict[str, str]]:
    index = CORPUS / "INDEX.tsv"
    if not index.exists():
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"corpus missing at {CORPUS} (set MAILHELP_CORPUS)")
        return []
    with index.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def skip_without_corpus() -> None:
    """Skip a test that reads the corpus where there is none; in CI that is a failure."""
    message = f"mail corpus not found at {CORPUS}; set MAILHELP_CORPUS to run this"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def raw_messages() -> list:
    """One pytest param per raw mail (body-only fixtures left out), ids are their paths."""
    rows = [r for r in corpus_rows() if "body-only" not in r["tag"]]
    if not rows:
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"mail corpus not found at {CORPUS}; set MAILHELP_CORPUS to run these"))]
    return [pytest.param(r, id=r["path"]) for r in rows]
