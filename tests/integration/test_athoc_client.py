"""AtHocClient against the AtHoc simulator (and two tiny purpose-built servers) over real HTTP on loopback.

Nothing in requests is patched: faults come from the simulator. Backoff sleeps go through an injected
sleep that records the wait and advances a virtual clock, so retries are instant but deadlines hold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import http.client
import ipaddress
import json
import logging
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import pytest
import requests

from shared.athoc_client import (
    AtHocAuthError,
    AtHocClient,
    AtHocError,
    RowStatus,
    SyncReport,
)
from shared.settings import AtHocSettings
from tools.athoc_sim import OMIT_LOGIN, AtHocSimulator

pytestmark = pytest.mark.timeout(60)

PASSWORD = "sim-password-Zq81"
CLIENT_SECRET = "sim-client-secret-Xw42"
DUTY = "On-Duty-DTG"
COLLAR = "Collar-Number"
WHEN = "17/06/2024 14:30:00"
BASE_SCOPE = "openid profile athoc.iws.web.api"
OFFLINE_SCOPE = BASE_SCOPE + " offline_access"
_ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class FakeTime:
    """Real monotonic time plus whatever the client 'slept': backoff is instant, budgets still count."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Proxies or CA bundles of the machine running the tests must not change what loopback tests see.
    for name in _ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def make_sim() -> Iterator[Callable[..., AtHocSimulator]]:
    started: list[AtHocSimulator] = []

    def make(**options: Any) -> AtHocSimulator:
        options.setdefault("password", PASSWORD)
        options.setdefault("client_secret", CLIENT_SECRET)
        sim = AtHocSimulator(**options).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: Callable[..., AtHocSimulator]) -> AtHocSimulator:
    simulator = make_sim()
    for login in ("alice", "bob", "carol", "dave"):
        simulator.add_user(login, collar=str(len(login)))
    return simulator


