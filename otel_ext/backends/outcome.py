"""Typed results of one delivery attempt. Backends return these instead of raising across layers;
the sender reacts to the class, not just to "error"."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OutcomeKind(enum.Enum):
    OK = "ok"
    RETRYABLE = "retryable"  # refused, UNAVAILABLE, 502/503/504, timeouts: try the next backend now
    THROTTLED = "throttled"  # 429, RESOURCE_EXHAUSTED: pause this backend for retry_after seconds
    AUTH = "auth"  # 401/403, UNAUTHENTICATED/PERMISSION_DENIED: loud error once, keep the data
    PERMANENT = "permanent"  # 400, INVALID_ARGUMENT: the payload itself is refused -> dead-letter store
    PARTIAL = "partial"  # accepted, but the receiver rejected `rejected` records (OTLP partial_success)


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    message: str = ""
    retry_after: float | None = None
    rejected: int = 0
    # per-item permanent rejections (Elasticsearch bulk): an OTLP request of just those records,
    # kept in the dead-letter store while the rest of the entry counts as delivered
    dead_letter: bytes | None = None

    @property
    def delivered(self) -> bool:
        return self.kind in (OutcomeKind.OK, OutcomeKind.PARTIAL)

    @classmethod
    def ok(cls) -> Outcome:
        return _OK

    @classmethod
    def retryable(cls, message: str) -> Outcome:
        return cls(OutcomeKind.RETRYABLE, message)

    @classmethod
    def throttled(cls, message: str, retry_after: float | None) -> Outcome:
        return cls(OutcomeKind.THROTTLED, message, retry_after)

    @classmethod
    def auth(cls, message: str) -> Outcome:
        return cls(OutcomeKind.AUTH, message)

    @classmethod
    def permanent(cls, message: str) -> Outcome:
        return cls(OutcomeKind.PERMANENT, message)

    @classmethod
    def partial(cls, rejected: int, message: str, dead_letter: bytes | None = None) -> Outcome:
        return cls(OutcomeKind.PARTIAL, message, rejected=rejected, dead_letter=dead_letter)


_OK = Outcome(OutcomeKind.OK)


def parse_retry_after(value: str | None, default: float | None = None) -> float | None:
    """Seconds from an HTTP Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default
