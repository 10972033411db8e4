"""Is this a person writing, or a machine? Pure: an Inbound in, a Verdict out.

Answering a machine is how help desks start mail loops, so anything that looks
automatic gets no automatic answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..desk.threads import is_help_address
from .parse import Inbound

HUMAN = "human"
AUTO_REPLY = "auto_reply"
BOUNCE = "bounce"
LOOP = "loop"
SPAM = "spam"

_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?(reply|response|antwort)|out of (the )?office"
    r"|abwesenheitsnotiz|r[ée]ponse automatique|fuera de la oficina|autosvar)\b",
    re.I,
)
_BOUNCE_SENDER = re.compile(r"^(mailer[-_]?daemon|post[-_]?master|mail[-_]?daemon|"
                            r"mail[-_]?delivery[-_]?(subsystem|system)?|bounces?)(@|$)", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(undeliver(ed|able)|delivery (status notification|failure|has failed|report)|"
    r"mail delivery (failed|failure|system)|returned mail|failure notice|"
    r"(message|mail) (not delivered|delivery failure)|non[- ]?delivery|"
    r"unzustellbar|nicht zustellbar|warning: could not send|delayed mail|"
    r"mail system error|could not send message)", re.I)


@dataclass(frozen=True)
class Verdict:
    kind: str
    reason: str

    @property
    def automatic(self) -> bool:
        return self.kind != HUMAN


def classify(inbound: Inbound, help_address: str, spam_header: str = "x-spam-score",
             spam_threshold: float = 5.0) -> Verdict:
    """The first rule that matches decides; the reason names it."""
    for rule in RULES:
        verdict = rule(inbound, help_address.lower())
        if verdict:
            return verdict
    return _spam_score(inbound, spam_header.lower(), spam_threshold) or \
        Verdict(HUMAN, "no automatic marks")


def _own_mail(inbound: Inbound, help_address: str) -> Verdict | None:
    if is_help_address(inbound.sender.address, help_address):
        return Verdict(LOOP, "sent from the help address itself")
    if help_address in (v.lower() for v in inbound.headers.get("x-mailhelp-loop", ())):
        return Verdict(LOOP, "carries our X-Mailhelp-Loop header")
    return None


def _report(inbound: Inbound, _help: str) -> Verdict | None:
    content_type = inbound.header("content-type").lower()
    if "multipart/report" in content_type and "delivery-status" in content_type:
        return Verdict(BOUNCE, "delivery status notification (multipart/report)")
    if inbound.header("x-failed-recipients"):
        return Verdict(BOUNCE, "X-Failed-Recipients header")
    if "multipart/report" in content_type and "feedback-report" in content_type:
        return Verdict(AUTO_REPLY, "abuse feedback report (ARF)")
    if "multipart/report" in content_type and "disposition-notification" in content_type:
        return Verdict(AUTO_REPLY, "read receipt (MDN)")
    return None


def _bounce(inbound: Inbound, _help: str) -> Verdict | None:
    # Weaker signs, checked after the auto-reply marks: RFC 3834 asks auto-replies
    # to use a null return path too.
    sender = inbound.sender
    if _BOUNCE_SENDER.match(sender.address) or _BOUNCE_SENDER.match(sender.name):
        return Verdict(BOUNCE, f"sent by {sender.address or sender.name}")
    if _BOUNCE_SUBJECT.match(inbound.subject):
        return Verdict(BOUNCE, "delivery-failure subject")
    if inbound.header("return-path").strip() == "<>":
        return Verdict(BOUNCE, "null return path")
    return None


def _auto_reply(inbound: Inbound, _help: str) -> Verdict | None:
    auto_submitted = inbound.header("auto-submitted").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return Verdict(AUTO_REPLY, f"Auto-Submitted: {auto_submitted}")
    for name in ("x-autoreply", "x-autorespond"):
        if inbound.header(name):
            return Verdict(AUTO_REPLY, f"{name} header")
    precedence = inbound.header("precedence").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return Verdict(AUTO_REPLY, f"Precedence: {precedence}")
    for name in ("list-id", "list-unsubscribe"):
        if inbound.header(name):
            return Verdict(AUTO_REPLY, f"{name} header (mailing list)")
    suppress = inbound.header("x-auto-response-suppress").strip().lower()
    if suppress in ("oof", "all", "autoreply") and _AUTO_SUBJECT.match(inbound.subject):
        return Verdict(AUTO_REPLY, "Exchange out-of-office")
    if _AUTO_SUBJECT.match(inbound.subject):
        return Verdict(AUTO_REPLY, "automatic-reply subject")
    return None


def _spam(inbound: Inbound, _help: str) -> Verdict | None:
    if inbound.header("x-spam-flag").strip().upper() == "YES":
        return Verdict(SPAM, "X-Spam-Flag: YES")
    if inbound.header("x-spam-status").strip().lower().startswith("yes"):
        return Verdict(SPAM, "X-Spam-Status: Yes")
    return None


_SCORE = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _spam_score(inbound: Inbound, header: str, threshold: float) -> Verdict | None:
    # "7.3", "7.3 / 5.0" (rspamd) or "score=7.3 required=5.0" all start with the score.
    found = _SCORE.search(inbound.header(header))
    if found and float(found.group(0)) >= threshold:
        return Verdict(SPAM, f"{header} {found.group(0)} >= {threshold:g}")
    return None


RULES = (_own_mail, _report, _auto_reply, _bounce, _spam)
