"""Pure parts of the AtHoc client: backoff, Retry-After, row classification, TLS and verify settings, redaction."""

from __future__ import annotations

import dataclasses
import email.utils
import json
import ssl
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import certifi
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.athoc_client import (
    BACKOFF_CAP_SECONDS,
    RETRY_AFTER_CAP_SECONDS,
    THROTTLED_MIN_WAIT_SECONDS,
    AtHocAuthError,
    RowResult,
    RowStatus,
    SyncReport,
    _Redactor,
    backoff_delay,
    build_ssl_context,
    classify_row,
    decode_json,
    describe_verify,
    parse_retry_after,
    proxy_for,
    request_verify,
    retry_wait,
    shared_client,
)
from shared.settings import AtHocSettings

NOW = 1_750_000_000.0

SETTINGS = AtHocSettings(
    server_url="https://alerts.example.com",
    org_code="DEMO",
    client_id="bobo-sync",
    client_secret="client-secret-value",
    username="svc-bobo",
    password="password-value",
    scope="openid profile athoc.iws.web.api",
    duty_field="On-Duty-DTG",
    collar_field="Collar-Number",
    datetime_format="%d/%m/%Y %H:%M:%S",
    verify_tls=True,
    ca_bundle=None,
    sync_chunk_size=1000,
    page_size=1000,
    connect_timeout=10.0,
    read_timeout=60.0,
    call_budget_seconds=120.0,
    max_retries=5,
)


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


# ---------------------------------------------------------------- row classification


def row(status: str | None, details: str | None, login: str = "john.doe@force.example") -> dict[str, object]:
    result: dict[str, object] = {"LOGIN_ID": login, "On-Duty-DTG": "17/06/2024 14:30:00", "USER_ID": None}
    if status is not None:
        result[":SyncStatus"] = status
    if details is not None:
        result[":SyncDetails"] = details
    return result


@pytest.mark.parametrize(
    ("status", "details", "expected"),
    [
        ("OK", "Updated", RowStatus.UPDATED),
        ("ok", "", RowStatus.UPDATED),
        ("Ok", None, RowStatus.UPDATED),
        ("Error", "User: john.doe@force.example does not exists in the Organization", RowStatus.NOT_FOUND),
        ("Error", "User does not exist", RowStatus.NOT_FOUND),
        ("Error", "user not found", RowStatus.NOT_FOUND),
        ("Error", "Unknown user 'x'", RowStatus.NOT_FOUND),
        ("error", "No such user", RowStatus.NOT_FOUND),
        (
            "Error",
            "Access denied: the operator does not have permission to update user john.doe@force.example",
            RowStatus.DENIED,
        ),
        ("Error", "Operator is not authorized to modify this user", RowStatus.DENIED),
        ("Error", "Forbidden", RowStatus.DENIED),
        ("Error", "You do not have permission", RowStatus.DENIED),
        ("Error", "Attribute 'On-Duty-DTG' does not exist", RowStatus.ERROR),
        ("Error", "Invalid value '31/02/2024' for attribute 'On-Duty-DTG'", RowStatus.ERROR),
        ("Error", "User attribute 'X' not found", RowStatus.ERROR),  # about an attribute, not the user
        ("Error", "Permission denied on field 'On-Duty-DTG'", RowStatus.ERROR),
        ("Error", "", RowStatus.ERROR),
        ("Error", "Timeout while saving", RowStatus.ERROR),
        ("Partial", "User does not exist", RowStatus.ERROR),
        ("Partial", "Attribute 'X' does not exist", RowStatus.ERROR),
        ("Skipped", "Access denied", RowStatus.DENIED),  # any status but OK and Partial reads like Error
        (None, "Updated", RowStatus.ERROR),
        ("", "", RowStatus.ERROR),
    ],
)
def test_classify_row(status: str | None, details: str | None, expected: RowStatus) -> None:
    got, detail = classify_row(row(status, details))
    assert got == expected
    if expected == RowStatus.ERROR and details:
        assert details in detail  # the server's text is kept for the operator


def test_classify_row_ignores_words_inside_the_login() -> None:
    login = "field.attribute.user@force.example"
    assert classify_row(row("Error", f"User: {login} does not exists in the Organization", login))[0] == (
        RowStatus.NOT_FOUND
    )
    assert classify_row(row("Error", "Attribute 'user-type' does not exist", login))[0] == RowStatus.ERROR


def test_classify_row_reads_keys_case_insensitively() -> None:
    assert classify_row({"LOGIN_ID": "a", ":syncstatus": "OK", ":syncdetails": "Updated"})[0] == RowStatus.UPDATED


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.none(), st.text(max_size=40), st.integers())))
def test_classify_row_never_raises_and_only_ok_is_updated(candidate: dict[str, object]) -> None:
    status, detail = classify_row(candidate)
    assert isinstance(detail, str)
    raw = next((v for k, v in candidate.items() if k.casefold() == ":syncstatus"), None)
    if status == RowStatus.UPDATED:
        assert str(raw).strip().casefold() == "ok"


def test_by_status_counts_every_status() -> None:
    report = SyncReport(
        rows=[
            RowResult("a", "x", RowStatus.UPDATED, "Updated"),
            RowResult("b", "", RowStatus.UPDATED, "Updated"),
            RowResult("c", "x", RowStatus.FAILED, "503", transient=True, kind="server"),
        ],
        requests=1,
    )
    counts = report.by_status()
    assert counts[RowStatus.UPDATED] == 2 and counts[RowStatus.FAILED] == 1
    assert counts[RowStatus.MISSING] == 0 and set(counts) == set(RowStatus)