def settings_for(url: str, **overrides: Any) -> AtHocSettings:
    base = AtHocSettings(
        server_url=url,
        org_code="DEMO",
        client_id="bobo-sync",
        client_secret=CLIENT_SECRET,
        username="svc-bobo",
        password=PASSWORD,
        scope=BASE_SCOPE,
        duty_field=DUTY,
        collar_field=COLLAR,
        datetime_format="%d/%m/%Y %H:%M:%S",
        verify_tls=True,
        ca_bundle=None,
        sync_chunk_size=1000,
        page_size=1000,
        connect_timeout=2.0,
        read_timeout=5.0,
        call_budget_seconds=20.0,
        max_retries=5,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_client(fake_time: FakeTime) -> Iterator[Callable[..., AtHocClient]]:
    clients: list[AtHocClient] = []

    def make(target: AtHocSimulator | str, *, session: requests.Session | None = None, **overrides: Any) -> AtHocClient:
        url = target if isinstance(target, str) else target.url
        client = AtHocClient(
            settings_for(url, **overrides), session=session, sleep=fake_time.sleep, clock=fake_time.clock
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def grants(sim: AtHocSimulator) -> list[str]:
    return [r.body["grant_type"] for r in sim.requests if r.kind == "token" and isinstance(r.body, dict)]


def statuses(report: SyncReport) -> list[RowStatus]:
    return [row.status for row in report.rows]


def sync_bodies(sim: AtHocSimulator) -> list[list[dict[str, Any]]]:
    return [r.body for r in sim.requests if r.kind == "sync"]


# ---------------------------------------------------------------- tokens


def test_one_token_serves_many_calls(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    client = make_client(sim)
    for _ in range(3):
        client.sync_duty_values([("alice", WHEN)])
        client.search_users([COLLAR])
    assert sim.count("token") == 1
    assert sim.count("sync") == 3
    assert sim.count("search") == 3
    # The password grant as documented: tenant in acr_values, the configured scope, form-encoded.
    token_request = next(r for r in sim.requests if r.kind == "token")
    assert token_request.body["acr_values"] == "tenant:DEMO"
    assert token_request.body["scope"] == BASE_SCOPE
    assert token_request.body["username"] == "svc-bobo"


def test_token_renewed_shortly_before_expiry(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    sim = make_sim(expires_in=100)
    sim.add_user("alice")
    client = make_client(sim)
    client.sync_duty_values([("alice", WHEN)])
    fake_time.advance(85)  # the renewal margin is 10 % of the lifetime: 10 s
    client.sync_duty_values([("alice", WHEN)])
    assert sim.count("token") == 1
    fake_time.advance(10)  # 95 s: within the margin
    client.sync_duty_values([("alice", WHEN)])
    assert grants(sim) == ["password", "password"]  # no refresh token without offline_access


def test_refresh_grant_used_when_the_server_gave_a_refresh_token(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    sim = make_sim(expires_in=100)
    sim.add_user("alice")
    client = make_client(sim, scope=OFFLINE_SCOPE)
    client.sync_duty_values([("alice", WHEN)])
    for _ in range(2):  # refresh tokens rotate: the second refresh must use the new one
        fake_time.advance(95)
        report = client.sync_duty_values([("alice", WHEN)])
        assert statuses(report) == [RowStatus.UPDATED]
    assert grants(sim) == ["password", "refresh_token", "refresh_token"]
    assert all(r.status == 200 for r in sim.requests if r.kind == "token")


def test_failed_refresh_falls_back_to_the_password_grant(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    sim = make_sim(expires_in=100)
    sim.add_user("alice")
    client = make_client(sim, scope=OFFLINE_SCOPE)
    client.sync_duty_values([("alice", WHEN)])
    sim.revoke_tokens()  # the refresh token dies with the access token
    fake_time.advance(95)
    report = client.sync_duty_values([("alice", WHEN)])
    assert statuses(report) == [RowStatus.UPDATED]
    assert grants(sim) == ["password", "refresh_token", "password"]
    assert [r.status for r in sim.requests if r.kind == "token"] == [200, 400, 200]


def test_revoked_token_gives_one_fresh_token_and_one_retry(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    client = make_client(sim)
    client.sync_duty_values([("alice", WHEN)])
    sim.revoke_tokens()
    sim.reset_log()
    report = client.sync_duty_values([("bob", WHEN)])
    assert statuses(report) == [RowStatus.UPDATED]
    assert [(r.kind, r.status) for r in sim.requests] == [("sync", 401), ("token", 200), ("sync", 200)]
    assert report.requests == 2
    assert fake_time.sleeps == []  # a 401 is not a transient failure to back off from


def test_expired_access_token_on_401_uses_the_refresh_token(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    client = make_client(sim, scope=OFFLINE_SCOPE)
    client.search_users([COLLAR])
    sim.expire_tokens()  # access tokens only: the refresh token still works
    sim.reset_log()
    assert len(client.search_users([COLLAR])) == 4
    assert [(r.kind, r.status) for r in sim.requests] == [("search", 401), ("token", 200), ("search", 200)]
    assert grants(sim) == ["refresh_token"]


def test_a_second_401_is_an_auth_error_not_a_loop(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    client = make_client(sim)
    sim.fail_next(5, status=401, kinds=("search",))
    with pytest.raises(AtHocAuthError) as caught:
        client.search_users([COLLAR])
    assert caught.value.status == 401 and not caught.value.transient
    assert sim.count("search") == 2
    assert sim.count("token") == 2


def test_failing_token_endpoint_backs_off_then_succeeds(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    client = make_client(sim)
    sim.fail_next(2, status=503, kinds=("token",))
    report = client.sync_duty_values([("alice", WHEN)])
    assert statuses(report) == [RowStatus.UPDATED]
    assert sim.count("token") == 3
    assert len(fake_time.sleeps) == 2


def test_token_endpoint_down_is_not_hammered(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime
) -> None:
    client = make_client(sim, max_retries=3, sync_chunk_size=2)
    sim.fail_next(100, status=503, kinds=("token",))
    report = client.sync_duty_values([("alice", WHEN), ("bob", WHEN), ("carol", WHEN), ("dave", WHEN)])
    assert statuses(report) == [RowStatus.FAILED] * 4
    assert all(row.transient and row.kind == "server" for row in report.rows)
    # One attempt plus max_retries for the first chunk; the second chunk is not tried against a dead endpoint.
    assert sim.count("token") == 4
    assert sim.count("sync") == 0
    assert len(fake_time.sleeps) == 3
    assert report.errors and "503" in report.errors[0]


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"password": "wrong-password-Kp3"}, "invalid_grant"),
        ({"username": "nobody"}, "ATHOC_USERNAME or ATHOC_PASSWORD"),
        ({"client_secret": "wrong-secret-Yy7"}, "invalid_client"),
        ({"client_id": "other-app"}, "ATHOC_CLIENT_ID"),
        ({"org_code": "WRONGORG"}, "ATHOC_ORG_CODE 'WRONGORG'"),
        ({"scope": BASE_SCOPE + " admin"}, "invalid_scope"),
    ],
)
def test_bad_configuration_names_the_cause_without_the_secret(
    sim: AtHocSimulator,
    make_client: Callable[..., AtHocClient],
    fake_time: FakeTime,
    change: dict[str, str],
    cause: str,
) -> None:
    client = make_client(sim, **change)
    with pytest.raises(AtHocAuthError) as caught:
        client.check_connection()
    message = str(caught.value)
    assert cause in message
    assert caught.value.kind == "auth" and not caught.value.transient
    for secret in (PASSWORD, CLIENT_SECRET, *change.values()):
        if secret not in ("nobody", "other-app", "WRONGORG") and not secret.startswith(BASE_SCOPE):
            assert secret not in message
    assert sim.count("token") == 1  # a refused credential is not retried
    assert fake_time.sleeps == []

    # Through the bulk update: FAILED rows, not an exception, and no further chunk is tried.
    report = make_client(sim, sync_chunk_size=1, **change).sync_duty_values([("alice", WHEN), ("bob", WHEN)])
    assert statuses(report) == [RowStatus.FAILED, RowStatus.FAILED]
    assert all(not row.transient and row.kind == "auth" and cause in row.detail for row in report.rows)
    assert sim.count("token") == 2
    assert sim.count("sync") == 0


def test_check_connection_reports_the_path(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    info = make_client(sim, scope=OFFLINE_SCOPE).check_connection()
    assert info.tls_version is None  # plain http
    assert info.proxy is None
    assert info.expires_in == 3600
    assert info.refresh_token is True
    assert info.server_url == sim.url
    assert make_client(sim).check_connection().refresh_token is False


def test_attribute_readable(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    client = make_client(sim)
    assert client.attribute_readable(DUTY)
    missing = client.attribute_readable("No-Such-Field")
    assert not missing
    assert "No-Such-Field" in missing.detail
    search = [r for r in sim.requests if r.kind == "search"]
    assert search[0].query["Limit"] == "1"
    assert search[0].query["Fields"] == f"LOGIN_ID,{DUTY}"


# ---------------------------------------------------------------- retries


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
    assert report.rows[0].transient and report.rows[0].kind == "throttled"
    assert "3600 s" in report.rows[0].detail
    assert fake_time.sleeps == [] and sim.count("sync") == 1  # no retry into a certain 429

    sim.fail_next(1, status=429, retry_after=60, kinds=("sync",))  # at the cap: honoured
    assert statuses(client.sync_duty_values([("alice", WHEN)])) == [RowStatus.UPDATED]
    assert fake_time.sleeps == [60.0]

    sim.fail_next(1, status=429, retry_after=30, kinds=("sync",))
    report = client.sync_duty_values([("bob", WHEN)], deadline=fake_time.clock() + 10)
    assert statuses(report) == [RowStatus.FAILED]
    assert report.rows[0].transient and report.rows[0].kind == "throttled"
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
    assert caught.value.transient and caught.value.kind == "server" and caught.value.status == 502
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
    assert report.rows[0].kind in ("network", "budget")
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
    assert all(row.transient and row.kind == "budget" for row in report.rows)
    assert report.requests == 0
    assert sim.requests == []
    with pytest.raises(AtHocError) as caught:
        client.search_users([COLLAR], deadline=fake_time.clock() - 1)
    assert caught.value.kind == "budget" and caught.value.transient


@pytest.mark.parametrize(("status", "kind"), [(400, "client"), (403, "auth"), (404, "client")])
def test_client_errors_are_not_retried(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime, status: int, kind: str
) -> None:
    client = make_client(sim, sync_chunk_size=1)
    sim.fail_next(1, status=status, kinds=("sync",))
    report = client.sync_duty_values([("alice", WHEN), ("bob", WHEN)])
    assert report.rows[0].status == RowStatus.FAILED
    assert not report.rows[0].transient and report.rows[0].kind == kind
    assert str(status) in report.rows[0].detail
    assert fake_time.sleeps == []
    if kind == "client":  # this chunk's problem only: the next chunk goes through
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
    assert caught.value.status == 400 and caught.value.kind == "client"
    assert "Not-A-Field" in str(caught.value)
    assert sim.count("search") == 1


# ---------------------------------------------------------------- bulk update


def test_only_login_and_duty_field_are_sent_to_existing_users_only(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    client = AtHocClient(settings_for(sim.url), source_identifier="bobo-sync")
    try:
        report = client.sync_duty_values([("alice", WHEN), ("bob", "")])
    finally:
        client.close()
    assert statuses(report) == [RowStatus.UPDATED, RowStatus.UPDATED]
    (request,) = [r for r in sim.requests if r.kind == "sync"]
    assert request.method == "POST"
    assert request.query["syncExistingUsersOnly"] == "true"
    assert request.query["sourceIdentifier"] == "bobo-sync"
    assert request.body == [{"LOGIN_ID": "alice", DUTY: WHEN}, {"LOGIN_ID": "bob", DUTY: ""}]
    assert request.headers["Content-Type"].startswith("application/json")
    assert sim.history("bob") == [""]  # cleared with an empty string, never null
    alice = sim.get_user("alice")
    assert alice is not None
    assert alice[DUTY] == WHEN
    assert alice[COLLAR] == "5"  # other attributes untouched


def test_chunking_keeps_input_order_and_reports_progress(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient]
) -> None:
    sim = make_sim()
    logins = [f"user{i:05d}@force.example" for i in range(2500)]
    sim.add_users([{"LOGIN_ID": login} for login in logins[:2400]])  # the last 100 do not exist
    progress: list[int] = []
    report = make_client(sim).sync_duty_values(
        [(login, WHEN) for login in logins], on_progress=lambda rows: progress.append(len(rows))
    )
    assert [len(body) for body in sync_bodies(sim)] == [1000, 1000, 500]
    assert report.requests == 3
    assert progress == [1000, 1000, 500]
    assert [row.login for row in report.rows] == logins
    counts = report.by_status()
    assert counts[RowStatus.UPDATED] == 2400
    assert counts[RowStatus.NOT_FOUND] == 100
    assert sum(counts.values()) == 2500


def test_every_row_classification(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    sim.deny("carol")
    report = make_client(sim).sync_duty_values(
        [("alice", WHEN), ("ghost", WHEN), ("carol", WHEN), ("dave", "31/02/2024 25:00:00"), ("bob", "")]
    )
    assert statuses(report) == [
        RowStatus.UPDATED,
        RowStatus.NOT_FOUND,
        RowStatus.DENIED,
        RowStatus.ERROR,
        RowStatus.UPDATED,
    ]
    assert "Invalid value" in report.rows[3].detail
    assert "does not exist" in report.rows[1].detail
    assert sim.get_user("ghost") is None  # never created


def test_unknown_duty_attribute_is_a_row_error_not_not_found(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    report = make_client(sim, duty_field="On-Duty-Typo").sync_duty_values([("alice", WHEN)])
    assert statuses(report) == [RowStatus.ERROR]
    assert "On-Duty-Typo" in report.rows[0].detail


def test_rows_missing_from_the_answer_are_not_confirmed(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.malform_next(1, "drop_rows")
    report = make_client(sim).sync_duty_values([("alice", WHEN), ("ghost", WHEN), ("bob", WHEN)])
    assert statuses(report) == [RowStatus.UPDATED, RowStatus.NOT_FOUND, RowStatus.MISSING]


@pytest.mark.parametrize("mode", ["not_json", "object"])
def test_malformed_answers_fail_the_chunk(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], fake_time: FakeTime, mode: str
) -> None:
    sim.malform_next(1, mode)
    report = make_client(sim, sync_chunk_size=2).sync_duty_values(
        [("alice", WHEN), ("bob", WHEN), ("carol", WHEN), ("dave", WHEN)]
    )
    assert statuses(report) == [RowStatus.FAILED, RowStatus.FAILED, RowStatus.UPDATED, RowStatus.UPDATED]
    assert all(row.transient and row.kind == "protocol" for row in report.rows[:2])
    assert len(report.errors) == 1
    assert sim.count("sync") == 2  # not retried within the call; the next chunk is unaffected
    assert fake_time.sleeps == []


def test_empty_input_makes_no_request(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    report = make_client(sim).sync_duty_values([])
    assert report.rows == [] and report.requests == 0
    assert sim.requests == []


def test_info_line_per_call(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.athoc_client")
    sim.deny("carol")
    make_client(sim).sync_duty_values([("alice", WHEN), ("ghost", WHEN), ("carol", WHEN)])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SyncByCommonNames:")]
    assert len(lines) == 1
    assert "3 rows in 1 requests, 1 updated, 1 not found, 1 denied, 0 errors" in lines[0]


# ---------------------------------------------------------------- paging


@pytest.mark.parametrize(("offset_mode", "expected_requests"), [("page", 3), ("record", 4)])
def test_paging_returns_every_user_once(
    make_sim: Callable[..., AtHocSimulator],
    make_client: Callable[..., AtHocClient],
    offset_mode: str,
    expected_requests: int,
) -> None:
    sim = make_sim(offset_mode=offset_mode)
    sim.add_users([{"LOGIN_ID": f"u{i:05d}", COLLAR: str(i)} for i in range(2500)])
    pages: list[tuple[int, int | None]] = []
    users = make_client(sim).search_users([COLLAR, DUTY], on_page=lambda n, total: pages.append((n, total)))
    assert [u["LOGIN_ID"] for u in users] == [f"u{i:05d}" for i in range(2500)]
    assert all(u[COLLAR] == u["LOGIN_ID"][1:].lstrip("0") or u[COLLAR] == "0" for u in users)
    assert all(DUTY in u for u in users)
    assert sim.count("search") == expected_requests
    assert pages[-1] == (2500, 2500)


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_paging_when_the_server_caps_the_page_size(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], offset_mode: str
) -> None:
    sim = make_sim(offset_mode=offset_mode, max_limit=300)
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(1000)])
    users = make_client(sim).search_users([])
    assert sorted(u["LOGIN_ID"] for u in users) == [f"u{i:05d}" for i in range(1000)]
    assert sim.count("search") <= 6


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_paging_with_tiny_pages(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], offset_mode: str
) -> None:
    sim = make_sim(offset_mode=offset_mode)
    sim.add_users([{"LOGIN_ID": f"u{i}"} for i in range(7)])
    users = make_client(sim, page_size=2).search_users([])
    assert [u["LOGIN_ID"] for u in users] == [f"u{i}" for i in range(7)]
    assert sim.count("search") == 4


def test_paging_an_empty_org_and_a_single_page(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient]
) -> None:
    sim = make_sim()
    client = make_client(sim)
    assert client.search_users([COLLAR]) == []
    assert sim.count("search") == 1
    sim.add_users([{"LOGIN_ID": f"u{i}"} for i in range(10)])
    assert len(client.search_users([COLLAR])) == 10
    assert sim.count("search") == 2


def test_server_ignoring_offset_cannot_make_paging_loop(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient]
) -> None:
    sim = make_sim(offset_mode="ignore")
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(2500)])
    with pytest.raises(AtHocError) as caught:
        make_client(sim).search_users([COLLAR])
    assert caught.value.kind == "protocol"
    assert "1000 of 2500" in str(caught.value)
    assert [r.query["Offset"] for r in sim.requests if r.kind == "search"] == ["0", "1", "2"]


def test_criteria_is_passed_through(sim: AtHocSimulator, make_client: Callable[..., AtHocClient]) -> None:
    sim.add_user("erin", duty=WHEN)
    users = make_client(sim).search_users([DUTY], criteria=f"{DUTY} pr")
    assert [u["LOGIN_ID"] for u in users] == ["erin"]
    assert [r.query["Criteria"] for r in sim.requests if r.kind == "search"] == [f"{DUTY} pr"]


def test_criteria_unsupported_is_a_clear_error(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient]
) -> None:
    sim = make_sim(supports_presence=False)
    with pytest.raises(AtHocError) as caught:
        make_client(sim).search_users([DUTY], criteria=f"{DUTY} pr")
    assert caught.value.status == 400 and "'pr'" in str(caught.value)


class _PagingServer:
    """A deliberately odd search server: TotalUsers wrong or absent, Offset as records or pages."""

    def __init__(self, logins: list[str], *, reported_total: int | None, offset_mode: str) -> None:
        self.logins = logins
        self.reported_total = reported_total
        self.offset_mode = offset_mode
        self.searches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._reply({"access_token": "paging-token", "expires_in": 3600})

            def do_GET(self) -> None:
                owner.searches += 1
                query = dict(parse_qsl(urlsplit(self.path).query))
                limit, offset = int(query["Limit"]), int(query["Offset"])
                start = offset * limit if owner.offset_mode == "page" else offset
                page = [{"LOGIN_ID": login} for login in owner.logins[start : start + limit]]
                payload: dict[str, Any] = {"Users": page, "FetchedRecords": len(page)}
                if owner.reported_total is not None:
                    payload["TotalUsers"] = owner.reported_total
                self._reply(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("offset_mode", ["page", "record"])
@pytest.mark.parametrize("reported_total", [10_000, None])
def test_total_users_wrong_or_absent_still_terminates(
    make_client: Callable[..., AtHocClient],
    caplog: pytest.LogCaptureFixture,
    offset_mode: str,
    reported_total: int | None,
) -> None:
    server = _PagingServer([f"u{i:04d}" for i in range(2500)], reported_total=reported_total, offset_mode=offset_mode)
    try:
        users = make_client(server.url).search_users([])
    finally:
        server.stop()
    assert [u["LOGIN_ID"] for u in users] == [f"u{i:04d}" for i in range(2500)]
    assert server.searches <= 5  # stopped by the empty page after the last one
    if reported_total is not None:
        assert "TotalUsers=10000 but listed 2500" in caplog.text


# ---------------------------------------------------------------- servers that behave differently


@pytest.mark.parametrize(
    ("content_type", "bom"),
    [
        ("text/json", False),
        ("text/plain", False),
        ("application/json", False),
        ("application/json; charset=utf-8", True),
        ("application/json", True),
    ],
)
def test_json_is_decoded_from_bytes_whatever_the_charset(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], content_type: str, bom: bool
) -> None:
    login = "josé.müller@force.example"
    sim.add_user(login, collar="1")
    sim.configure(json_content_type=content_type, json_bom=bom, json_ascii_only=False)
    client = make_client(sim)
    users = client.search_users([COLLAR])  # the token answer carries the BOM too
    assert login in [u["LOGIN_ID"] for u in users]
    report = client.sync_duty_values([(login, WHEN), ("gärtner@force.example", WHEN)])
    assert statuses(report) == [RowStatus.UPDATED, RowStatus.NOT_FOUND]
    assert "gärtner@force.example" in report.rows[1].detail
    with pytest.raises(AtHocError) as caught:
        client.search_users(["Größe"])  # an error body is decoded the same way
    assert "Größe" in str(caught.value)


@pytest.mark.parametrize(
    ("offset_mode", "skip_by_requested"),
    [("page", False), ("page", True), ("page1", False), ("page1", True), ("record", False)],
)
@pytest.mark.parametrize("omit_total", [False, True])
def test_paging_adopts_the_page_size_the_server_caps_to(
    make_sim: Callable[..., AtHocSimulator],
    make_client: Callable[..., AtHocClient],
    offset_mode: str,
    skip_by_requested: bool,
    omit_total: bool,
) -> None:
    sim = make_sim(offset_mode=offset_mode, max_limit=100)
    sim.configure(page_skip_by_requested_limit=skip_by_requested, omit_total_users=omit_total)
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(2500)])
    users = make_client(sim, page_size=1000).search_users([])
    assert [u["LOGIN_ID"] for u in users] == [f"u{i:05d}" for i in range(2500)]
    searches = [r for r in sim.requests if r.kind == "search"]
    limits = [int(r.query["Limit"]) for r in searches]
    # The cap is adopted at once; only a short last page may shrink it further (then the list is at its end).
    assert limits[0] == 1000 and set(limits[1:-1]) == {100} and limits[-1] <= 100
    # About TotalUsers / page size: 25 pages, the Offset=1 (and 1-based Offset=2) probe, one empty page.
    assert 25 <= len(searches) <= 28


@pytest.mark.parametrize("omit_total", [False, True])
def test_paging_with_1_based_page_numbers(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], omit_total: bool
) -> None:
    sim = make_sim(offset_mode="page1")
    sim.configure(omit_total_users=omit_total)
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(2500)])
    users = make_client(sim).search_users([])
    assert [u["LOGIN_ID"] for u in users] == [f"u{i:05d}" for i in range(2500)]
    offsets = [r.query["Offset"] for r in sim.requests if r.kind == "search"]
    # Offset=1 repeats page 1, Offset=2 is new: page numbers from 2 on. Without TotalUsers the short
    # last page (500) becomes the page size, and the next page (number 6 of 500) is empty.
    assert offsets == (["0", "1", "2", "3", "6"] if omit_total else ["0", "1", "2", "3"])


