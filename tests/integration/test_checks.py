"""`check`: settings, storage, containers and tables, AtHoc token and attributes, against Azurite and the
AtHoc simulator (good setup, wrong password, unreachable server, missing attribute, bad settings)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from shared.checks import ALL_CHECKS, CheckReport, run_checks
from shared.cli import main
from tests.helpers import make_env


def by_name(report: CheckReport) -> dict[str, Any]:
    return {c.name: c for c in report.checks}


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv, env=env)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_good_setup_passes_every_check_and_creates_the_layout(make_settings, athoc_sim) -> None:
    settings = make_settings()

    report = run_checks(settings)

    checks = by_name(report)
    assert [c.name for c in report.checks] == list(ALL_CHECKS)
    assert all(c.ok for c in report.checks), report.text_lines()
    assert report.exit_code == 0 and report.failure == ""
    # A fresh deployment: the containers and tables did not exist, `check` created them and says so.
    assert "created now:" in checks["containers and tables"].detail
    assert settings.incoming_container in checks["containers and tables"].detail
    token = checks["AtHoc token"].detail
    assert "TLS: none (plain http" in token and "proxy: none" in token and "certificate trust:" in token
    assert "expires in 3600 s" in token
    assert checks["duty attribute"].detail == "On-Duty-DTG exists and is readable"
    assert checks["collar attribute"].detail == "Collar-Number exists and is readable"
    assert athoc_sim.count("search") == 2  # one single-row search per attribute
    # A second run finds everything present.
    assert "created now" not in by_name(run_checks(settings))["containers and tables"].detail


def test_wrong_password_names_the_cause_and_skips_attribute_checks(make_settings, athoc_sim) -> None:
    report = run_checks(make_settings(ATHOC_PASSWORD="not-the-password"))

    checks = by_name(report)
    assert checks["storage reachable"].ok and checks["containers and tables"].ok  # independent: still run
    token = checks["AtHoc token"]
    assert not token.ok
    assert "invalid_grant" in token.detail and "ATHOC_PASSWORD" in token.detail and "fix:" in token.detail
    assert "not-the-password" not in json.dumps(report.to_json())
    assert checks["duty attribute"].detail.startswith("skipped: no token")
    assert not checks["collar attribute"].ok
    assert report.exit_code != 0
    assert report.failure.startswith("check failed: AtHoc token: ")
    # Only the token request reached the server.
    assert athoc_sim.count("token") >= 1 and athoc_sim.count("search") == 0


def test_unreachable_server(make_settings) -> None:
    report = run_checks(make_settings(ATHOC_SERVER_URL=f"http://127.0.0.1:{closed_port()}"))

    token = by_name(report)["AtHoc token"]
    assert not token.ok
    assert token.detail.startswith("cannot reach AtHoc: ")
    assert "ATHOC_SERVER_URL" in token.detail and "HTTPS_PROXY" in token.detail
    assert by_name(report)["duty attribute"].detail.startswith("skipped: no token")
    assert report.exit_code != 0


def test_missing_attribute_fails_only_that_check(make_settings) -> None:
    report = run_checks(make_settings(ATHOC_DUTY_FIELD="On-Duty-Typo"))

    checks = by_name(report)
    assert checks["AtHoc token"].ok
    duty = checks["duty attribute"]
    assert not duty.ok
    assert "On-Duty-Typo is not readable" in duty.detail
    assert "does not exist" in duty.detail  # the server's own words
    assert "set ATHOC_DUTY_FIELD" in duty.detail
    assert checks["collar attribute"].ok
    assert report.failure.startswith("check failed: duty attribute: On-Duty-Typo")


def test_attribute_checks_with_users_whose_values_are_empty(make_settings, athoc_sim) -> None:
    athoc_sim.add_user("a@x")  # no duty, no collar: the simulator lists both keys as null

    report = run_checks(make_settings())

    assert all(c.ok for c in report.checks), report.text_lines()
    assert athoc_sim.count("search") == 2  # the key is there: no confirming search


def test_a_misspelled_attribute_fails_on_a_server_that_ignores_unknown_fields(make_settings, athoc_sim) -> None:
    athoc_sim.add_user("a@x", collar="1")
    athoc_sim.configure(ignore_unknown_fields=True)  # 200 without the key instead of a 400

    report = run_checks(make_settings(ATHOC_DUTY_FIELD="On-Duty-Typo"))

    checks = by_name(report)
    duty = checks["duty attribute"]
    assert not duty.ok
    assert "On-Duty-Typo is not readable: the server returned no such field in 1 rows: check the common name" in (
        duty.detail
    )
    assert "set ATHOC_DUTY_FIELD" in duty.detail
    assert checks["collar attribute"].ok
    assert report.exit_code != 0


def test_a_server_leaving_out_empty_values_still_passes(make_settings, athoc_sim) -> None:
    athoc_sim.add_user("a@x", collar="1")  # listed first, without a duty value
    athoc_sim.add_user("b@x", collar="2", duty="01/07/2025 10:00:00")
    athoc_sim.configure(omit_null_fields=True)

    report = run_checks(make_settings())

    assert all(c.ok for c in report.checks), report.text_lines()
    criteria = [r.query.get("Criteria") for r in athoc_sim.requests if r.kind == "search"]
    assert criteria == [None, "On-Duty-DTG pr", None]  # confirmed by a Criteria search; the collar is there


def test_cli_check_json_exit_code_and_last_stderr_line(azurite, athoc_sim, capsys) -> None:
    good = make_env(azurite.connection_string, athoc_sim.url)
    code, out, err = run_cli(["check", "--json"], good, capsys)
    assert code == 0, err
    payload = json.loads(out.strip().splitlines()[-1])
    assert [set(c) for c in payload["checks"]] == [{"name", "ok", "detail"}] * len(ALL_CHECKS)
    assert all(c["ok"] for c in payload["checks"])

    bad = make_env(azurite.connection_string, athoc_sim.url, ATHOC_COLLAR_FIELD="Badge")
    code, out, err = run_cli(["check"], bad, capsys)
    assert code != 0
    lines = out.strip().splitlines()
    assert len(lines) == len(ALL_CHECKS) + 1  # one line per check, then the tally
    assert lines[-2].startswith("FAIL  collar attribute: Badge is not readable")
    assert err.strip().splitlines()[-1].startswith("check failed: collar attribute: Badge")


def test_cli_check_with_invalid_settings(azurite, athoc_sim, capsys) -> None:
    env = make_env(azurite.connection_string, athoc_sim.url, ATHOC_PAGE_SIZE="lots")
    env["ATHOC_PASSWORD"] = ""
    code, out, err = run_cli(["check", "--json"], env, capsys)

    assert code != 0
    checks = json.loads(out.strip().splitlines()[-1])["checks"]
    assert checks[0]["name"] == "settings" and not checks[0]["ok"]
    assert "ATHOC_PASSWORD is required" in checks[0]["detail"]
    assert "ATHOC_PAGE_SIZE='lots'" in checks[0]["detail"]
    assert all(c["detail"] == "skipped: settings invalid" for c in checks[1:])
    assert err.strip().splitlines()[-1].startswith("check failed: settings: invalid settings:")
    assert "sim-client-secret" not in out + err


def test_storage_unreachable_fails_fast_and_athoc_checks_still_run(make_settings) -> None:
    port = closed_port()
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    from shared.storage import REQUEST_COUNTS

    before = sum(REQUEST_COUNTS.values())
    report = run_checks(make_settings(BOBO_STORAGE=connection))

    # One probe per service and no retries (the SDK's would take a minute), counted, not timed.
    assert 1 <= sum(REQUEST_COUNTS.values()) - before <= 2
    checks = by_name(report)
    assert not checks["storage reachable"].ok
    assert (
        "Connection refused" in checks["storage reachable"].detail
        and "fix: check BOBO_STORAGE" in checks["storage reachable"].detail
    )
    assert checks["containers and tables"].detail == "skipped: storage unreachable"
    assert checks["AtHoc token"].ok and checks["duty attribute"].ok and checks["collar attribute"].ok
    assert report.failure.startswith("check failed: storage reachable: ")
    assert key not in json.dumps(report.to_json())
