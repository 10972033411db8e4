"""The systemd units in deploy/: valid, hardened to an exposure of 2.5 or less, and
what the daemon relies on (Type=notify, the watchdog, the run directory, UMask).

Needs systemd-analyze (Debian's systemd package): skipped without it, loudly, except
in CI (CI=true), where .ci/run installs it and a missing one is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = (ROOT / "deploy" / "mailhelp.service", ROOT / "deploy" / "mailhelp-serve.service")
VENV_BINARY = "/opt/mailhelp/venv/bin/mailhelp"  # where the units' install steps put it
IN_CI = os.environ.get("CI") == "true"
MAX_EXPOSURE = 2.5


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        reason = ("systemd-analyze is not installed: the units in deploy/ were not checked "
                  "(apt-get install systemd, or run .ci/run)")
        if IN_CI:
            pytest.fail("CI=true but " + reason, pytrace=False)
        pytest.skip(reason)
    return found


def settings(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exposure_is_at_most_2_5(analyze, unit):
    done = subprocess.run([analyze, "security", "--offline=true", "--no-pager",
                           f"--threshold={int(MAX_EXPOSURE * 10)}", str(unit)],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_units_verify(analyze, unit, tmp_path):
    """As shipped where the install steps were followed (CI makes /opt/mailhelp/venv);
    elsewhere with ExecStart= pointing at this machine's mailhelp, the one change."""
    if os.access(VENV_BINARY, os.X_OK):
        checked = unit
    else:
        if IN_CI:
            pytest.fail(f"CI=true but no {VENV_BINARY}: .ci/run makes it as the units' "
                        "install steps say", pytrace=False)
        installed = shutil.which("mailhelp") or str(Path(sys.executable).with_name("mailhelp"))
        checked = tmp_path / unit.name
        checked.write_text(unit.read_text().replace(VENV_BINARY, installed))
    done = subprocess.run([analyze, "verify", "--man=no", str(checked)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_daemon_unit_gives_what_the_daemon_relies_on():
    daemon, serve = (settings(unit) for unit in UNITS)
    assert daemon["Type"] == ["notify"] and daemon["NotifyAccess"] == ["main"]
    assert daemon["WatchdogSec"] and daemon["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # SIGTERM to the daemon alone: it stops its sender process itself.
    assert daemon["KillMode"] == ["mixed"]
    assert daemon["ExecStart"] == [f"{VENV_BINARY} run"]
    assert serve["ExecStart"] == [f"{VENV_BINARY} serve"]
    assert daemon["RuntimeDirectory"] == ["mailhelp"]  # /run/mailhelp/ingest.sock
    # Two units removing /run/mailhelp at their stop would take the socket with them.
    assert "RuntimeDirectory" not in serve
    for unit in (daemon, serve):
        assert unit["UMask"] == ["0077"] and unit["StateDirectory"] == ["mailhelp"]
        assert unit["User"] == ["mailhelp"] and unit["MemoryDenyWriteExecute"] == ["true"]
        assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_install_steps_are_in_the_readme(unit):
    """The README's "Running as a service" gives the same commands as the units."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Running as a service", 1)[1].split("\n#", 1)[0]
    steps = [line[1:].strip() for line in unit.read_text().splitlines()
             if line.startswith("#   ") and not line.startswith("#       ")]
    assert steps
    missing = [step for step in steps if step not in section]
    assert missing == [], missing