def test_server_ignoring_offset_without_total_gives_its_one_page_with_a_warning(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], caplog: pytest.LogCaptureFixture
) -> None:
    sim = make_sim(offset_mode="ignore")
    sim.configure(omit_total_users=True)
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(2500)])
    assert len(make_client(sim).search_users([])) == 1000  # nothing says more exist
    assert sim.count("search") == 3
    assert "Offset 0, 1 and 2 all answered the same 1000 users" in caplog.text


@pytest.mark.parametrize("form", ["null", "missing"])
def test_empty_page_as_null_or_without_users(
    make_sim: Callable[..., AtHocSimulator], make_client: Callable[..., AtHocClient], form: str
) -> None:
    sim = make_sim()
    sim.configure(empty_users_as=form)
    client = make_client(sim)
    assert client.search_users([COLLAR]) == []  # TotalUsers 0
    assert sim.count("search") == 1
    sim.add_users([{"LOGIN_ID": f"u{i:05d}"} for i in range(2500)])
    sim.configure(omit_total_users=True)  # the end of the list is the empty page
    if form == "null":
        assert len(client.search_users([COLLAR])) == 2500
    else:  # no Users and no TotalUsers says nothing: not trusted as the end of the list
        with pytest.raises(AtHocError) as caught:
            client.search_users([COLLAR])
        assert caught.value.kind == "protocol" and "no Users array" in str(caught.value)


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_user_rows_without_login_are_skipped_and_counted_once(
    make_sim: Callable[..., AtHocSimulator],
    make_client: Callable[..., AtHocClient],
    caplog: pytest.LogCaptureFixture,
    offset_mode: str,
) -> None:
    sim = make_sim(offset_mode=offset_mode)
    sim.add_users([{"LOGIN_ID": f"u{i}", COLLAR: str(i)} for i in range(3)])
    sim.add_login_less_user(None, **{COLLAR: "90"})
    sim.add_login_less_user("", **{COLLAR: "91"})
    sim.add_users([{"LOGIN_ID": f"u{i}", COLLAR: str(i)} for i in range(3, 6)])
    sim.add_login_less_user(OMIT_LOGIN, **{COLLAR: "92"})
    caplog.set_level(logging.WARNING, logger="shared.athoc_client")
    users = make_client(sim, page_size=2).search_users([COLLAR])
    assert [u["LOGIN_ID"] for u in users] == [f"u{i}" for i in range(6)]
    warnings_logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m for m in warnings_logged if "without LOGIN_ID" in m] == [
        "users/search/basic: skipped 3 user rows without LOGIN_ID (users AtHoc cannot update by login)"
    ]
    assert not any("TotalUsers" in m for m in warnings_logged)  # 6 users + 3 skipped rows == TotalUsers 9


