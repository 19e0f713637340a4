"""`health` and `status` called through their handlers with real func.HttpRequest objects.

The handlers build their runtime from the process environment (process_runtime()), so each test sets the
environment of an isolated deployment with monkeypatch and forgets the cached runtime.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

import shared.runtime
import shared.storage
from shared import SERVICE_NAME, __version__
from shared.cli import main
from shared.settings import SETTING_NAMES, STORAGE_CONNECTION
from tests.integration.test_status_report import seed_state

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def handler(name: str) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """The user function as the worker finds it (an app indexes once: import it afresh, as the indexing test does)."""
    for module in ("function_app", "functions.ingest", "functions.maintenance", "functions.http"):
        sys.modules.pop(module, None)
    app = importlib.import_module("function_app").app
    return next(f.get_user_function() for f in app.get_functions() if f.get_function_name() == name)


def get(route: str, *, params: dict[str, str] | None = None, accept: str | None = None) -> func.HttpRequest:
    headers = {"accept": accept} if accept else {}
    return func.HttpRequest(method="GET", url=f"/api/{route}", headers=headers, params=params or {}, body=b"")


def use_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Exactly `env` as the app's settings: nothing left over from the developer's shell."""
    for key in list(os.environ):
        if key in SETTING_NAMES or key.startswith(f"{STORAGE_CONNECTION}__"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(shared.runtime, "_process_runtime", None)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def deployment(make_test_env, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = make_test_env(BOBO_TIMEZONE="Europe/London")
    use_environment(monkeypatch, env)
    seed_state(shared.runtime.process_runtime())
    return env


def test_health_answers_without_any_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    use_environment(monkeypatch, {})

    response = handler("health")(get("health"))

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert json.loads(response.get_body()) == {"service": SERVICE_NAME, "version": __version__, "status": "alive"}
    assert shared.runtime._process_runtime is None  # it never built a runtime (no storage, no AtHoc)


def test_status_json_is_the_cli_report(deployment: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    response = handler("status")(get("status"))

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    report: dict[str, Any] = json.loads(response.get_body())
    assert report["mappings_total"] == 3 and report["files_pending"] == 2 and report["files_failed"] == 2
    assert report["health"]["healthy"] is False

    assert main(["status", "--json"], env=deployment) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(cli) == set(report)
    for key in ("mappings_total", "files_pending", "files_failed", "failed_files", "last_runs", "last_24h"):
        assert cli[key] == report[key], key


@pytest.mark.parametrize(
    ("params", "accept"),
    [({"format": "html"}, None), ({}, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")],
    ids=["format-param", "accept-header"],
)
def test_status_html(deployment: dict[str, str], params: dict[str, str], accept: str | None) -> None:
    response = handler("status")(get("status", params=params, accept=accept))

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_body().decode("utf-8")
    assert page.startswith("<!doctype html>")
    assert "Not healthy" in page and "mapping sync has not succeeded for 3 days" in page
    assert "<svg" in page and 'name=viewport content="width=device-width' in page
    # Self-contained: no script, and nothing fetched from anywhere.
    assert "<script" not in page.lower()
    assert "src=" not in page and "@import" not in page and "url(" not in page
    assert "http://" not in page and "https://" not in page


def test_json_wins_when_asked_for(deployment: dict[str, str]) -> None:
    response = handler("status")(get("status", params={"format": "json"}, accept="text/html"))
    assert response.mimetype == "application/json"


def test_status_with_invalid_settings_is_503_naming_the_setting(make_test_env, monkeypatch) -> None:
    # Needs functions/http.py to answer through shared.status_page.status_http (which catches and names the cause).
    env = make_test_env()
    del env["BOBO_STORAGE"]
    env["ATHOC_PAGE_SIZE"] = "many"
    use_environment(monkeypatch, env)

    response = handler("status")(get("status"))

    assert response.status_code == 503
    body = json.loads(response.get_body())
    assert body["health"]["healthy"] is False
    assert "BOBO_STORAGE is required" in body["error"] and "ATHOC_PAGE_SIZE='many'" in body["error"]
    assert env["ATHOC_PASSWORD"] not in response.get_body().decode()

    html_response = handler("status")(get("status", params={"format": "html"}))
    assert html_response.status_code == 503 and html_response.mimetype == "text/html"
    assert "BOBO_STORAGE is required" in html_response.get_body().decode()


def test_status_with_storage_down_is_503_fast_and_keeps_the_key_secret(make_test_env, monkeypatch) -> None:
    # Needs functions/http.py to answer through shared.status_page.status_http (storage probe without retries).
    port = closed_port()
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    use_environment(monkeypatch, make_test_env(BOBO_STORAGE=connection))

    before = sum(shared.storage.REQUEST_COUNTS.values())
    response = handler("status")(get("status"))

    assert response.status_code == 503
    # Fast by construction, counted rather than timed: one probe request, none of the SDK's minute of retries.
    assert sum(shared.storage.REQUEST_COUNTS.values()) - before == 1
    text = response.get_body().decode()
    assert json.loads(text)["error"].startswith("storage unreachable: ")
    assert AZURITE_KEY not in text and "AccountKey" not in text


def test_status_for_one_employee_is_explain(make_test_env, athoc_sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """`GET /api/status?employee=ID`: the explain JSON (contract keys), or a page with the status page's look."""
    from shared.pipeline import drain
    from tests.helpers import bon, csv_of, login_of, seed_users, upload

    use_environment(monkeypatch, make_test_env(BOBO_TIMEZONE="Europe/London"))
    runtime = shared.runtime.process_runtime()
    seed_users(athoc_sim, runtime, ["00123"])
    upload(runtime, "a.csv", csv_of(bon("00123", "20251022074142")))
    assert drain(runtime).users_updated == 1

    response = handler("status")(get("status", params={"employee": " 123 ", "days": "2"}))
    assert response.status_code == 200 and response.mimetype == "application/json"
    explained = json.loads(response.get_body())
    assert set(explained) >= {"employee_id", "login", "last_applied", "events"}
    assert explained["login"] == login_of("00123")
    assert [(e["outcome"], e["file"], e["row"]) for e in explained["events"]] == [("applied", "a.csv", 1)]

    page = handler("status")(get("status", params={"employee": "00123", "format": "html"}))
    text = page.get_body().decode("utf-8")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "Content-Security-Policy" in text and "a.csv" in text and "<script" not in text.lower()

    assert handler("status")(get("status", params={"employee": "123", "days": "soon"})).status_code == 400


def test_status_page_links_the_monitoring_workbook_where_one_is_deployed(
    deployment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workbook = "https://portal.azure.com/#@tenant/resource/subscriptions/s/workbooks/w"
    monkeypatch.setenv("MONITORING_WORKBOOK_URL", workbook)
    page = handler("status")(get("status", params={"format": "html"})).get_body().decode("utf-8")
    assert f"<a href='{workbook}'>the monitoring workbook</a>" in page
    assert "<script" not in page.lower() and "src=" not in page  # a link, nothing fetched
