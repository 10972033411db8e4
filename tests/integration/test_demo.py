"""``mailhelp demo`` on a machine with nothing set up: pymap and aiosmtpd come with pip."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end_with_pymap(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mailhelp", "demo", "--imap-server", "pymap"],
                          capture_output=True, timeout=120, cwd=tmp_path)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "pymap" in out
    assert out.count("teacher1@school.test   <- [#") == 2  # two tickets of Jane's, acknowledged
    assert out.count("tech1@school.test      <- [#") == 3
    assert "#3 " in out and "#4 " not in out  # the out-of-office made no ticket
    assert "To run mailhelp on your own help mailbox" in out
