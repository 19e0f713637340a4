"""When to retry an AtHoc request and how long to wait: backoff and Retry-After arithmetic (pure)."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable

# Statuses worth another attempt: the server may answer differently in a moment.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
# A Retry-After above this fails the call at once (transient): see RetryingCaller.call for why it is not slept.
RETRY_AFTER_CAP_SECONDS = 60.0
# 429 without Retry-After: the limit is per time window, so a retry sooner than this is a likely 429 again.
THROTTLED_MIN_WAIT_SECONDS = 1.0


def backoff_delay(
    retry: int, *, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS, rng: Callable[[], float]
) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**retry)] so many waiting callers spread out."""
    ceiling: float = min(cap, base * 2.0 ** min(retry, 32))
    return rng() * ceiling


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable.

    `now` is the wall-clock time (time.time()) an HTTP-date is compared with.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def retry_wait(retry: int, retry_after: float | None, *, rng: Callable[[], float], throttled: bool = False) -> float:
    """How long to wait before retry number `retry` (0-based): Retry-After (capped) when given, else backoff
    (at least THROTTLED_MIN_WAIT_SECONDS after a 429)."""
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP_SECONDS)
    delay = backoff_delay(retry, rng=rng)
    return max(delay, THROTTLED_MIN_WAIT_SECONDS) if throttled else delay
