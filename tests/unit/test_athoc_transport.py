"""The AtHoc transport's pure parts (shared.athoc.transport): TLS context, verify, proxies, JSON decoding."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import certifi
import pytest

from shared.athoc import AtHocAuthError
from shared.athoc.transport import build_ssl_context, decode_json, describe_verify, proxy_for, request_verify
from shared.errors import ErrorKind
from shared.settings import AtHocSettings

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
    assert caught.value.kind is ErrorKind.TLS and "ATHOC_CA_BUNDLE" in str(caught.value)


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
