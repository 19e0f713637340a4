"""`python -m shared.cli` as an operator runs it: exit codes, the JSON last line, causes without tracebacks."""

from __future__ import annotations

import json
import subprocess

import pytest

from shared.jobs import PROCESS_COUNTS
from shared.runtime import Runtime
from shared.settings import Settings
from tests.helpers import bon, csv_of, run_cli, seed_users, upload, where


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args)


def test_process_json_contract(make_test_env, athoc_sim) -> None:
    env = make_test_env()
    runtime = Runtime(Settings.from_env(env))
    seed_users(athoc_sim, runtime, ["1", "2"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000"), bon("2", "20251022100000")))
    upload(runtime, "b.txt", "stray")

    dry = cli(env, "process", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    dry_json = json.loads(dry.stdout.strip().splitlines()[-1])
    assert dry_json["updates_sent"] == 2 and athoc_sim.count("sync") == 0
    assert where(runtime)["incoming"] == ["a.csv", "b.txt"]

    done = cli(env, "process", "--json")
    assert done.returncode == 0, done.stderr  # a file in failed is still "did its job"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report) >= {*PROCESS_COUNTS, "errors"} and isinstance(report["errors"], list)
    assert all(isinstance(report[key], int) for key in PROCESS_COUNTS)
    assert (report["files_seen"], report["files_processed"], report["files_failed"]) == (2, 1, 1)
    assert (report["rows_read"], report["users_updated"]) == (2, 2)
    assert report["errors"] == ["b.txt: not a .csv file"]


def test_process_text_output_is_readable(make_test_env, athoc_sim) -> None:
    env = make_test_env()
    runtime = Runtime(Settings.from_env(env))
    seed_users(athoc_sim, runtime, ["1"])
    upload(runtime, "a.csv", csv_of(bon("1", "20251022100000")))
    result = cli(env, "process")
    assert result.returncode == 0
    assert "files: 1 seen, 1 processed" in result.stdout and "a.csv: processed" in result.stdout


def test_bad_settings_exit_non_zero_naming_each_setting(make_test_env) -> None:
    env = make_test_env(BOBO_MAX_RETRY_ATTEMPTS="many", ATHOC_SERVER_URL="not-a-url")
    result = cli(env, "process", "--json")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "BOBO_MAX_RETRY_ATTEMPTS" in last and "ATHOC_SERVER_URL" in last
    assert "Traceback" not in result.stderr
    # Under --json the last stdout line is one JSON object even when the command cannot run.
    failure = json.loads(result.stdout.strip().splitlines()[-1])
    assert failure["exit_code"] == result.returncode and failure["errors"] == [failure["error"]] == [last]
    assert env["ATHOC_PASSWORD"] not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "command", [["process"], ["sync-mappings", "--force"], ["cleanup"], ["status"], ["retry-failed", "--all"]]
)
def test_storage_unreachable_exits_non_zero_with_the_cause(make_test_env, command: list[str]) -> None:
    from tools.azurite import free_port

    port = free_port()
    dead = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    env = make_test_env(BOBO_STORAGE=dead)
    result = cli(env, *command, "--json")
    assert result.returncode == 3
    assert "storage" in result.stderr.strip().splitlines()[-1].lower()
    assert "storage" in json.loads(result.stdout.strip().splitlines()[-1])["error"]
    assert "Traceback" not in result.stderr and "a2V5" not in result.stderr + result.stdout
