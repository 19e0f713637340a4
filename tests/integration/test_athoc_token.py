"""AtHoc tokens against the simulator over real HTTP: password grant, reuse, renewal, refresh, 401,
refused credentials named without their secret, and no secret in any log line or error."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest

from shared.athoc import AtHocAuthError, AtHocClient, AtHocError, RowStatus
from shared.errors import ErrorKind
from tests.integration.athoc_support import (
    BASE_SCOPE,
    CLIENT_SECRET,
    COLLAR,
    DUTY,
    OFFLINE_SCOPE,
    PASSWORD,
    WHEN,
    FakeTime,
    grants,
    statuses,
)
from tools.athoc_sim import AtHocSimulator

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("clean_environment")]


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
    assert all(row.transient and row.kind is ErrorKind.SERVER for row in report.rows)
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
    assert caught.value.kind is ErrorKind.AUTH and not caught.value.transient
    for secret in (PASSWORD, CLIENT_SECRET, *change.values()):
        if secret not in ("nobody", "other-app", "WRONGORG") and not secret.startswith(BASE_SCOPE):
            assert secret not in message
    assert sim.count("token") == 1  # a refused credential is not retried
    assert fake_time.sleeps == []

    # Through the bulk update: FAILED rows, not an exception, and no further chunk is tried.
    report = make_client(sim, sync_chunk_size=1, **change).sync_duty_values([("alice", WHEN), ("bob", WHEN)])
    assert statuses(report) == [RowStatus.FAILED, RowStatus.FAILED]
    assert all(not row.transient and row.kind is ErrorKind.AUTH and cause in row.detail for row in report.rows)
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


def test_no_secret_in_any_log_line_or_error(
    make_sim: Callable[..., AtHocSimulator],
    make_client: Callable[..., AtHocClient],
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = make_sim(expires_in=100)
    sim.add_users([{"LOGIN_ID": f"u{i}"} for i in range(30)])
    client = make_client(sim, scope=OFFLINE_SCOPE, sync_chunk_size=7, page_size=8)
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

    issued = sim.issued_tokens  # what the server handed out, revoked ones included
    assert len(issued) >= 6  # password and refresh grants, each with an access and a refresh token
    assert grants(sim).count("refresh_token") >= 2
    everything = caplog.text + "\n".join(texts) + "\n".join(repr(r.args) for r in caplog.records)
    assert "SyncByCommonNames row:" in caplog.text  # DEBUG really was on
    for secret in (PASSWORD, CLIENT_SECRET, *issued):
        assert secret not in everything
