"""Benchmark 1: time to acknowledgement with the daemon idle in IMAP IDLE.

``mailhelp run`` (a subprocess) waits in IDLE on help@'s INBOX; teacher mail is sent by
SMTP to the relay, which delivers it into Dovecot over LMTP before it answers DATA, at a
steady rate. Per message: from the relay's answer to DATA to the arrival at the sink of
the first mail that answers it (In-Reply-To = its Message-ID): the acknowledgement for
a new request, the first staff notification for a reply. Replies answer the
acknowledgement of their request ("Re: [#N] ...") once it has arrived.

Ceiling: Dovecot's own IDLE notification delay on the same setup, measured with a bare
imapclient IDLE loop while mail is delivered the same way at the same rate.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from .ceilings import idle_delays
from .harness import HELP, STAFF, Bench, Database, SmtpClient, mailhelp
from .teachermail import ATTACHMENT, NEW, TeacherMail

_TAG = re.compile(r"\[#(\d+)\]")


@dataclass
class AckRun:
    acks: list[float] = field(default_factory=list)  # new requests -> acknowledgement
    notifications: list[float] = field(default_factory=list)  # replies -> staff notice
    problems: list[str] = field(default_factory=list)


def one_run(bench: Bench, count: int, rate: float, seed: int) -> AckRun:
    mail, sink = bench.mail, bench.sink
    directory = bench.workdir("ack")
    db = Database("sqlite", directory)
    bench.reset_help_mailbox()
    config = bench.config(directory, db.url)
    mailhelp(config, "init")
    sink.reset()
    result = AckRun()
    daemon = bench.start_daemon(config)
    smtp = SmtpClient(mail.smtp_host, mail.smtp_port)
    try:
        time.sleep(1.0)  # connected; let it settle into IDLE

        def ticket_of(message_id: str) -> tuple[int, str] | None:
            for arrival in sink.answers_to(message_id):
                found = _TAG.search(arrival.subject)
                if found and not set(arrival.recipients) & set(STAFF):
                    return int(found.group(1)), arrival.message_id
            return None

        generator = TeacherMail(seed)
        sent = []
        start = time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            message = generator.next(ticket_of)
            sent.append((message, smtp.send(message.sender, HELP, message.raw)))
        expected = sum(m.expected_mails for m, _ in sent)
        if not sink.wait_for(expected, timeout=60):
            result.problems.append(f"{sink.count} of {expected} mails at the sink")
        time.sleep(1.0)  # anything extra would arrive now
        if sink.count != expected:
            result.problems.append(f"sink got {sink.count} mails, expected {expected}")
    finally:
        smtp.close()
        code = bench.stop_daemon(daemon)
        if code != 0:
            result.problems.append(f"daemon exited {code}")
    for message, ended in sent:
        if not message.expected_mails:
            continue
        answers = sink.answers_to(message.message_id)
        if message.kind in (NEW, ATTACHMENT):
            answers = [a for a in answers if message.sender in a.recipients]
            target = result.acks
        else:
            target = result.notifications
        if answers:
            target.append(answers[0].at - ended)
        else:
            result.problems.append(f"no answer to message {message.index} ({message.kind})")
    return result


def idle_ceiling(bench: Bench, count: int, rate: float, seed: int) -> list[float]:
    """Dovecot's IDLE notification delays for ``count`` deliveries at ``rate`` per second."""
    mail = bench.mail
    bench.reset_help_mailbox()
    generator = TeacherMail(seed)
    messages = [m.raw for m in generator.messages(count)]
    smtp = SmtpClient(mail.smtp_host, mail.smtp_port)
    try:
        return idle_delays(mail, lambda raw: smtp.send("teacher@school.test", HELP, raw),
                           messages, rate)
    finally:
        smtp.close()
