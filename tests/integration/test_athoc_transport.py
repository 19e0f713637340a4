"""The path to AtHoc over real sockets: proxies from the environment, TLS trust (a trustme CA), TLS 1.2
minimum, plain-http and no-verify warnings, JSON decoded whatever the charset."""

from __future__ import annotations

import dataclasses
import http.client
import logging
import ssl
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme

from shared.athoc import AtHocAuthError, AtHocClient, AtHocError, RowStatus
from shared.errors import ErrorKind
from tests.integration.athoc_support import (
    COLLAR,
    WHEN,
    FakeTime,
    LoopbackServer,
    QuietHandler,
    statuses,
)
from tools.athoc_sim import AtHocSimulator

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("clean_environment")]


class _ForwardProxy(LoopbackServer):
    """A minimal HTTP forward proxy (absolute-URI requests), counting what passes through."""

    def __init__(self) -> None:
        self.forwarded: list[str] = []
        owner = self

        class Handler(QuietHandler):
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

        super().__init__(Handler)


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
    ca: Path  # the private CA's certificate, as ATHOC_CA_BUNDLE would name it
    server: trustme.LeafCert  # the server's certificate for 127.0.0.1, signed by that CA


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> _TLSFiles:
    """A private CA and a server certificate for 127.0.0.1, made with trustme."""
    authority = trustme.CA()
    ca = tmp_path_factory.mktemp("tls") / "ca.pem"
    authority.cert_pem.write_to_path(str(ca))
    return _TLSFiles(ca, authority.issue_cert("127.0.0.1"))


class _TLSServer(LoopbackServer):
    """Token endpoint and a one-user search behind TLS signed by the test CA."""

    def __init__(self, files: _TLSFiles, *, maximum_version: ssl.TLSVersion | None = None) -> None:
        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.reply_json({"access_token": "tls-access-token", "expires_in": 3600, "token_type": "Bearer"})

            def do_GET(self) -> None:
                self.reply_json({"Users": [{"LOGIN_ID": "alice"}], "TotalUsers": 1, "FetchedRecords": 1})

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        files.server.configure_cert(context)
        if maximum_version is not None:
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = maximum_version
        super().__init__(Handler, tls=context)


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
    assert caught.value.kind is ErrorKind.TLS
    assert "certificate" in str(caught.value).lower() and "ATHOC_CA_BUNDLE" in str(caught.value)
    assert fake_time.sleeps == []  # an untrusted certificate is not retried


def test_verify_disabled_works_with_one_loud_warning(
    tls_server: _TLSServer, make_client: Callable[..., AtHocClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shared.athoc")
    client = make_client(tls_server.url, verify_tls=False)
    for _ in range(3):
        client.search_users([])
    info = client.check_connection()
    assert info.verify.startswith("disabled")
    warnings = [r for r in caplog.records if "ATHOC_VERIFY_TLS=false" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_http_url_warns_once(sim: AtHocSimulator, make_client: Callable[..., AtHocClient], caplog) -> None:
    caplog.set_level(logging.WARNING, logger="shared.athoc")
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
    assert caught.value.kind is ErrorKind.TLS and not caught.value.transient
    assert "TLS 1.2" in str(caught.value)


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
