"""AtHoc retries against the simulator over real HTTP: 429/5xx, Retry-After, dropped connections,
budgets and deadlines, client errors not retried."""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable

import pytest

from shared.athoc import AtHocClient, AtHocError, RowStatus
from shared.errors import ErrorKind
from tests.integration.athoc_support import (
    COLLAR,
    WHEN,
    FakeTime,
    statuses,
)
from tools.athoc_sim import AtHocSimulator

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("clean_environment")]


def test_429_with_retry_after_is_honoured(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    client = make_client(sim)
    sim.fail_next(1, status=429, retry_after=1, kinds=("sync",))
    report = client.sync_duty_values([("alice", WHEN)])
    assert statuses(report) == [RowStatus.UPDATED]
    assert fake_time.sleeps == [1.0]
    assert report.requests == 2
    assert sim.history("alice") == [WHEN]


def test_retry_after_as_http_date(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    client = make_client(sim)
    when = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5), usegmt=True)
    sim.fail_next(1, status=503, retry_after=when, kinds=("search",))
    client.search_users([COLLAR])
    assert len(fake_time.sleeps) == 1
    assert 2.5 <= fake_time.sleeps[0] <= 5.0


def test_retry_after_above_the_cap_fails_at_once_and_never_past_the_deadline(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    client = make_client(sim, call_budget_seconds=300)
    sim.fail_next(1, status=429, retry_after=3600, kinds=("sync",))
    report = client.sync_duty_values([("alice", WHEN)])
    assert statuses(report) == [RowStatus.FAILED]
    assert report.rows[0].transient and report.rows[0].kind is ErrorKind.THROTTLED
    assert "3600 s" in report.rows[0].detail
    assert fake_time.sleeps == [] and sim.count("sync") == 1  # no retry into a certain 429

    sim.fail_next(1, status=429, retry_after=60, kinds=("sync",))  # at the cap: honoured
    assert statuses(client.sync_duty_values([("alice", WHEN)])) == [RowStatus.UPDATED]
    assert fake_time.sleeps == [60.0]

    sim.fail_next(1, status=429, retry_after=30, kinds=("sync",))
    report = client.sync_duty_values([("bob", WHEN)], deadline=fake_time.clock() + 10)
    assert statuses(report) == [RowStatus.FAILED]
    assert report.rows[0].transient and report.rows[0].kind is ErrorKind.THROTTLED
    assert fake_time.sleeps == [60.0]  # giving up at once beats sleeping past the deadline


def test_429_without_retry_after_waits_at_least_a_second(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    client = make_client(sim)
    sim.fail_next(3, status=429, kinds=("search",))
    assert len(client.search_users([COLLAR])) == 4
    assert len(fake_time.sleeps) == 3 and min(fake_time.sleeps) >= 1.0
    sim.fail_next(1, status=503, kinds=("search",))  # other transient statuses keep plain full jitter
    client.search_users([COLLAR])
    assert 0 <= fake_time.sleeps[-1] <= 0.5


def test_503_twice_then_success(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    client = make_client(sim)
    sim.fail_next(2, status=503, kinds=("sync",))
    report = client.sync_duty_values([("alice", WHEN), ("bob", "")])
    assert statuses(report) == [RowStatus.UPDATED, RowStatus.UPDATED]
    assert report.requests == 3
    assert sim.count("sync") == 3
    # Full jitter: each wait within [0, 0.5 * 2**retry].
    assert len(fake_time.sleeps) == 2
    assert 0 <= fake_time.sleeps[0] <= 0.5 and 0 <= fake_time.sleeps[1] <= 1.0


@pytest.mark.parametrize("after_apply", [False, True])
def test_dropped_connection_then_success(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], after_apply: bool
) -> None:
    client = make_client(sim)
    client.search_users([COLLAR])  # an open pooled connection that the drop will kill
    sim.drop_next(1, kinds=("sync",), after_apply=after_apply)
    report = client.sync_duty_values([("alice", WHEN)])
    assert statuses(report) == [RowStatus.UPDATED]
    assert sim.count("sync") == 2
    assert report.requests == 2
    # Re-sending the same value is harmless: the update is idempotent.
    assert sim.history("alice") == [WHEN, WHEN] if after_apply else [WHEN]


def test_retries_are_bounded_by_max_retries(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    client = make_client(sim, max_retries=2)
    sim.fail_next(10, status=502, kinds=("search",))
    with pytest.raises(AtHocError) as caught:
        client.search_users([COLLAR])
    assert caught.value.transient and caught.value.kind is ErrorKind.SERVER and caught.value.status == 502
    assert sim.count("search") == 3
    assert len(fake_time.sleeps) == 2


def test_read_timeouts_stay_within_the_call_budget(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    client = make_client(sim, read_timeout=0.2, call_budget_seconds=1.0, max_retries=20)
    client.check_connection()  # the token first, so only the update meets the latency
    sim.reset_log()
    sim.latency = 0.6
    report = client.sync_duty_values([("alice", WHEN)])
    assert statuses(report) == [RowStatus.FAILED]
    assert report.rows[0].transient
    assert report.rows[0].kind in (ErrorKind.NETWORK, ErrorKind.BUDGET)
    assert "timeout" in report.rows[0].detail or "out of time" in report.rows[0].detail
    # Retried, but only as often as the 1 s budget allows (20 retries were permitted): counted, not timed.
    assert 2 <= report.requests <= 6
    time.sleep(0.7)  # the simulator records a request once its (late) answer is written
    assert sim.count("sync") == report.requests


def test_nothing_starts_past_the_deadline(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    client = make_client(sim, sync_chunk_size=2)
    report = client.sync_duty_values([("alice", WHEN), ("bob", WHEN), ("carol", WHEN)], deadline=fake_time.clock())
    assert statuses(report) == [RowStatus.FAILED] * 3
    assert all(row.transient and row.kind is ErrorKind.BUDGET for row in report.rows)
    assert report.requests == 0
    assert sim.requests == []
    with pytest.raises(AtHocError) as caught:
        client.search_users([COLLAR], deadline=fake_time.clock() - 1)
    assert caught.value.kind is ErrorKind.BUDGET and caught.value.transient


@pytest.mark.parametrize(("status", "kind"), [(400, ErrorKind.CLIENT), (403, ErrorKind.AUTH), (404, ErrorKind.CLIENT)])
def test_client_errors_are_not_retried(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime, status: int, kind: ErrorKind
) -> None:
    client = make_client(sim, sync_chunk_size=1)
    sim.fail_next(1, status=status, kinds=("sync",))
    report = client.sync_duty_values([("alice", WHEN), ("bob", WHEN)])
    assert report.rows[0].status == RowStatus.FAILED
    assert not report.rows[0].transient and report.rows[0].kind is kind
    assert str(status) in report.rows[0].detail
    assert fake_time.sleeps == []
    if kind is ErrorKind.CLIENT:  # this chunk's problem only: the next chunk goes through
        assert report.rows[1].status == RowStatus.UPDATED
        assert sim.count("sync") == 2
    else:  # a missing role fails every chunk: stop
        assert report.rows[1].status == RowStatus.FAILED
        assert sim.count("sync") == 1

    sim.fail_next(1, status=status, kinds=("search",))
    with pytest.raises(AtHocError) as caught:
        client.search_users([COLLAR])
    assert caught.value.status == status and not caught.value.transient
    assert fake_time.sleeps == []


def test_unknown_search_field_is_a_400_naming_it(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    with pytest.raises(AtHocError) as caught:
        make_client(sim).search_users(["Not-A-Field"])
    assert caught.value.status == 400 and caught.value.kind is ErrorKind.CLIENT
    assert "Not-A-Field" in str(caught.value)
    assert sim.count("search") == 1
