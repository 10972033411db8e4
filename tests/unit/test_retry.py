"""retry.decide: what becomes of an outbox row after a refusal, without database or
network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailhelp.delivery.retry import RetryPolicy, decide
from mailhelp.delivery.transport import Failure, by_code
from mailhelp.states import OutboxStatus

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
POLICY = RetryPolicy(delay=timedelta(minutes=1), max_attempts=3)
BUSY = Failure(True, "451 4.3.0 try later")
UNKNOWN = Failure(False, "550 5.1.1 no such user")


def test_a_temporary_refusal_is_retried_after_the_delay():
    decision = decide(1, ["a@x"], {"a@x": BUSY}, POLICY, NOW)
    assert decision.status is OutboxStatus.QUEUED and decision.retries
    assert decision.retry_at == NOW + timedelta(minutes=1)
    assert decision.recipients == ("a@x",) and decision.reason == BUSY.reason
    assert decision.refused == "" and not decision.gave_up


def test_the_delay_doubles_with_each_attempt_up_to_an_hour():
    policy = RetryPolicy(delay=timedelta(minutes=1), max_attempts=12)
    delays = [decide(n, ["a@x"], {"a@x": BUSY}, policy, NOW).delay for n in (1, 2, 3, 7, 11)]
    assert delays == [timedelta(minutes=m) for m in (1, 2, 4, 60, 60)]


def test_temporary_refusals_give_up_at_max_attempts():
    decision = decide(3, ["a@x"], {"a@x": BUSY}, POLICY, NOW)
    assert decision.status is OutboxStatus.FAILED and decision.gave_up
    assert decision.reason == BUSY.reason and decision.retry_at is None


def test_a_permanent_refusal_of_everyone_fails_at_once_naming_them():
    decision = decide(1, ["a@x", "b@x"], {"a@x": UNKNOWN, "b@x": UNKNOWN}, POLICY, NOW)
    assert decision.status is OutboxStatus.FAILED and not decision.gave_up
    assert decision.refused == f"a@x: {UNKNOWN.reason}; b@x: {UNKNOWN.reason}"
    assert decision.reason == f"{UNKNOWN.reason}; {UNKNOWN.reason}"


def test_a_mail_some_recipients_took_is_sent_to_them():
    decision = decide(1, ["a@x", "b@x"], {"b@x": UNKNOWN}, POLICY, NOW)
    assert decision.status is OutboxStatus.SENT
    assert decision.recipients == ("a@x",) and decision.refused == f"b@x: {UNKNOWN.reason}"


def test_only_the_temporarily_refused_are_tried_again():
    decision = decide(1, ["a@x", "b@x", "c@x"], {"a@x": UNKNOWN, "c@x": BUSY}, POLICY, NOW)
    assert decision.status is OutboxStatus.QUEUED and decision.recipients == ("c@x",)
    assert decision.refused == f"a@x: {UNKNOWN.reason}" and decision.reason == BUSY.reason


def test_the_policy_is_the_configs():
    from mailhelp.config import SmtpConfig

    config = SmtpConfig(host="h", retry_delay=timedelta(seconds=30), max_attempts=12)
    assert RetryPolicy.of(config) == RetryPolicy(timedelta(seconds=30), 12)


def test_an_answer_is_permanent_only_in_the_5xx_range():
    assert by_code(451, "busy") == Failure(True, "451 busy")
    assert by_code(550, "no") == Failure(False, "550 no") and by_code(550, "no").permanent
    assert by_code(421, "").temporary
