"""What the AtHoc client's integration tests share: settings for a loopback server, a virtual clock, fixtures.

Nothing in requests is patched: faults come from the simulator (tools/athoc_sim.py) or tiny purpose-built
servers. Backoff sleeps go through an injected sleep that records the wait and advances a virtual clock, so
retries are instant but deadlines hold. Test modules import the fixtures they use by name.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.athoc import AtHocClient, RowStatus, SyncReport
from shared.settings import AtHocSettings
from tools.athoc_sim import AtHocSimulator

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


@pytest.fixture
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

    def make(target: AtHocSimulator | str, **overrides: Any) -> AtHocClient:
        url = target if isinstance(target, str) else target.url
        client = AtHocClient(settings_for(url, **overrides), sleep=fake_time.sleep, clock=fake_time.clock)
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


class QuietHandler(BaseHTTPRequestHandler):
    """A handler of a purpose-built loopback server: HTTP/1.1 keep-alive, no access log, JSON answers."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def reply_json(self, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer:
    """Serves `handler` on 127.0.0.1 (behind TLS when given a server context) in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, tls: ssl.SSLContext | None = None) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
