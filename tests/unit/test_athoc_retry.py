"""Backoff and Retry-After arithmetic of the AtHoc client (shared.athoc.retry), pure."""

from __future__ import annotations

import email.utils
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.athoc.retry import (
    BACKOFF_CAP_SECONDS,
    RETRY_AFTER_CAP_SECONDS,
    THROTTLED_MIN_WAIT_SECONDS,
    backoff_delay,
    parse_retry_after,
    retry_wait,
)

NOW = 1_750_000_000.0


# ---------------------------------------------------------------- Retry-After and backoff


@pytest.mark.parametrize(
    ("header", "expected"),
    [("1", 1.0), (" 120 ", 120.0), ("0", 0.0), ("-5", 0.0), ("2.5", 2.5), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_retry_after_http_date() -> None:
    future = email.utils.formatdate(NOW + 30, usegmt=True)
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(future, now=NOW) == pytest.approx(30.0)
    assert parse_retry_after(past, now=NOW) == 0.0
    assert parse_retry_after("Wed, 99 Foo 2024 25:61:00 GMT", now=NOW) is None


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    assert retry_wait(0, 7.0, rng=lambda: 1.0) == 7.0
    assert retry_wait(3, 3600.0, rng=lambda: 1.0) == RETRY_AFTER_CAP_SECONDS
    assert retry_wait(0, None, rng=lambda: 1.0) == 0.5


def test_throttled_without_retry_after_waits_at_least_the_floor() -> None:
    assert retry_wait(0, None, rng=lambda: 0.0, throttled=True) == THROTTLED_MIN_WAIT_SECONDS
    assert retry_wait(0, None, rng=lambda: 1.0, throttled=True) == THROTTLED_MIN_WAIT_SECONDS
    assert retry_wait(4, None, rng=lambda: 1.0, throttled=True) == 8.0  # backoff above the floor stays
    assert retry_wait(0, 0.2, rng=lambda: 1.0, throttled=True) == 0.2  # the server's own Retry-After wins
    assert retry_wait(0, None, rng=lambda: 0.0) == 0.0  # not throttled: plain full jitter


def test_backoff_is_exponential_full_jitter_and_capped() -> None:
    assert [backoff_delay(n, rng=lambda: 1.0) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(4, rng=lambda: 0.0) == 0.0
    assert backoff_delay(10_000, rng=lambda: 1.0) == BACKOFF_CAP_SECONDS


@given(st.integers(min_value=0, max_value=200), st.floats(min_value=0, max_value=1, exclude_max=True))
def test_backoff_always_within_bounds(retry: int, draw: float) -> None:
    delay = backoff_delay(retry, rng=lambda: draw)
    assert 0 <= delay <= min(BACKOFF_CAP_SECONDS, 0.5 * 2**retry)


def test_parse_retry_after_uses_the_given_wall_clock() -> None:
    header = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= (parse_retry_after(header, now=time.time()) or 0) <= 10