def test_sync_rows_without_login_leave_only_their_users_unconfirmed(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.deny("carol")
    sim.malform_next(1, "anonymous_errors")
    client = make_client(sim)
    report = client.sync_duty_values([("alice", WHEN), ("ghost", WHEN), ("carol", WHEN), ("bob", "")])
    assert statuses(report) == [RowStatus.UPDATED, RowStatus.MISSING, RowStatus.MISSING, RowStatus.UPDATED]
    missing = report.rows[1].detail
    assert "not confirmed" in missing and "2 rows named no login sent" in missing
    assert "ghost does not exists" in missing and "Access denied" in missing  # the unattributed texts
    assert report.errors == () and sim.history("alice") == [WHEN]
    # Not a confirmation: the next attempt sends them again and gets their real outcome.
    again = client.sync_duty_values([("ghost", WHEN), ("carol", WHEN)])
    assert statuses(again) == [RowStatus.NOT_FOUND, RowStatus.DENIED]


def test_sync_row_naming_someone_else_confirms_nobody_by_position(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.malform_next(1, "wrong_logins")
    report = make_client(sim).sync_duty_values([("alice", WHEN), ("bob", WHEN)])
    assert statuses(report) == [RowStatus.MISSING, RowStatus.UPDATED]
    assert "not-alice" in report.rows[0].detail


def test_conflicting_rows_for_one_login_are_an_error_not_a_pick(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.malform_next(1, "conflicting_rows")  # alice: OK and Error
    report = make_client(sim).sync_duty_values([("alice", WHEN), ("bob", WHEN)])
    assert statuses(report) == [RowStatus.ERROR, RowStatus.UPDATED]
    assert "2 conflicting rows" in report.rows[0].detail and "Internal error" in report.rows[0].detail
    # The same login sent twice gets its two rows in order, each classified on its own.
    twice = make_client(sim).sync_duty_values([("alice", WHEN), ("alice", "")])
    assert statuses(twice) == [RowStatus.UPDATED, RowStatus.UPDATED]


def test_attribute_readable_when_the_server_ignores_unknown_fields(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.configure(ignore_unknown_fields=True)
    client = make_client(sim)
    typo = client.attribute_readable("On-Duty-Typo")
    assert not typo
    assert "no such field in 1 rows: check the common name" in typo.detail
    assert "On-Duty-Typo" in typo.detail  # the Criteria probe's 400 names it
    assert client.attribute_readable(DUTY)  # null values: the key is there
    assert sim.count("search") == 3  # the confirming Criteria search only for the missing key


def test_attribute_readable_when_the_server_leaves_out_empty_values(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient]
) -> None:
    sim.configure(omit_null_fields=True)
    sim.add_user("erin", duty=WHEN)  # the only user with a value, listed after four without
    result = make_client(sim).attribute_readable(DUTY)
    assert result and "leaves empty values out" in result.detail
    criteria = [r.query.get("Criteria") for r in sim.requests if r.kind == "search"]
    assert criteria == [None, f"{DUTY} pr"]


@pytest.mark.parametrize(
    ("change", "cause", "not_cause"),
    [
        ({"password": "P@ss w/rd&x"}, "ATHOC_USERNAME or ATHOC_PASSWORD", "ATHOC_ORG_CODE"),
        ({"client_secret": "Sécret/+&=x y"}, "ATHOC_CLIENT_SECRET", "wrong ATHOC_ORG_CODE"),
        ({"org_code": "WRONGORG"}, "wrong ATHOC_ORG_CODE 'WRONGORG'", "ATHOC_PASSWORD"),
    ],
)
def test_token_error_echoing_the_form_leaks_no_secret_and_blames_the_right_setting(
    sim: AtHocSimulator,
    make_client: Callable[..., AtHocClient],
    caplog: pytest.LogCaptureFixture,
    change: dict[str, str],
    cause: str,
    not_cause: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.configure(token_errors_echo_request=True)
    with pytest.raises(AtHocAuthError) as caught:
        make_client(sim, **change).check_connection()
    message = str(caught.value)
    assert "request: grant_type=password" in message  # the echo really is there
    assert cause in message and not_cause not in message
    everything = message + caplog.text
    for secret in (PASSWORD, CLIENT_SECRET, change.get("password", ""), change.get("client_secret", "")):
        if secret:
            for form in (secret, quote_plus(secret), quote(secret, safe=""), quote(secret)):
                assert form not in everything
    assert "password=***" in message and "client_secret=***" in message


# ---------------------------------------------------------------- secrets


def test_no_secret_in_any_log_line_or_error(
    make_sim: Callable[..., AtHocSimulator],
    make_client: Callable[..., AtHocClient],
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = make_sim(expires_in=100)
    sim.add_users([{"LOGIN_ID": f"u{i}"} for i in range(30)])
    issued: list[str] = []

    def remember_tokens(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # A response hook on a real session: records what the server issued, changes nothing.
        if str(response.request.url).endswith("/connect/token") and response.status_code == 200:
            payload = response.json()
            issued.extend(t for t in (payload.get("access_token"), payload.get("refresh_token")) if t)

    session = requests.Session()
    session.hooks["response"].append(remember_tokens)
    client = make_client(sim, session=session, scope=OFFLINE_SCOPE, sync_chunk_size=7, page_size=8)
    texts: list[str] = []
    pairs = [(f"u{i}", WHEN) for i in range(30)] + [("ghost", "")]

    texts += [row.detail for row in client.sync_duty_values(pairs).rows]
    fake_time.advance(95)  # refresh grant
    sim.fail_next(2, status=503, kinds=("sync",))
    texts += [row.detail for row in client.sync_duty_values(pairs).rows]
    sim.expire_tokens()  # 401, then refresh
    client.search_users([COLLAR])
    sim.revoke_tokens()  # 401, refresh refused, password grant
    sim.malform_next(1, "not_json")
    texts += [row.detail for row in client.sync_duty_values(pairs).rows]
    sim.drop_next(1, kinds=("search",))
    client.search_users([COLLAR, DUTY])
    with pytest.raises(AtHocError) as caught:
        client.search_users(["No-Such-Field"])
    texts.append(str(caught.value))
    for bad in (dict(password="wrong-" + PASSWORD), dict(client_secret="wrong-" + CLIENT_SECRET)):
        with pytest.raises(AtHocAuthError) as caught_auth:
            make_client(sim, **bad).check_connection()
        texts.append(str(caught_auth.value))
        texts += [row.detail for row in make_client(sim, **bad).sync_duty_values(pairs).rows]

    assert len(issued) >= 6  # password and refresh grants, each with an access and a refresh token
    assert grants(sim).count("refresh_token") >= 2
    everything = caplog.text + "\n".join(texts) + "\n".join(repr(r.args) for r in caplog.records)
    assert "SyncByCommonNames row:" in caplog.text  # DEBUG really was on
    for secret in (PASSWORD, CLIENT_SECRET, *issued):
        assert secret not in everything


# ---------------------------------------------------------------- transport: proxy and TLS


class _ForwardProxy:
    """A minimal HTTP forward proxy (absolute-URI requests), counting what passes through."""

    def __init__(self) -> None:
        self.forwarded: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                target = urlsplit(self.path)
                owner.forwarded.append(target.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection(str(target.hostname), target.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
                path = target.path + (f"?{target.query}" if target.query else "")
                upstream.request(self.command, path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = _forward
            do_POST = _forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_proxy_from_the_environment_is_used_and_no_proxy_honoured(
    sim: AtHocSimulator, make_client: Callable[..., AtHocClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = _ForwardProxy()
    try:
        host = proxy.url.removeprefix("http://")
        monkeypatch.setenv("HTTP_PROXY", f"http://proxyuser:proxy-pass@{host}")
        client = make_client(sim)
        info = client.check_connection()
        assert info.proxy == proxy.url  # reported without the proxy credentials
        assert statuses(client.sync_duty_values([("alice", WHEN)])) == [RowStatus.UPDATED]
        assert proxy.forwarded == ["/AuthServices/Auth/connect/token", "/api/v2/orgs/DEMO/users/SyncByCommonNames"]

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = make_client(sim)
        assert direct.check_connection().proxy is None
        direct.search_users([COLLAR])
        assert len(proxy.forwarded) == 2
    finally:
        proxy.stop()


@dataclasses.dataclass
class _TLSFiles:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> _TLSFiles:
    """A private CA and a server certificate for 127.0.0.1, made with `cryptography`."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bobo-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = _TLSFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


class _TLSServer:
    """Token endpoint and a one-user search behind TLS signed by the test CA."""

    def __init__(self, files: _TLSFiles, *, maximum_version: ssl.TLSVersion | None = None) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._reply({"access_token": "tls-access-token", "expires_in": 3600, "token_type": "Bearer"})

            def do_GET(self) -> None:
                self._reply({"Users": [{"LOGIN_ID": "alice"}], "TotalUsers": 1, "FetchedRecords": 1})

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(files.cert, files.key)
        if maximum_version is not None:
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = maximum_version
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tls_server(tls_files: _TLSFiles) -> Iterator[_TLSServer]:
    server = _TLSServer(tls_files)
    yield server
    server.stop()


def test_ca_bundle_wins_over_requests_ca_bundle_in_the_environment(
    tls_server: _TLSServer,
    tls_files: _TLSFiles,
    make_client: Callable[..., AtHocClient],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # requests would replace session.verify (and verify=True) with these: the client must not care.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "no-such-bundle.pem"))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tmp_path / "no-such-bundle.pem"))
    client = make_client(tls_server.url, ca_bundle=str(tls_files.ca))
    info = client.check_connection()
    assert info.tls_version in ("TLSv1.2", "TLSv1.3")
    assert info.verify == f"ATHOC_CA_BUNDLE {tls_files.ca}"
    assert [u["LOGIN_ID"] for u in client.search_users([])] == ["alice"]


def test_default_trust_is_not_replaced_by_the_environment(
    tls_server: _TLSServer,
    tls_files: _TLSFiles,
    make_client: Callable[..., AtHocClient],
    monkeypatch: pytest.MonkeyPatch,
    fake_time: FakeTime,
) -> None:
    # With verify=True, requests would trust REQUESTS_CA_BUNDLE (our private CA) and succeed.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca))
    client = make_client(tls_server.url)
    with pytest.raises(AtHocAuthError) as caught:
        client.check_connection()
    assert caught.value.kind == "tls"
    assert "certificate" in str(caught.value).lower() and "ATHOC_CA_BUNDLE" in str(caught.value)
    assert fake_time.sleeps == []  # an untrusted certificate is not retried


def test_verify_disabled_works_with_one_loud_warning(
    tls_server: _TLSServer, make_client: Callable[..., AtHocClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shared.athoc_client")
    client = make_client(tls_server.url, verify_tls=False)
    for _ in range(3):
        client.search_users([])
    info = client.check_connection()
    assert info.verify.startswith("disabled")
    warnings = [r for r in caplog.records if "ATHOC_VERIFY_TLS=false" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_http_url_warns_once(sim: AtHocSimulator, make_client: Callable[..., AtHocClient], caplog) -> None:
    caplog.set_level(logging.WARNING, logger="shared.athoc_client")
    client = make_client(sim)
    client.search_users([])
    client.search_users([])
    assert sum("plain http" in r.getMessage() for r in caplog.records) == 1


def test_servers_below_tls_1_2_are_refused(tls_files: _TLSFiles, make_client: Callable[..., AtHocClient]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 itself is deprecated
        try:
            server = _TLSServer(tls_files, maximum_version=ssl.TLSVersion.TLSv1_1)
        except (ssl.SSLError, ValueError):
            pytest.skip("this OpenSSL cannot even serve TLS 1.1")
    try:
        with pytest.raises(AtHocError) as caught:
            make_client(server.url, ca_bundle=str(tls_files.ca), max_retries=1).check_connection()
    finally:
        server.stop()
    assert caught.value.kind == "tls" and not caught.value.transient
    assert "TLS 1.2" in str(caught.value)
