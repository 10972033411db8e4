"""Exactly once under SIGKILL: 200 requests, a daemon killed at random moments, then checked.

200 distinct teacher requests wait in help@'s INBOX. ``mailhelp run`` (a real
subprocess) is killed with SIGKILL several times while it fetches and stores, applies,
and sends; then it runs to completion and is stopped with SIGTERM. Afterwards every
request must have exactly one ticket, every message must be in ``mailhelp/processed``,
and every ticket's acknowledgement must have arrived.

The one thing a crash may legitimately do twice is deliver a mail: when the daemon dies
after the SMTP server accepted a mail (250) but before the transaction that marks the
outbox row ``sent`` commits, the next run sends the row again. Each SMTP connection has at
most one mail in that window, so a kill duplicates at most ``[smtp] connections`` mails.
To show that this window (and nothing else) is where duplicates come from, a marker
message is put into every recipient's INBOX after each kill: UID order then tells which
run delivered each copy. A duplicate must be the same outbox row (same Message-ID) whose
first copy was delivered by a run that was killed, and whose second came from a later run.

The kill plan is drawn from a seeded RNG; the seed is printed (run with ``-s`` to see it,
pytest shows it on failure) and ``MAILHELP_CRASH_SEED=N`` replays the plan. The moments
the kills land still depend on timing, so the per-kill report says where each one hit.
It takes 15-25 s.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import pytest

from tests.helpers import mailhelp, write_config

pytestmark = pytest.mark.integration

HELP = "help@school.test"
TEACHERS = ("teacher1@school.test", "teacher2@school.test")
STAFF = ("tech1@school.test", "tech2@school.test")
MESSAGES = 200
ATTACHMENT_SIZE = 8192
SMTP_CONNECTIONS = 2  # mailhelp's default, written into the config so the bound below holds
MARKER_HEADER = "X-Crash-Marker"

# Where a kill is aimed: what says the phase has begun in this run (None: the delay counts
# from the start of the process) and the range of the random delay after it. "fetch" lands
# in FETCH or in the one transaction that stores the batch's raw bytes, "apply" among the
# per-message transactions, "move" between the batch's last commit and its MOVE to the
# processed folder (the window "store first, move after" exists for), "send" while the
# outbox is delivered. "move" has no log line: the database says when a batch is done.
BATCH_DONE = "<the database shows the running batch all but applied>"
PHASES: dict[str, tuple[str | None, float, float]] = {
    # Early enough that a fast run has not done most of the work by then: each kill
    # should leave work for the next (the test asks for five that did).
    "startup": (None, 0.05, 0.8),
    "fetch": ("action=imap_connected", 0.0, 0.12),
    "apply": ("action=new_ticket", 0.05, 0.9),
    "move": (BATCH_DONE, 0.0, 0.03),
    "send": ("action=sent", 0.0, 0.6),
}
ORDER = ("fetch", "apply", "move", "send")  # the order in which a run does the work
# Longest wait for a phase to begin (200 messages take ~13 s on a loaded PostgreSQL); a
# run that never gets there is killed anyway.
TRIGGER_TIMEOUT = 20.0
COMPLETION_TIMEOUT = 60.0


@dataclass(frozen=True)
class Request:
    number: int
    sender: str
    message_id: str
    subject: str
    attachment_sha256: str
    raw: bytes


@dataclass
class Kill:
    number: int
    phase: str
    delay: float
    seen_trigger: bool = True
    alive_for: float = 0.0
    snapshot: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        trigger = "" if self.seen_trigger else " (phase line never seen)"
        state = " ".join(f"{k}={v}" for k, v in self.snapshot.items())
        return (f"kill {self.number}: phase={self.phase}{trigger} delay={self.delay:.3f}s "
                f"alive={self.alive_for:.2f}s -> {state}")


@dataclass(frozen=True)
class Delivered:
    """One mail in a recipient's INBOX, with the run (interval between kills) that sent it."""

    user: str
    uid: int
    interval: int
    message_id: str
    subject: str
    in_reply_to: str
    ticket: int | None


