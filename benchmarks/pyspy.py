"""Summarise a py-spy ``--format raw --idle`` profile: where ``run --once`` spends its time.

    python -m benchmarks.pyspy PROFILE [N]     (reads PROFILE.1, PROFILE.2, ...)
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys
from collections import Counter

_LINE = re.compile(r":\d+\)$")
# Frames that only pass the call on: leaving them out keeps the list about real work.
_PLUMBING = ("<module>", "main (mailhelp/cli.py)", "cmd_run (mailhelp/cli.py)",
             "(asyncio/", "(runpy.py)", "(contextlib.py)")


def available() -> bool:
    return shutil.which("py-spy") is not None


def profiles(prefix: str) -> list[str]:
    """The files one profiled run wrote: PREFIX.1, PREFIX.2, ... (one per process)."""
    found = sorted(glob.glob(glob.escape(prefix) + ".[0-9]*"),
                   key=lambda p: int(p.rpartition(".")[2]))
    return found or ([prefix] if os.path.exists(prefix) else [])


def summary(paths: list[str], top: int = 25) -> list[str]:
    """Lines per process (run --once and its sender process, recorded with
    ``--subprocesses``): inclusive share of mailhelp's own functions and of libraries,
    then self share of any frame, of the process's main thread."""
    by_process: dict[str, tuple[Counter[str], Counter[str], list[int]]] = {}
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
                # py-spy --subprocesses names the process, then each it was forked from.
                forks = 0
                while frames and frames[0].startswith("process "):
                    forks, frames = forks + 1, frames[1:]
                process = "sender process" if forks > 1 else "run --once"
                if not frames or not frames[0].startswith("<module>"):
                    continue  # another thread (an idle executor worker), or a torn stack
                inclusive, own, total = by_process.setdefault(process,
                                                              (Counter(), Counter(), [0]))
                samples = int(count)
                total[0] += samples
                own[frames[-1]] += samples
                for frame in set(frames):
                    inclusive[frame] += samples
    if not by_process:
        return ["(empty profile)"]
    lines = []
    for process, (inclusive, own, (total,)) in sorted(by_process.items()):
        lines += [f"py-spy of {process}: {total} wall-clock samples at 100 Hz of the main "
                  "thread (waits on sockets and the database included)",
                  "inclusive, mailhelp's own functions:"]
        mailhelp = [(f, n) for f, n in inclusive.most_common()
                    if "(mailhelp/" in f and not any(p in f for p in _PLUMBING)]
        lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in mailhelp[:top]]
        lines.append("inclusive, libraries:")
        libraries = [(f, n) for f, n in inclusive.most_common()
                     if "(mailhelp/" not in f and not any(p in f for p in _PLUMBING)]
        lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in libraries[:top]]
        lines.append("self (the frame itself was running):")
        lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return lines


if __name__ == "__main__":
    print("\n".join(summary(profiles(sys.argv[1]),
                            int(sys.argv[2]) if len(sys.argv) > 2 else 25)))