# ---------------------------------------------------------------- TLS and verify


def test_tls_1_2_is_the_minimum_in_every_mode(tmp_path: Path) -> None:
    for settings in (SETTINGS, dataclasses.replace(SETTINGS, verify_tls=False)):
        context = build_ssl_context(settings)
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert build_ssl_context(SETTINGS).verify_mode == ssl.CERT_REQUIRED
    assert build_ssl_context(SETTINGS).check_hostname
    assert build_ssl_context(dataclasses.replace(SETTINGS, verify_tls=False)).verify_mode == ssl.CERT_NONE


def test_unreadable_ca_bundle_is_a_tls_configuration_error(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(AtHocAuthError) as caught:
        build_ssl_context(dataclasses.replace(SETTINGS, ca_bundle=str(bogus)))
    assert caught.value.kind == "tls" and "ATHOC_CA_BUNDLE" in str(caught.value)


def test_verify_is_never_true_so_the_environment_cannot_replace_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nowhere/bundle.pem")
    assert request_verify(SETTINGS) == certifi.where()
    assert request_verify(dataclasses.replace(SETTINGS, ca_bundle="/etc/private-ca.pem")) == "/etc/private-ca.pem"
    assert request_verify(dataclasses.replace(SETTINGS, verify_tls=False, ca_bundle="/x.pem")) is False
    assert describe_verify(dataclasses.replace(SETTINGS, verify_tls=False)).startswith("disabled")
    assert "not applicable" in describe_verify(dataclasses.replace(SETTINGS, server_url="http://127.0.0.1:1"))


def test_proxy_from_environment_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert proxy_for("https://alerts.example.com/x") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://user:s3cret@proxy.corp:8080")
    assert proxy_for("https://alerts.example.com/x") == "http://proxy.corp:8080"
    monkeypatch.setenv("NO_PROXY", ".example.com")
    assert proxy_for("https://alerts.example.com/x") is None


# ---------------------------------------------------------------- redaction


def test_redactor_removes_secrets_tokens_and_bearer_values() -> None:
    redact = _Redactor("password-value", "client-secret-value")
    redact.add("eyJhbGciOi.access.token")
    text = (
        'bad password-value for client-secret-value; {"access_token": "abc", "refresh_token":"def"} '
        "Authorization: Bearer eyJhbGciOi.access.token and Bearer other-token"
    )
    cleaned = redact(text)
    for secret in ("password-value", "client-secret-value", "eyJhbGciOi.access.token", '"abc"', '"def"', "other-token"):
        assert secret not in cleaned
    assert cleaned.count("***") >= 5


@pytest.mark.parametrize("secret", ["P@ss w/rd&x", "Sécret/+&=x y", 'quote"back\\slash'])
def test_redactor_removes_encoded_and_escaped_forms_of_the_credentials(secret: str) -> None:
    redact = _Redactor(secret, "client-secret-value")
    escaped = json.dumps(secret)[1:-1]
    for form in (
        secret,
        quote_plus(secret),
        quote(secret, safe=""),
        quote(secret),
        escaped,
        escaped.replace("/", "\\/"),
    ):
        assert form not in redact(f"server said: {form}."), form
    echoed = "grant_type=password&username=svc&password=whatever%21&client_secret=other&refresh_token=r1&scope=x"
    cleaned = redact(echoed)
    assert cleaned == "grant_type=password&username=svc&password=***&client_secret=***&refresh_token=***&scope=x"
    assert redact('{"password": "a\\"b", "client_secret":"c"}') == '{"password": "***", "client_secret":"***"}'


def test_redactor_keeps_its_list_bounded_but_the_credentials() -> None:
    redact = _Redactor("password-value", "client-secret-value")
    for i in range(200):
        redact.add(f"token-{i:04d}-xyz")
    assert "password-value" not in redact("password-value")
    assert "client-secret-value" not in redact("client-secret-value")
    assert "token-0199-xyz" not in redact("token-0199-xyz")


def test_parse_retry_after_uses_the_given_wall_clock() -> None:
    header = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= (parse_retry_after(header, now=time.time()) or 0) <= 10


def test_shared_client_is_one_per_settings() -> None:
    first = shared_client(SETTINGS)
    assert shared_client(SETTINGS) is first
    assert shared_client(dataclasses.replace(SETTINGS, page_size=10)) is not first


# ---------------------------------------------------------------- JSON bodies


@pytest.mark.parametrize(
    "body",
    [
        '{"login": "josé"}'.encode(),
        b"\xef\xbb\xbf" + '{"login": "josé"}'.encode(),
        '{"login": "josé"}'.encode("utf-16"),  # with its BOM
        '{"login": "josé"}'.encode("utf-16-le"),
        '{"login": "josé"}'.encode("utf-32"),
        b'{"login": "jos\\u00e9"}',
    ],
)
def test_decode_json_reads_every_unicode_encoding_from_bytes(body: bytes) -> None:
    assert decode_json(body) == {"login": "josé"}


@pytest.mark.parametrize("body", [b"", b"<html>down</html>", b"\xff\xfe\x00garbage", b'{"a": "\xe9"}'])
def test_decode_json_raises_value_error_for_what_is_not_json(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_json(body)
