"""mailhelp's performance benchmarks, on loopback, against a private Dovecot.

    python -m benchmarks                  # the full run (about 9 minutes on 2 cores)
    python -m benchmarks --quick          # a small run (about 2 minutes)
    python -m benchmarks ack pipe         # only some: ack, backlog, pipe, memory
    python -m benchmarks --quick --profile /tmp/prof backlog    # + where run --once goes
    python -m benchmarks backlog --deadline 0 --runs 3          # whole 10,000, 3 times

The full run's backlog is 10,000 messages; a run --once still busy after 90 s is
interrupted and the figure is end to end over the messages it had finished (their
mail is then sent by a send-only run --once), so the run stays near ten minutes even
while mailhelp is far below its target. ``--deadline 0`` waits for the whole backlog.

Everything is set up here and removed afterwards: Dovecot (IMAP + LMTP) with an SMTP
relay into it, an SMTP sink for mailhelp's outgoing mail (aiosmtpd, in this process),
SQLite files and PostgreSQL schemas ($MAILHELP_BENCH_PG, default the local ``test``
database). One line per figure on stdout, each with its ceiling measured in the same
run and the ratio, how many runs it is the median of, and PASS/MISS per target;
progress goes to stderr. MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from . import ack, backlog, memory, pipe, pyspy
from .harness import Bench, median, percentile, pg_available
from .report import Line, Target, ratio

ORDER = ("pipe", "memory", "ack", "backlog")
MB = 10**6


@dataclass(frozen=True)
class Plan:
    ack_messages: int = 200
    ack_rate: float = 5.0
    ack_runs: int = 3
    idle_messages: int = 30
    pipe_messages: int = 20
    memory_runs: int = 3
    backlog_messages: int = 10_000
    # A backlog run is repeated (up to backlog_runs) while the next one fits in the
    # database's budget; a run still busy at the deadline is interrupted and reported
    # as what it had done by then, so the full run stays near ten minutes whatever
    # mailhelp's speed.
    backlog_runs: int = 3
    backlog_budget: float = 170.0
    backlog_deadline: float | None = 90.0
    databases: tuple[str, ...] = ("sqlite", "postgresql")
    seed: int = 2026


FULL = Plan()
QUICK = Plan(ack_messages=50, ack_runs=1, idle_messages=15, pipe_messages=8, memory_runs=1,
             backlog_messages=1_000, backlog_runs=1, backlog_budget=0.0, backlog_deadline=None)


def say(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def emit(line: Line) -> Line:
    print(line.render(), flush=True)
    return line


# -- 1. time to acknowledgement ------------------------------------------------------------

def bench_ack(bench: Bench, plan: Plan, args) -> list[Line]:
    runs, ceilings = [], []
    for i in range(plan.ack_runs):
        say(f"ack: IDLE ceiling, run {i + 1}/{plan.ack_runs}")
        ceilings.append(ack.idle_ceiling(bench, plan.idle_messages, plan.ack_rate,
                                         plan.seed + 100 + i))
        say(f"ack: daemon, {plan.ack_messages} messages at {plan.ack_rate:g}/s, "
            f"run {i + 1}/{plan.ack_runs}")
        runs.append(ack.one_run(bench, plan.ack_messages, plan.ack_rate, plan.seed))
    problems = sorted({p for r in runs for p in r.problems})

    def per_run(values: Callable[[ack.AckRun], list[float]], p: float) -> float:
        return median([percentile(values(r), p) for r in runs if values(r)])

    idle50 = median([percentile(c, 50) for c in ceilings if c])
    idle95 = median([percentile(c, 95) for c in ceilings if c])
    ceiling = (f"ceiling: Dovecot IDLE notice p50 {idle50:.3f} s p95 {idle95:.3f} s "
               f"(n={sum(map(len, ceilings))}); ratio p50 {{r}}")
    how = (f"median of {plan.ack_runs} runs x {plan.ack_messages} msgs at "
           f"{plan.ack_rate:g}/s, daemon in IDLE")
    p50, p95, p99 = (per_run(lambda r: r.acks, p) for p in (50, 95, 99))
    count = sum(len(r.acks) for r in runs)
    lines = [emit(Line(
        "ack latency (new requests)",
        f"p50 {p50:.3f} s  p95 {p95:.3f} s  p99 {p99:.3f} s",
        ceiling.format(r=ratio(p50, idle50)),
        f"{how}; n={count}" + (f"; PROBLEMS: {'; '.join(problems)}" if problems else
                               "; every mail arrived"),
        (Target("p50 < 0.7 s", p50 < 0.7), Target("p99 < 2 s", p99 < 2.0))))]
    n50, n95, n99 = (per_run(lambda r: r.notifications, p) for p in (50, 95, 99))
    count = sum(len(r.notifications) for r in runs)
    lines.append(emit(Line(
        "reply -> staff notification", f"p50 {n50:.3f} s  p95 {n95:.3f} s  p99 {n99:.3f} s",
        ceiling.format(r=ratio(n50, idle50)), f"{how}; n={count}")))
    return lines


# -- 2 + 4a. backlog -----------------------------------------------------------------------

def bench_backlog(bench: Bench, plan: Plan, args) -> list[Line]:
    databases = list(plan.databases)
    lines: list[Line] = []
    if "postgresql" in databases:
        reason = pg_available()
        if reason:
            databases.remove("postgresql")
            lines.append(emit(Line("backlog postgresql", "SKIPPED", detail=reason)))
    say(f"backlog: generating and appending {plan.backlog_messages} messages")
    prepared = backlog.prepare(bench, plan.backlog_messages, plan.seed)
    say(f"backlog: {prepared.messages} messages, {prepared.bytes / MB:.0f} MB, appended in "
        f"{prepared.fill_seconds:.1f} s; they must cause {prepared.expected_mails} mails")
    if args.profile:
        for stale in pyspy.profiles(args.profile):
            os.remove(stale)
    # The databases take turns (SQLite, PostgreSQL, SQLite, ...): this machine's speed
    # drifts by a quarter within an hour, and the one figure that compares them, their
    # ratio, should not depend on which of them ran in the faster minutes.
    results: dict[str, list[backlog.Run]] = {database: [] for database in databases}
    spent = dict.fromkeys(databases, 0.0)

    def wants_another(database: str) -> bool:
        runs = results[database]
        return len(runs) < plan.backlog_runs and not (
            runs and spent[database] + runs[-1].seconds + 20 > plan.backlog_budget)

    while any(wants_another(database) for database in databases):
        for database in [d for d in databases if wants_another(d)]:
            runs = results[database]
            profile = args.profile if args.profile and database == databases[0] and not runs \
                else ""
            say(f"backlog: {database}, run {len(runs) + 1}"
                + (f" (profiled into {profile})" if profile else ""))
            began = time.monotonic()
            run = backlog.one_run(bench, prepared, database, deadline=plan.backlog_deadline,
                                  profile=profile)
            spent[database] += time.monotonic() - began
            runs.append(run)
            say(f"backlog: {database}: {run.rate:.1f} msg/s in {run.seconds:.1f} s"
                + (" (stopped at the deadline)" if run.stopped else ""))
    sqlite_rate = median([r.rate for r in results.get("sqlite", [])])
    for database, runs in results.items():
        rate = median([r.rate for r in runs])
        fetch = median([r.fetch_rate for r in runs])
        send = median([r.send_rate for r in runs])
        stopped = [r for r in runs if r.stopped]
        problems = sorted({p for r in runs for p in r.problems})
        how = f"median of {len(runs)} run(s), {prepared.messages} msgs"
        if len(results) > 1 and len(runs) > 1:
            how += ", taking turns with " + " and ".join(d for d in results if d != database)
        if args.profile and database == databases[0]:
            how += " (the first under py-spy)"
        if stopped:
            run = stopped[0]
            how += (f"; run --once INTERRUPTED at the {plan.backlog_deadline:.0f} s deadline "
                    f"with {run.processed} of {prepared.messages} msgs done: the figure is end "
                    f"to end over those (then a send-only run --once sent their "
                    f"{run.mails} mails; checked at the sink)")
        else:
            how += f"; {prepared.expected_mails} mails checked at the sink"
        if problems:
            how += f"; PROBLEMS: {'; '.join(problems)}"
        targets = [Target(">= 200 msg/s", rate >= 200 and not problems)]
        if database != "sqlite" and sqlite_rate == sqlite_rate:
            targets.append(Target(f"within 20% of SQLite ({rate / sqlite_rate:.2f}x)",
                                  rate >= 0.8 * sqlite_rate))
        lines.append(emit(Line(
            f"backlog {database}", f"{rate:.1f} msg/s",
            f"ceilings: IMAP fetch {fetch:.0f} msg/s (ratio {ratio(rate, fetch)}), "
            f"SMTP send {send:.0f} msg/s (ratio {ratio(rate, send)})", how, tuple(targets))))
    for database, runs in results.items():
        processing = median([r.processing_rate for r in runs])
        sending = median([r.sending_rate for r in runs])
        ceiling = median([r.send_ceiling for r in runs])
        lines.append(emit(Line(
            f"  {database}: the two stages",
            f"processing {processing:.1f} msg/s, sending {sending:.0f} mails/s",
            f"ceiling: bare aiosmtplib {ceiling:.0f} mails/s (sending ratio "
            f"{ratio(sending, ceiling)})",
            f"median of {len(runs)} run(s); they overlap (a sender process): processing "
            "until the last commit, sending from the first mail at the sink to the last; "
            f"{prepared.expected_mails / prepared.messages:.2f} mails per message")))
    for database, runs in results.items():
        peak = max(r.max_rss for r in runs)
        lines.append(emit(Line(
            f"peak RSS run --once ({database})", f"{peak / MB:.0f} MB",
            detail=f"max over {len(runs)} backlog run(s) of {prepared.messages} msgs",
            targets=(Target("< 150 MB", peak < 150 * MB),))))
    if args.profile and databases and results.get(databases[0]):
        files = pyspy.profiles(args.profile)
        print(f"profile of the first {databases[0]} backlog run ({', '.join(files)}):",
              flush=True)
        for text in pyspy.summary(files):
            print(f"    {text}", flush=True)
    return lines


# -- 3. pipe mode --------------------------------------------------------------------------

def bench_pipe(bench: Bench, plan: Plan, args) -> list[Line]:
    say(f"pipe: {plan.pipe_messages} x mailhelp ingest, with and without SMTP, each alone, "
        "and handed to a running daemon")
    result = pipe.run(bench, plan.pipe_messages, plan.seed)
    python, cli = median(result.python), median(result.import_cli)
    lines = []
    problems = "; ".join(result.problems)
    handed = median(result.handed_off)
    lines.append(emit(Line(
        "pipe: ingest, handed to daemon", f"{handed:.3f} s/msg",
        f"floor: python + import mailhelp.cli {cli:.3f} s (ratio {ratio(handed, cli)})",
        f"median of {len(result.handed_off)} fresh processes, max "
        f"{max(result.handed_off):.3f} s" + (f"; PROBLEMS: {problems}" if problems else ""),
        (Target("< 0.3 s", handed < 0.3),))))
    # With no daemon each ingest loads the database layer and the models and applies
    # its message itself: what a lone message costs (run the daemon for pipe delivery).
    for label, times, how in (("ref: ingest alone, SMTP sink up", result.with_smtp,
                               "the acknowledgement sent before it exits"),
                              ("ref: ingest, each alone", result.alone, "no [smtp]")):
        value = median(times)
        lines.append(emit(Line(
            label, f"{value:.3f} s/msg",
            f"floor: python + import mailhelp.cli {cli:.3f} s (ratio {ratio(value, cli)})",
            f"median of {len(times)} fresh processes, max {max(times):.3f} s; no daemon, "
            f"{how}")))
    lines.append(emit(Line("ref: python -c pass", f"{python:.3f} s",
                           detail=f"median of {len(result.python)}")))
    lines.append(emit(Line("ref: import mailhelp.cli", f"{cli:.3f} s",
                           detail=f"median of {len(result.import_cli)}")))
    return lines


# -- 4b. memory for a 25 MB attachment -----------------------------------------------------

def bench_memory(bench: Bench, plan: Plan, args) -> list[Line]:
    runs = []
    for i in range(plan.memory_runs):
        say(f"memory: 25 MB attachment, run {i + 1}/{plan.memory_runs}")
        runs.append(memory.one_run(bench, plan.seed))
    size = runs[0].size
    steady = median([r.steady for r in runs])
    problems = sorted({p for r in runs for p in r.problems})
    lines = []
    for variant in runs[0].big:
        peak = median([r.big[variant] for r in runs])
        extra = median([r.big[variant] - r.steady for r in runs])
        lines.append(emit(Line(
            f"RSS 25 MB attachment ({variant})",
            f"+{extra / MB:.0f} MB = {extra / size:.2f}x the message",
            f"steady state {steady / MB:.0f} MB (one small message), peak {peak / MB:.0f} MB",
            f"median of {len(runs)} runs; message {size / MB:.1f} MB on the wire"
            + (f"; PROBLEMS: {'; '.join(problems)}" if problems else ""),
            (Target("< 3x message size", extra < 3 * size),))))
    return lines


RUNNERS = {"ack": bench_ack, "backlog": bench_backlog, "pipe": bench_pipe,
           "memory": bench_memory}


def _header(plan: Plan, quick: bool, selected: list[str]) -> list[str]:
    try:
        dovecot = subprocess.run(["dovecot", "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.split()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        dovecot = "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [f"mailhelp benchmarks ({'quick' if quick else 'full'}: {', '.join(selected)}) "
            f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, Dovecot {dovecot}, "
            f"load average {load}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmarks", nargs="*", metavar="NAME",
                        help=f"which to run (default all): {', '.join(ORDER)}")
    parser.add_argument("--quick", action="store_true", help="a small run")
    parser.add_argument("--runs", type=int, help="runs per benchmark (ack, memory, backlog)")
    parser.add_argument("--backlog", type=int, metavar="N", help="backlog size")
    parser.add_argument("--deadline", type=float, metavar="SECONDS",
                        help="interrupt a backlog run after this long (0: never)")
    parser.add_argument("--databases", default=None,
                        help="comma-separated: sqlite,postgresql")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="py-spy the first backlog run of the first database (SQLite "
                             "unless --databases says otherwise) into PREFIX.1, PREFIX.2 "
                             "(one file per process) and summarise it")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (configs, logs)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.benchmarks) - set(ORDER))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(ORDER)})")
    selected = [name for name in ORDER if name in args.benchmarks] or list(ORDER)
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = replace(plan, ack_runs=args.runs, memory_runs=args.runs,
                       backlog_runs=args.runs, backlog_budget=float("inf"))
    if args.backlog:
        plan = replace(plan, backlog_messages=args.backlog)
    if args.deadline is not None:
        plan = replace(plan, backlog_deadline=args.deadline or None)
    if args.databases:
        plan = replace(plan, databases=tuple(args.databases.split(",")))
    if args.profile and not pyspy.available():
        parser.error("--profile needs py-spy (pip install py-spy)")
    for text in _header(plan, args.quick, selected):
        print(text, flush=True)
    started = time.monotonic()
    with Bench(keep=args.keep) as bench:
        if args.keep:
            say(f"keeping {bench.root}")
        for name in selected:
            RUNNERS[name](bench, plan, args)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"done in {time.monotonic() - started:.0f} s; load average {load}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
