"""What to do after an attempt to send one outbox row: a pure decision, as a value.

``decide`` looks at nothing but its arguments (no database, no network, no clock), in
the manner of procrastinate's ``RetryStrategy.get_retry_decision``; the worker carries
the decision out. Recipients refused for good are dropped (and named on the ticket);
those refused for now are tried again with a delay that doubles each time, up to
``RetryPolicy.longest``, until the attempts run out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config import SmtpConfig
from ..states import OutboxStatus
from .transport import Failure

MAX_RETRY_DELAY = timedelta(hours=1)


@dataclass(frozen=True)
class RetryPolicy:
    """``[smtp] retry_delay`` and ``max_attempts``."""

    delay: timedelta
    max_attempts: int
    longest: timedelta = MAX_RETRY_DELAY

    @classmethod
    def of(cls, config: SmtpConfig) -> RetryPolicy:
        return cls(config.retry_delay, config.max_attempts)

    def delay_after(self, attempts: int) -> timedelta:
        return min(self.delay * 2 ** (attempts - 1), self.longest)


@dataclass(frozen=True)
class RetryDecision:
    """What becomes of an outbox row after an attempt that was not a plain success.

    ``status`` QUEUED: try ``recipients`` again at ``retry_at``; FAILED: give up;
    SENT: every recipient not refused for good took it. ``refused`` names the
    recipients refused for good with their reasons ("" if none); ``gave_up`` says that
    temporary refusals ran out of attempts; ``reason`` is the row's last error.
    """

    status: OutboxStatus
    attempts: int
    reason: str = ""
    refused: str = ""
    recipients: tuple[str, ...] = ()
    retry_at: datetime | None = None
    delay: timedelta | None = None
    gave_up: bool = False

    @property
    def retries(self) -> bool:
        return self.status is OutboxStatus.QUEUED


def decide(attempts: int, recipients: Sequence[str], refused: Mapping[str, Failure],
           policy: RetryPolicy, now: datetime) -> RetryDecision:
    """The decision after attempt number ``attempts`` (this one counted) to send to
    ``recipients``, of whom ``refused`` were refused (a transport error refuses all)."""
    retry = tuple(r for r in recipients if r in refused and refused[r].temporary)
    permanent = {r: f for r, f in refused.items() if f.permanent}
    named = "; ".join(f"{r}: {f.reason}" for r, f in permanent.items())
    if retry and attempts < policy.max_attempts:
        delay = policy.delay_after(attempts)
        return RetryDecision(OutboxStatus.QUEUED, attempts, refused[retry[0]].reason, named,
                             retry, now + delay, delay)
    if retry or len(permanent) == len(recipients):
        return RetryDecision(OutboxStatus.FAILED, attempts,
                             "; ".join(f.reason for f in refused.values()), named,
                             gave_up=bool(retry))
    return RetryDecision(OutboxStatus.SENT, attempts, refused=named,
                         recipients=tuple(r for r in recipients if r not in refused))