def requests(tag: str) -> list[Request]:
    """Distinct requests: no CC (one ack each), no tag, nothing that looks automatic.

    Each carries an attachment of its own, so that kills also land while attachment
    files are written (the store writes them before the transaction commits).
    """
    made = []
    for number in range(1, MESSAGES + 1):
        sender = TEACHERS[number % 2]
        message = EmailMessage()
        message["From"] = f"Teacher {number % 2 + 1} <{sender}>"
        message["To"] = f"Springfield SD Help Desk <{HELP}>"
        message["Subject"] = f"Crash test request {number:03d}: printer in room {100 + number}"
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = f"<crash-{tag}-{number:03d}@mail.teachers.test>"
        message.set_content(f"Hello,\n\nthe printer in room {100 + number} jams on every "
                            f"page. Its log is attached.\n\nRequest number {number}.\n")
        payload = random.Random(f"{tag}-{number}").randbytes(ATTACHMENT_SIZE)
        message.add_attachment(payload, maintype="application", subtype="octet-stream",
                               filename=f"printer-{number:03d}.log")
        made.append(Request(number, sender, message["Message-ID"], message["Subject"],
                            hashlib.sha256(payload).hexdigest(),
                            message.as_bytes(policy=email.policy.SMTP)))
    return made


class DaemonRun:
    """One ``mailhelp run`` process, logging to a file of its own so runs can be told apart."""

    def __init__(self, config: Path, number: int) -> None:
        self.number = number
        self.log_path = config.parent / f"daemon-{number}.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailhelp", "--config", str(config), "run"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=config.parent)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> bool:
        """True once ``text`` is in this run's log; False on timeout or if it exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.01)
        return False

    def kill(self) -> float:
        """SIGKILL: no handler runs, no transaction is finished, no socket is closed politely."""
        alive = time.monotonic() - self.started
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()
        return alive

    def terminate(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(30)
        finally:
            self._log.close()

    def abandon(self) -> None:
        """Cleanup after a failed assertion: never leave a daemon running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


@contextmanager
def database(url: str) -> Iterator[Callable[[str], list]]:
    """Plain SQL against mailhelp's database, one short transaction per query.

    Short transactions matter on SQLite: a reader holding a snapshot open would not block
    the daemon (WAL), but it would keep the WAL from being checkpointed.
    """
    from sqlalchemy import create_engine, text

    engine = create_engine(url)

    def query(sql: str) -> list:
        with engine.connect() as connection:
            return list(connection.execute(text(sql)).all())

    try:
        yield query
    finally:
        engine.dispose()


def snapshot(query: Callable[[str], list], mail) -> dict[str, int]:
    """How far the work got: raw rows by state, tickets, outbox by status, INBOX size."""
    raw = dict(query("SELECT state, COUNT(*) FROM raw_messages GROUP BY state"))
    outbox = dict(query("SELECT status, COUNT(*) FROM outbox GROUP BY status"))
    [(tickets,)] = query("SELECT COUNT(*) FROM tickets")
    return {"inbox": inbox_size(mail), "raw_stored": sum(raw.values()),
            "raw_new": raw.get("new", 0), "raw_processed": raw.get("processed", 0),
            "raw_failed": raw.get("failed", 0), "tickets": tickets,
            "outbox_queued": outbox.get("queued", 0), "outbox_sent": outbox.get("sent", 0)}


