"""Drift and `reconcile` (docs/history.md) against Azurite and the AtHoc simulator."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from shared.drift import load_drift_status
from shared.explain import explain
from shared.mapping_sync import run_mapping_sync
from shared.pipeline import drain
from shared.reconcile import check_drift, run_reconcile
from shared.records import utcnow
from shared.runtime import Runtime
from shared.settings import Settings
from shared.status_page import render_html, text_lines
from shared.status_report import build_status
from tests.helpers import bon, csv_of, login_of, run_cli, seed_users, upload

DUTY = "On-Duty-DTG"


def duty(sim: Any, employee: str) -> Any:
    return sim.get_user(login_of(employee)).get(DUTY)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args)


def last_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_drift_round_trip(make_test_env, athoc_sim) -> None:
    env = make_test_env()
    runtime = Runtime(Settings.from_env(env))
    seed_users(athoc_sim, runtime, ["1", "2", "3"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000"), bon("2", "20251022100000")))
    drain(runtime)
    athoc_sim.set_attribute(login_of("1"), DUTY, "01/01/2020 08:00:00")  # someone edits AtHoc by hand
    athoc_sim.set_attribute(login_of("3"), DUTY, "01/01/2020 08:00:00")  # a user this app never set

    # The daily sync sees it (report: nothing is changed in AtHoc).
    synced = run_mapping_sync(runtime, force=True)
    assert synced.drift is not None and (synced.drift["drifted"], synced.drift["in_sync"]) == (1, 1)
    status = load_drift_status(runtime.state)
    assert status is not None and (status.drifted, status.repaired) == (1, 0)
    assert duty(athoc_sim, "1") == "01/01/2020 08:00:00"
    # The status report, its verdict and its page name it.
    report = build_status(runtime)
    assert {k: report.to_json()["drift"][k] for k in ("drifted", "repaired")} == {"drifted": 1, "repaired": 0}
    assert [r for r in report.health.reasons if r.startswith("1 user's duty value in AtHoc differs")]
    assert "drifted in AtHoc" in render_html(report) and any(line.startswith("drift: 1") for line in text_lines(report))

    # reconcile --apply sets it back and records it.
    done = cli(env, "reconcile", "--apply", "--json")
    assert done.returncode == 0, done.stderr
    body = last_json(done)
    assert {k: body[k] for k in ("users_checked", "in_sync", "drifted", "applied", "errors")} == {
        "users_checked": 3,
        "in_sync": 1,
        "drifted": 1,
        "applied": 1,
        "errors": [],
    }
    assert body["drift"] == [
        {
            "employee_id": "1",
            "login": login_of("1"),
            "athoc_value": "01/01/2020 08:00:00",
            "expected_value": "22/10/2025 10:00:00",
            "last_event_time": "2025-10-22T10:00:00",
        }
    ]
    assert duty(athoc_sim, "1") == "22/10/2025 10:00:00"
    assert duty(athoc_sim, "3") == "01/01/2020 08:00:00"  # never drift: left alone
    explained = explain(runtime, "1").to_json()
    assert [e["outcome"] for e in explained["events"]] == ["reconciled", "applied"]
    assert explained["events"][0]["value_sent"] == "22/10/2025 10:00:00"
    status = load_drift_status(runtime.state)
    assert status is not None and (status.drifted, status.repaired) == (1, 1)
    assert not [r for r in build_status(runtime).health.reasons if "differs from what this app last set" in r]

    # A later, newer BOBO event still wins; the next check finds everyone in sync.
    upload(runtime, "b.csv", csv_of(bon("1", "20251022120000")))
    drain(runtime)
    assert duty(athoc_sim, "1") == "22/10/2025 12:00:00"
    again = cli(env, "reconcile", "--json")
    assert again.returncode == 0 and (last_json(again)["drifted"], last_json(again)["in_sync"]) == (0, 2)


def test_the_sync_checks_drift_without_an_extra_athoc_call(make_runtime, athoc_sim) -> None:
    def sync_requests(mode: str) -> tuple[dict[str, int], set[str], Any]:
        """The AtHoc requests of one forced mapping sync (5 users in pages of 2), its search fields, its drift."""
        runtime = make_runtime(BOBO_RECONCILE=mode, ATHOC_PAGE_SIZE="2")
        seed_users(athoc_sim, runtime, ["1", "2", "3", "4", "5"])
        upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
        drain(runtime)
        athoc_sim.set_attribute(login_of("1"), DUTY, "")  # drift to be found
        runtime.athoc.search_users([])  # the token is fetched before the measurement
        athoc_sim.reset_log()
        result = run_mapping_sync(runtime, force=True)
        fields = {
            value
            for r in athoc_sim.requests
            if r.kind == "search"
            for k, value in r.query.items()
            if k.lower() == "fields"
        }
        return athoc_sim.counts(), fields, result.drift

    off_counts, off_fields, off_drift = sync_requests("off")
    report_counts, report_fields, report_drift = sync_requests("report")
    assert off_drift is None and report_drift is not None and report_drift["drifted"] == 1
    assert off_counts["search"] >= 3  # paged: several search calls
    assert report_counts == off_counts  # no extra call of any kind
    assert off_fields and all(DUTY not in f for f in off_fields)
    assert report_fields and all(DUTY in f for f in report_fields)  # the duty field rode in the same calls


def test_off_leaves_the_last_check_and_apply_repairs_from_the_timer(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(BOBO_RECONCILE="apply")
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    drain(runtime)
    assert load_drift_status(runtime.state) is None  # null before the first check
    athoc_sim.set_attribute(login_of("1"), DUTY, None)  # unset: "" differs from the applied value
    run_mapping_sync(runtime, force=True)
    assert duty(athoc_sim, "1") == "22/10/2025 10:00:00"
    first = load_drift_status(runtime.state)
    assert first is not None and (first.drifted, first.repaired) == (1, 1)

    off = Runtime(Settings.from_env({**_env_of(runtime), "BOBO_RECONCILE": "off"}))
    athoc_sim.set_attribute(login_of("1"), DUTY, "x")
    run_mapping_sync(off, force=True)
    assert duty(athoc_sim, "1") == "x"
    assert load_drift_status(off.state) == first  # no check: the key keeps the last one


def _env_of(runtime: Runtime) -> dict[str, str]:
    s = runtime.settings
    return {
        "ATHOC_SERVER_URL": s.athoc.server_url,
        "ATHOC_ORG_CODE": s.athoc.org_code,
        "ATHOC_CLIENT_ID": s.athoc.client_id,
        "ATHOC_CLIENT_SECRET": s.athoc.client_secret,
        "ATHOC_USERNAME": s.athoc.username,
        "ATHOC_PASSWORD": s.athoc.password,
        "BOBO_STORAGE": s.storage.connection_string or "",
        "BOBO_INCOMING_CONTAINER": s.incoming_container,
        "BOBO_PROCESSED_CONTAINER": s.processed_container,
        "BOBO_FAILED_CONTAINER": s.failed_container,
        "BOBO_REJECTS_CONTAINER": s.rejects_container,
        "BOBO_TABLE_PREFIX": s.table_prefix,
    }


def test_a_user_decided_after_the_read_is_not_set_back(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(ATHOC_MAX_RETRIES="0")
    seed_users(athoc_sim, runtime, ["1", "2"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000"), bon("2", "20251022100000")))
    drain(runtime)
    athoc_sim.set_attribute(login_of("1"), DUTY, "01/01/2020 08:00:00")
    athoc_sim.set_attribute(login_of("2"), DUTY, "01/01/2020 08:00:00")
    read_started = utcnow()
    users = runtime.athoc.search_users([runtime.settings.athoc.collar_field, DUTY])
    # After the read: a newer event of employee 1 is sent, applied by AtHoc, but its answer is lost (pending).
    athoc_sim.drop_next(100, kinds=("sync",), after_apply=True)
    upload(runtime, "b.csv", csv_of(bon("1", "20251022120000")))
    drain(runtime)
    assert duty(athoc_sim, "1") == "22/10/2025 12:00:00"
    assert explain(runtime, "1").events[0].outcome.value == "pending"
    athoc_sim.clear_faults()

    outcome = check_drift(runtime, users, read_started, "test-run", apply=True)

    assert outcome.check.drifted == 2 and outcome.skipped == 1 and outcome.applied == 1
    assert duty(athoc_sim, "1") == "22/10/2025 12:00:00"  # the pipeline's newer value stays
    assert duty(athoc_sim, "2") == "22/10/2025 10:00:00"


def test_reconcile_exits_non_zero_when_athoc_cannot_be_reached(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(ATHOC_MAX_RETRIES="0", ATHOC_CALL_BUDGET_SECONDS="3")
    athoc_sim.fail_next(100, status=500, kinds=("search",))
    result = run_reconcile(runtime)
    assert result.exit_code != 0 and result.errors and "AtHoc" in result.failure
    assert set(result.to_json()) >= {"users_checked", "in_sync", "drifted", "drift", "applied", "errors"}
