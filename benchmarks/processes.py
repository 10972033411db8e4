"""Running the measured processes: wall time, exit code and their own peak RSS.

Linux folds the parent's peak RSS into a child's ru_maxrss when the child execs
(exec_mmap: setmax_mm_hiwater_rss), so a child of the benchmark process, which holds
backlogs and 25 MB messages, would report that process's peak as its own. The
measured processes are therefore started by a small launcher process and reaped
there with wait4; their peak is their own (the floor is the launcher's ~10 MB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    """A finished child process: exit code, wall seconds, peak RSS in bytes."""

    returncode: int
    seconds: float
    max_rss: int
    output: str
    stopped: bool = False  # interrupted at its deadline


_LAUNCHER = r"""
import json, os, signal, subprocess, sys, threading, time
for line in sys.stdin:
    job = json.loads(line)
    stdin = open(job["stdin"], "rb") if job["stdin"] else subprocess.DEVNULL
    with open(job["output"], "ab") as out:
        started = time.perf_counter()
        child = subprocess.Popen(job["args"], stdin=stdin, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=job["cwd"])
    if job["stdin"]:
        stdin.close()
    print(json.dumps({"pid": child.pid}), flush=True)
    stopped = threading.Event()
    def interrupt():
        stopped.set()
        child.send_signal(signal.SIGINT)
    timers = [threading.Timer(job["timeout"], child.kill)]
    if job["deadline"]:
        timers.append(threading.Timer(job["deadline"], interrupt))
    for timer in timers:
        timer.start()
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    for timer in timers:
        timer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps({"returncode": child.returncode, "seconds": seconds,
                      "max_rss": usage.ru_maxrss * 1024, "stopped": stopped.is_set()}),
          flush=True)
"""


class Launcher:
    """A small process that starts the measured children and reports their rusage."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCHER],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)

    def run(self, job: dict, on_start: Callable[[int], object] | None) -> dict:
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        started = json.loads(self.process.stdout.readline())
        if on_start is not None:
            on_start(started["pid"])
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the launcher process died")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(10)
        self.process.stdout.close()


_launcher: Launcher | None = None


def close_launcher() -> None:
    global _launcher
    if _launcher is not None:
        _launcher.close()
        _launcher = None


def run_process(args: Sequence[str], *, stdin: bytes | None = None, timeout: float = 600,
                cwd: Path | None = None, log: Path | None = None,
                deadline: float | None = None,
                on_start: Callable[[int], object] | None = None) -> Finished:
    """Run a child and collect its own rusage with wait4 (so its peak RSS is its alone).

    ``deadline``: seconds after which the child gets SIGINT (``stopped`` is then true);
    ``timeout``: after which it is killed. ``on_start`` is called with the child's pid.
    Wall time runs from just before the spawn to the child's exit.
    """
    global _launcher
    if _launcher is None:
        _launcher = Launcher()
    with tempfile.TemporaryDirectory(prefix="mailhelp-bench-run-") as scratch:
        stdin_file = ""
        if stdin is not None:
            stdin_file = os.path.join(scratch, "stdin")
            Path(stdin_file).write_bytes(stdin)
        output = str(log) if log else os.path.join(scratch, "output")
        done = _launcher.run({"args": list(args), "stdin": stdin_file, "output": output,
                              "cwd": str(cwd) if cwd else None, "timeout": timeout,
                              "deadline": deadline}, on_start)
        text = "" if log else Path(output).read_text(errors="replace")
    return Finished(done["returncode"], done["seconds"], done["max_rss"], text,
                    done["stopped"])