def inbox_size(mail) -> int:
    client = mail.imap(HELP)
    try:
        return int(client.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"])
    finally:
        client.logout()


def append_requests(mail, made: list[Request]) -> None:
    # One connection, one APPEND after the other: the mailbox fills in well under a second.
    client = mail.imap(HELP)
    try:
        for request in made:
            client.append("INBOX", request.raw)
    finally:
        client.logout()


def settle(mail, quiet: float = 0.25, timeout: float = 5.0) -> None:
    """Wait until no recipient's INBOX has grown for ``quiet`` seconds."""
    def sizes() -> list[int]:
        found = []
        for user in (*TEACHERS, *STAFF):
            client = mail.imap(user)
            try:
                found.append(int(client.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"]))
            finally:
                client.logout()
        return found

    deadline = time.monotonic() + timeout
    last, since = sizes(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = sizes()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def put_markers(mail, kill_number: int) -> None:
    """A marker in every recipient's INBOX: mail after it (by UID) came from a later run."""
    raw = (f"From: Crash Test <crashtest@school.test>\r\nSubject: marker after kill "
           f"{kill_number}\r\n{MARKER_HEADER}: {kill_number}\r\nMessage-ID: "
           f"<marker-{kill_number}-{time.time_ns()}@crash.test>\r\n\r\nmarker\r\n").encode()
    for user in (*TEACHERS, *STAFF):
        client = mail.imap(user)
        try:
            client.append("INBOX", raw)
        finally:
            client.logout()


def delivered(mail, user: str) -> list[Delivered]:
    """Every mailhelp mail in ``user``'s INBOX, each with the run that delivered it."""
    client = mail.imap(user)
    try:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search("ALL"))
        fetched = client.fetch(uids, ["BODY.PEEK[HEADER]"]) if uids else {}
    finally:
        client.logout()
    found = []
    interval = 0
    for uid in uids:
        headers = email.message_from_bytes(fetched[uid][b"BODY[HEADER]"],
                                           policy=email.policy.compat32)
        if headers[MARKER_HEADER] is not None:
            interval = int(headers[MARKER_HEADER])
            continue
        ticket = headers["X-Mailhelp-Ticket"]
        found.append(Delivered(user, uid, interval, str(headers["Message-ID"]).strip(),
                               str(headers["Subject"] or ""),
                               str(headers["In-Reply-To"] or "").strip(),
                               int(ticket) if ticket else None))
    return found


def folder_message_ids(mail, folder: str) -> list[str]:
    client = mail.imap(HELP)
    try:
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        fetched = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
    finally:
        client.logout()
    ids = []
    for data in fetched.values():
        headers = email.message_from_bytes(data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"],
                                           policy=email.policy.compat32)
        ids.append(str(headers["Message-ID"]).strip())
    return ids


def kill_plan(rng: random.Random) -> list[tuple[str, float]]:
    """6-8 kills: at least one per phase, in the order the work is done (a kill aimed at
    sending first would let the whole batch be applied), one "startup" kill anywhere.
    One more than the five the test asks for: the last is skipped when a fast run has
    finished everything before it."""
    count = rng.randint(6, 8)
    aimed = list(ORDER)
    aimed += rng.choices(ORDER, k=count - len(aimed) - 1)
    aimed.sort(key=ORDER.index)
    aimed.insert(rng.randrange(len(aimed) + 1), "startup")
    plan = []
    for phase in aimed:
        _trigger, low, high = PHASES[phase]
        plan.append((phase, round(rng.uniform(low, high), 3)))
    return plan


def errors(run: DaemonRun) -> str:
    """The first ERROR lines of a run's log: why messages failed."""
    lines = [line for line in run.output().splitlines() if " ERROR " in line]
    return "\n".join(lines[:5]) or run.output()[-3000:]


def wait_for_phase(run: DaemonRun, trigger: str | None, query: Callable[[str], list],
                   batch_size: int, before: dict[str, int]) -> bool:
    """Wait until this run has reached ``trigger``; False if it never did."""
    if trigger is None:
        return True
    if trigger != BATCH_DONE:
        return run.wait_for_log(trigger, TRIGGER_TIMEOUT)
    # Batches are taken in UID order and leave the inbox together, so the batch running
    # now ends when the count of applied messages reaches the next multiple of its size.
    # Polling is slower than the MOVE that follows the last commit, so the trigger is the
    # last message but one: the kill then lands around the last commit, the MOVE and the
    # checkpoint, before or after each. (Unless that message is already applied: then
    # the batch's end is the last commit itself.)
    boundary = min(MESSAGES, (before["raw_processed"] // batch_size + 1) * batch_size)
    target = boundary - 1 if boundary - 1 > before["raw_processed"] else boundary
    deadline = time.monotonic() + TRIGGER_TIMEOUT
    while time.monotonic() < deadline and run.process.poll() is None:
        [(applied,)] = query("SELECT COUNT(*) FROM raw_messages WHERE state = 'processed'")
        if applied >= target:
            return True
        time.sleep(0.005)
    return False


def work_left(state: dict[str, int]) -> set[str]:
    """Phases that still have work to interrupt, judged from a snapshot."""
    left = {"startup"}
    if state["inbox"]:
        left.add("fetch")
    if state["raw_processed"] < MESSAGES:
        left.update(ORDER)  # the batch's mail is sent once it is done
    if state["outbox_queued"]:
        left.add("send")
    return left


def test_sigkill_at_random_moments_loses_nothing_and_duplicates_no_ticket(
        mail, tmp_path, database_url):
    seed = int(os.environ.get("MAILHELP_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    print(f"\ncrash test seed={seed} (MAILHELP_CRASH_SEED={seed} replays the kill plan)")
    # One batch of 200 is the default; batches of 50 also make the daemon move messages,
    # save its UID checkpoint and send while later batches are still being applied.
    batch_size = rng.choice((MESSAGES, 50))
    print(f"imap batch_size={batch_size}")
    # Two teachers with 100 requests each in a minute would hit the hourly limits on
    # automatic mail, and every acknowledgement after the fifth would be suppressed; this
    # test is about crashes, so the limits are set out of the way.
    config = write_config(tmp_path, database_url, mail, extra=f"""
        [imap]
        batch_size = {batch_size}
        [smtp]
        connections = {SMTP_CONNECTIONS}
        [limits]
        auto_mails_per_address = {10 * MESSAGES}
        auto_mails_per_ticket = 100
        """)
    done = mailhelp(config, "init")
    assert done.returncode == 0, done.stderr.decode()

    made = requests(f"{seed}-{time.time_ns()}")
    by_id = {r.message_id: r for r in made}
    started = time.monotonic()
    append_requests(mail, made)
    print(f"appended {MESSAGES} requests in {time.monotonic() - started:.2f}s")

    plan = kill_plan(rng)
    kills: list[Kill] = []
    runs: list[DaemonRun] = []
    with database(database_url) as query:
        try:
            for phase, delay in plan:
                state = snapshot(query, mail) if runs else {"inbox": MESSAGES, "raw_processed": 0,
                                                             "outbox_queued": 0}
                left = work_left(state)
                if left == {"startup"}:
                    break  # everything is done: a further kill would hit an idle daemon
                if phase not in left:
                    # The phase this kill was aimed at is over; aim at one that is not.
                    phase = rng.choice(sorted(left - {"startup"}))
                    _trigger, low, high = PHASES[phase]
                    delay = round(rng.uniform(low, high), 3)
                run = DaemonRun(config, len(runs) + 1)
                runs.append(run)
                seen = wait_for_phase(run, PHASES[phase][0], query, batch_size, state)
                assert run.process.poll() is None, (
                    f"seed={seed}: run {run.number} exited {run.process.returncode} on its "
                    f"own:\n{run.output()}")
                time.sleep(delay)
                kill = Kill(len(kills) + 1, phase, delay, seen)
                kill.alive_for = run.kill()
                # The relay still delivers a mail whose DATA it had received when the client
                # died; the markers must come after such deliveries to attribute them to
                # this run.
                settle(mail)
                put_markers(mail, kill.number)
                kill.snapshot = snapshot(query, mail)
                kills.append(kill)
                print(kill.line())
                # A crash must never make a good message "failed"; stop at once, with the
                # reason, rather than after the remaining kills.
                assert kill.snapshot["raw_failed"] == 0, (
                    f"seed={seed}: run {run.number} failed messages:\n{errors(run)}")

            # Run to completion: one more daemon, watched until the inbox is empty and the
            # outbox has nothing queued.
            final = DaemonRun(config, len(runs) + 1)
            runs.append(final)
            # SIGTERM is handled once the daemon has set itself up; before that it ends the
            # interpreter like any other program (exit -15), which says nothing about mailhelp.
            assert final.wait_for_log("action=imap_connected", 30), final.output()
            deadline = time.monotonic() + COMPLETION_TIMEOUT
            while True:
                state = snapshot(query, mail)
                if (state["inbox"] == 0 and state["outbox_queued"] == 0
                        and state["raw_stored"] >= MESSAGES and state["raw_new"] == 0):
                    break
                assert final.process.poll() is None, (
                    f"seed={seed}: the final run exited {final.process.returncode}:\n"
                    f"{final.output()}")
                assert time.monotonic() < deadline, (
                    f"seed={seed}: not done after {COMPLETION_TIMEOUT:.0f}s: {state}\n"
                    f"{final.output()[-4000:]}")
                time.sleep(0.2)
            print(f"final run {final.number} done after {time.monotonic() - final.started:.2f}s:"
                  f" {state}")
            returncode = final.terminate()
        finally:
            for run in runs:
                run.abandon()
        assert returncode == 0, f"seed={seed}: SIGTERM exit {returncode}:\n{final.output()}"
        assert "action=daemon_stop" in final.output()
        assert len(kills) >= 5, f"seed={seed}: only {len(kills)} kills landed while work was left"

        raw_rows = query("SELECT message_id, state FROM raw_messages")
        requests_recorded = query(
            "SELECT message_id, ticket_id FROM messages WHERE kind = 'request'")
        outbox_rows = query("SELECT ticket_id, kind, message_id, status, recipients FROM outbox")
        attachment_rows = query(
            "SELECT m.message_id, a.sha256, a.size FROM attachments a "
            "JOIN messages m ON m.id = a.message_id WHERE m.kind = 'request'")

    # Exactly one ticket per request, and every request has one.
    listed = mailhelp(config, "tickets", "list", "--json")
    assert listed.returncode == 0, listed.stderr.decode()
    tickets = json.loads(listed.stdout)
    assert len(tickets) == MESSAGES, f"seed={seed}: {len(tickets)} tickets"
    recorded = Counter(message_id for message_id, _t in requests_recorded)
    assert set(recorded) == set(by_id), f"seed={seed}: lost {set(by_id) - set(recorded)}"
    assert max(recorded.values()) == 1, f"seed={seed}: recorded twice: " + str(
        [i for i, n in recorded.items() if n > 1])
    ticket_of = dict(requests_recorded)
    request_of = {ticket: by_id[message_id] for message_id, ticket in requests_recorded}
    assert sorted(request_of) == sorted(t["id"] for t in tickets)
    for ticket in tickets:
        request = request_of[ticket["id"]]
        assert (ticket["requester"], ticket["subject"]) == (request.sender, request.subject)
    # Spot-check the CLI's view of a few tickets against the database's.
    for ticket_id in rng.sample(sorted(ticket_of.values()), 3):
        shown = json.loads(mailhelp(config, "tickets", "show", str(ticket_id), "--json").stdout)
        [request_id] = [m["message_id"] for m in shown["messages"] if m["kind"] == "request"]
        assert ticket_of[request_id] == ticket_id

    # The raw store: one row per message (UID), none stuck in ``new``, none failed.
    raw_states = Counter(state for _i, state in raw_rows)
    assert Counter(i for i, _s in raw_rows) == Counter(set(by_id)), (
        f"seed={seed}: raw rows per Message-ID are not one each")
    assert raw_states == {"processed": MESSAGES}, f"seed={seed}: raw states {raw_states}"

    # Attachments: one per request, recorded once, and the file under its hash is whole.
    from mailhelp.db.storage import AttachmentStore

    store = AttachmentStore(tmp_path / "attachments")
    assert sorted((i, h, n) for i, h, n in attachment_rows) == sorted(
        (r.message_id, r.attachment_sha256, ATTACHMENT_SIZE) for r in made)
    for _i, digest, _n in attachment_rows:
        assert hashlib.sha256(store.get(digest)).hexdigest() == digest

    # The mailbox: all 200 moved to processed, once each; nothing left or failed.
    assert mail.messages(HELP, "INBOX") == []
    processed = Counter(folder_message_ids(mail, "mailhelp/processed"))
    assert set(processed) == set(by_id) and max(processed.values()) == 1, (
        f"seed={seed}: processed folder holds {sum(processed.values())} messages, "
        f"{len(processed)} distinct")
    assert folder_message_ids(mail, "mailhelp/failed") == []

    # The outbox: one ack and one notification per staff member per ticket, all sent.
    per_ticket = Counter((ticket, kind) for ticket, kind, _i, _s, _r in outbox_rows)
    assert len(outbox_rows) == 3 * MESSAGES, f"seed={seed}: {len(outbox_rows)} outbox rows"
    assert per_ticket == Counter({(t, kind): n for t in request_of
                                  for kind, n in (("ack", 1), ("notification", 2))})
    assert {status for *_x, status, _r in outbox_rows} == {"sent"}
    outbox_ids = {message_id for _t, _k, message_id, _s, _r in outbox_rows}

    # What arrived. Every mail mailhelp sent is an outbox row (no mail without a row, so no
    # second acknowledgement was ever enqueued); every row arrived at least once.
    mails = [d for user in (*TEACHERS, *STAFF) for d in delivered(mail, user)]
    copies: dict[tuple[str, str], list[Delivered]] = defaultdict(list)
    for item in mails:
        copies[(item.user, item.message_id)].append(item)
    assert {message_id for _u, message_id in copies} == outbox_ids, (
        f"seed={seed}: delivered mail and outbox rows differ")
    acks = {key: got for key, got in copies.items() if got[0].user in TEACHERS}
    assert len(acks) == MESSAGES
    for request in made:
        ticket = ticket_of[request.message_id]
        [(key, got)] = [(k, g) for k, g in acks.items() if g[0].in_reply_to == request.message_id]
        assert key[0] == request.sender, f"seed={seed}: ack of {request.message_id} to {key[0]}"
        assert got[0].subject.startswith(f"[#{ticket}] "), got[0].subject
        assert got[0].ticket == ticket
    for staff in STAFF:
        assert sum(1 for user, _i in copies if user == staff) == MESSAGES

    # Duplicates: where each came from. The first copy must come from a run that was killed,
    # every copy from a different run, and no kill may account for more than one mail per
    # SMTP connection (the mails that were between the server's 250 and the commit).
    duplicated = {key: got for key, got in copies.items() if len(got) > 1}
    ack_duplicates = sum(len(got) - 1 for key, got in duplicated.items() if key in acks)
    all_duplicates = sum(len(got) - 1 for got in duplicated.values())
    by_kill: Counter[int] = Counter()
    for (user, message_id), got in duplicated.items():
        intervals = [d.interval for d in got]
        assert intervals == sorted(set(intervals)), (
            f"seed={seed}: {message_id} to {user} delivered twice by one run: {intervals}")
        assert intervals[0] < len(kills), (
            f"seed={seed}: {message_id} to {user}: first copy from the final run, unkilled")
        for interval in intervals[:-1]:
            by_kill[interval + 1] += 1
            print(f"  kill {interval + 1} ({kills[interval].phase}): "
                  f"{got[0].subject[:40]!r} to {user} delivered again by run "
                  f"{intervals[intervals.index(interval) + 1] + 1}")
    print(f"kills={len(kills)} duplicated acknowledgements={ack_duplicates} "
          f"duplicated mails (acks + staff notifications)={all_duplicates} "
          f"by kill={dict(sorted(by_kill.items()))}")
    for kill_number, count in by_kill.items():
        phase = kills[kill_number - 1].phase
        assert count <= SMTP_CONNECTIONS, (
            f"seed={seed}: kill {kill_number} ({phase}) duplicated {count} mails")
    assert ack_duplicates <= len(kills) * SMTP_CONNECTIONS

    # Restarting after a kill needed no help: no run logged an error (a locked database,
    # a lost connection that did not come back, a failed send loop).
    logged = [f"run {run.number}: {line}" for run in runs
              for line in run.output().splitlines() if " ERROR " in line]
    assert not logged, f"seed={seed}:\n" + "\n".join(logged[:10])

    # Nothing more to do: a pass changes nothing and sends nothing.
    again = mailhelp(config, "run", "--once")
    assert again.returncode == 0, again.stderr.decode()
    assert b"processed 0 message(s)" in again.stdout and b"sent 0 mail(s)" in again.stdout
