"""The mapping sync against Azurite and the AtHoc simulator: diff, safety, conflicts, paging, schedule, races."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from azure.functions.timer import TimerRequest

from shared.mapping_sync import MappingSyncResult, run_mapping_sync
from shared.records import JobKind, MappingEntry, Outcome
from shared.runtime import Runtime
from shared.settings import Settings
from tools.athoc_sim import AtHocSimulator

LONDON = ZoneInfo("Europe/London")
FAST = {"ATHOC_MAX_RETRIES": "1", "ATHOC_CALL_BUDGET_SECONDS": "5"}


def table(runtime: Runtime) -> dict[str, str]:
    return {emp: entry.login for emp, entry in runtime.state.mapping_entries().items()}


def add(sim: Any, *pairs: tuple[str, str | None]) -> None:
    for login, collar in pairs:
        sim.add_user(login, collar=collar)


def assert_contract_json(result: MappingSyncResult) -> dict[str, Any]:
    data = json.loads(json.dumps(result.to_json()))
    assert data["status"] in ("success", "skipped", "failed")
    for key in ("users_fetched", "mappings_total", "added", "updated", "removed", "conflicts"):
        assert type(data[key]) is int, key
    return data


def test_first_sync_adds_then_only_changes_are_written(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    add(athoc_sim, ("a@x", "00123"), ("b@x", " 456 "), ("c@x", "7"), ("nocollar@x", None), ("blank@x", "  "))

    first = run_mapping_sync(runtime, force=True)

    assert first.status == Outcome.SUCCESS and first.exit_code == 0 and first.error == ""
    assert (first.users_fetched, first.users_without_collar, first.mappings_total) == (5, 2, 3)
    assert (first.added, first.updated, first.removed) == (3, 0, 0)
    assert table(runtime) == {"123": "a@x", "456": "b@x", "7": "c@x"}
    assert runtime.state.mapping_entries()["123"] == MappingEntry("123", "a@x", "00123")
    version = runtime.state.job_status(JobKind.SYNC_MAPPINGS).version
    assert version

    # Nothing changed in AtHoc: nothing is written and the mapping version stays (the pipeline keeps its cache).
    again = run_mapping_sync(runtime, force=True)
    assert (again.added, again.updated, again.removed, again.mappings_total) == (0, 0, 0, 3)
    assert runtime.state.job_status(JobKind.SYNC_MAPPINGS).version == version

    # 456 moves to another user, 7 leaves, 900 arrives.
    athoc_sim.remove_user("b@x")
    athoc_sim.remove_user("c@x")
    add(athoc_sim, ("b2@x", "456"), ("d@x", "0900"))
    third = run_mapping_sync(runtime, force=True)
    assert (third.added, third.updated, third.removed, third.mappings_total) == (1, 1, 1, 3)
    assert table(runtime) == {"123": "a@x", "456": "b2@x", "900": "d@x"}
    assert runtime.state.job_status(JobKind.SYNC_MAPPINGS).version != version
    assert_contract_json(third)


def test_run_log_and_status_are_recorded(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    add(athoc_sim, ("a@x", "1"), ("b@x", "2"))
    before = datetime.now(UTC) - timedelta(minutes=1)

    result = run_mapping_sync(runtime, force=True, trigger="test")

    runs = [r for r in runtime.state.runs_since(before) if r.kind == JobKind.SYNC_MAPPINGS]
    assert len(runs) == 1 and runs[0].run_id == result.run_id and runs[0].trigger == "test"
    assert runs[0].outcome == "success" and runs[0].counts["mappings_total"] == 2
    status = runtime.state.job_status(JobKind.SYNC_MAPPINGS)
    assert status.last_status == "success" and status.last_success is not None
    assert status.last_counts["users_fetched"] == 2
    data = assert_contract_json(result)
    assert data["run_id"] == result.run_id and data["conflict_ids"] == []


def test_summary_log_line_carries_custom_dimensions(make_runtime, athoc_sim, caplog) -> None:
    runtime = make_runtime()
    add(athoc_sim, ("a@x", "1"))
    with caplog.at_level("INFO", logger="shared.mapping_sync"):
        run_mapping_sync(runtime, force=True)
    summaries = [r for r in caplog.records if r.name == "shared.mapping_sync" and "sync-mappings success" in r.message]
    assert len(summaries) == 1
    record = summaries[0]
    assert record.job_kind == "sync-mappings" and record.outcome == "success" and record.added == 1


# ---------------------------------------------------------------- safety


def seeded(runtime: Runtime, sim: Any, count: int) -> None:
    add(sim, *[(f"u{i}@x", str(i)) for i in range(1, count + 1)])
    assert run_mapping_sync(runtime, force=True).status == Outcome.SUCCESS


def test_zero_users_never_wipes_the_table(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seeded(runtime, athoc_sim, 3)
    for user in athoc_sim.users():
        athoc_sim.remove_user(user["LOGIN_ID"])

    result = run_mapping_sync(runtime, force=True)

    assert result.status == Outcome.FAILED and result.exit_code != 0
    assert "no users" in result.error and result.failure.endswith(result.error)
    assert table(runtime) == {"1": "u1@x", "2": "u2@x", "3": "u3@x"}
    assert result.mappings_total == 3
    status = runtime.state.job_status(JobKind.SYNC_MAPPINGS)
    assert status.last_status == "failed" and "no users" in status.last_error


def test_users_without_any_collar_id_are_no_data(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    add(athoc_sim, ("a@x", None), ("b@x", ""))
    result = run_mapping_sync(runtime, force=True)
    assert result.status == Outcome.FAILED and "collar" in result.error
    assert table(runtime) == {}


class LosesSecondPage(AtHocSimulator):
    """A server that answers the first page of a search and then fails every further page."""

    def _search(self, query: dict[str, str]) -> Any:
        if int(query.get("offset", "0")) >= 1:
            raise RuntimeError("page lost")  # the simulator answers 500
        return super()._search(query)


def test_an_error_part_way_through_paging_leaves_the_table(sim_factory) -> None:
    sim, runtime = sim_factory(LosesSecondPage, env={"ATHOC_PAGE_SIZE": "2", **FAST})
    add(sim, *[(f"u{i}@x", str(i)) for i in range(1, 6)])
    runtime.state.apply_mapping_changes([MappingEntry("1", "u1@x", "1"), MappingEntry("99", "old@x", "99")], [])

    result = run_mapping_sync(runtime, force=True)

    assert result.status == Outcome.FAILED and result.exit_code == 1
    assert "AtHoc" in result.error and "unchanged" in result.error
    assert table(runtime) == {"1": "u1@x", "99": "old@x"}
    offsets = [r.query.get("Offset") for r in sim.requests if r.kind == "search"]
    assert offsets[0] == "0" and "1" in offsets  # the first page was read, then paging broke


def test_a_server_repeating_pages_is_an_error_not_a_short_list(sim_factory) -> None:
    sim, runtime = sim_factory(offset_mode="ignore", env={"ATHOC_PAGE_SIZE": "2", **FAST})
    add(sim, *[(f"u{i}@x", str(i)) for i in range(1, 6)])
    result = run_mapping_sync(runtime, force=True)
    assert result.status == Outcome.FAILED and table(runtime) == {}


def test_removing_more_than_the_share_is_refused_even_forced(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seeded(runtime, athoc_sim, 4)
    for i in (1, 2, 3):
        athoc_sim.remove_user(f"u{i}@x")

    refused = run_mapping_sync(runtime, force=True)

    assert refused.status == Outcome.FAILED and refused.exit_code == 1
    assert "3 of 4" in refused.error and "BOBO_MAPPING_MAX_REMOVE_PERCENT=50" in refused.error
    assert len(table(runtime)) == 4
    assert refused.removed == 0 and refused.mappings_total == 4


def test_removing_exactly_the_share_is_allowed(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    seeded(runtime, athoc_sim, 4)
    athoc_sim.remove_user("u1@x")
    athoc_sim.remove_user("u2@x")
    result = run_mapping_sync(runtime, force=True)
    assert result.status == Outcome.SUCCESS and result.removed == 2
    assert table(runtime) == {"3": "u3@x", "4": "u4@x"}


def test_the_share_is_a_setting(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(BOBO_MAPPING_MAX_REMOVE_PERCENT="80")
    seeded(runtime, athoc_sim, 4)
    for i in (1, 2, 3):
        athoc_sim.remove_user(f"u{i}@x")
    assert run_mapping_sync(runtime, force=True).status == Outcome.SUCCESS
    assert table(runtime) == {"4": "u4@x"}


# ---------------------------------------------------------------- conflicts


def test_duplicate_collar_ids_are_reported_and_left_unmapped(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    add(athoc_sim, ("a@x", "00123"), ("b@x", "123"), ("c@x", "5"))

    result = run_mapping_sync(runtime, force=True)

    assert result.status == Outcome.SUCCESS
    assert result.conflicts == 1 and result.conflict_ids == ("123",)
    data = assert_contract_json(result)
    assert data["conflict_details"] == [{"employee_id": "123", "logins": ["a@x", "b@x"]}]
    assert table(runtime) == {"5": "c@x"}
    assert any("collar id 123" in line for line in result.text_lines())


def test_a_mapped_id_that_becomes_a_conflict_is_removed_without_tripping_the_shrink_rule(
    make_runtime, athoc_sim
) -> None:
    runtime = make_runtime()
    add(athoc_sim, ("a@x", "123"))
    assert run_mapping_sync(runtime, force=True).status == Outcome.SUCCESS
    add(athoc_sim, ("b@x", "0123"), ("c@x", "5"))

    result = run_mapping_sync(runtime, force=True)

    # 1 of 1 mapping removed would be 100 % > 50 %, but a conflict is ambiguity, not users gone.
    assert result.status == Outcome.SUCCESS, result.error
    assert (result.removed, result.added, result.conflicts) == (1, 1, 1)
    assert table(runtime) == {"5": "c@x"}


# ---------------------------------------------------------------- paging


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_offset_under_both_meanings(sim_factory, offset_mode: str) -> None:
    sim, runtime = sim_factory(offset_mode=offset_mode, env={"ATHOC_PAGE_SIZE": "2"})
    add(sim, *[(f"u{i}@x", f"{i:05d}") for i in range(1, 8)])

    result = run_mapping_sync(runtime, force=True)

    assert result.status == Outcome.SUCCESS and result.users_fetched == 7
    assert table(runtime) == {str(i): f"u{i}@x" for i in range(1, 8)}
    assert sim.count("search") >= 4  # really paged


# ---------------------------------------------------------------- schedule, outages, timer, CLI


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=LONDON).astimezone(UTC)


def test_the_timer_follows_the_schedule(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(BOBO_TIMEZONE="Europe/London")
    add(athoc_sim, ("a@x", "1"))

    first = run_mapping_sync(runtime, trigger="sync_mappings", now=at("2025-07-01 09:00"))
    assert first.status == Outcome.SUCCESS and "never" in first.reason
    searches = athoc_sim.count("search")

    later = run_mapping_sync(runtime, trigger="sync_mappings", now=at("2025-07-01 10:00"))
    assert later.status == Outcome.SKIPPED and later.exit_code == 0 and later.mappings_total == 1
    assert assert_contract_json(later)["status"] == "skipped"
    assert athoc_sim.count("search") == searches  # a skip asks AtHoc nothing
    assert runtime.state.job_status(JobKind.SYNC_MAPPINGS).last_status == "success"

    evening = run_mapping_sync(runtime, trigger="sync_mappings", now=at("2025-07-01 20:05"))
    assert evening.status == Outcome.SUCCESS and "daily" in evening.reason
    assert run_mapping_sync(runtime, now=at("2025-07-01 21:05")).status == Outcome.SKIPPED
    # A catch-up run after downtime (past_due) just applies the same rule: more than 2 days -> runs.
    assert run_mapping_sync(runtime, now=at("2025-07-04 08:00")).status == Outcome.SUCCESS


def test_an_outage_is_recorded_not_raised_and_the_next_tick_retries(make_runtime, athoc_sim) -> None:
    runtime = make_runtime(**FAST)
    add(athoc_sim, ("a@x", "1"))
    assert run_mapping_sync(runtime, now=at("2025-07-01 20:05")).status == Outcome.SUCCESS
    athoc_sim.fail_next(50, status=503, kinds=("search",))

    failed = run_mapping_sync(runtime, force=True, now=at("2025-07-01 20:10"))

    assert failed.status == Outcome.FAILED and failed.exit_code == 1 and "503" in failed.error
    assert table(runtime) == {"1": "a@x"}
    athoc_sim.clear_faults()
    retried = run_mapping_sync(runtime, now=at("2025-07-01 21:00"))  # not forced: "last attempt failed"
    assert retried.status == Outcome.SUCCESS and "failed" in retried.reason


def test_the_timer_function_never_raises_for_an_outage(make_test_env, athoc_sim, monkeypatch) -> None:
    import shared.runtime
    from functions.maintenance import sync_mappings

    env = make_test_env(**FAST)
    runtime = Runtime(Settings.from_env(env))
    monkeypatch.setattr(shared.runtime, "_process_runtime", runtime)
    athoc_sim.fail_next(50, status=503, kinds=("search",))

    sync_mappings.build().get_user_function()(TimerRequest(past_due=True))

    status = runtime.state.job_status(JobKind.SYNC_MAPPINGS)
    assert status.last_status == "failed" and "503" in status.last_error


def test_cli_sync_mappings(make_test_env, athoc_sim, capsys) -> None:
    from shared.cli import main

    env = make_test_env()
    add(athoc_sim, ("a@x", "1"), ("b@x", "2"))

    assert main(["sync-mappings", "--force", "--json"], env=env) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["status"] == "success" and data["mappings_total"] == 2 and data["added"] == 2

    assert main(["sync-mappings", "--json"], env=env) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["status"] == "skipped"

    for user in athoc_sim.users():
        athoc_sim.remove_user(user["LOGIN_ID"])
    assert main(["sync-mappings", "--force", "--json"], env=env) != 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["status"] == "failed"
    last_stderr = captured.err.strip().splitlines()[-1]
    assert "no users" in last_stderr and "Traceback" not in captured.err


# ---------------------------------------------------------------- two instances at once


def test_two_concurrent_forced_runs_leave_a_correct_table(make_runtime, athoc_sim) -> None:
    runtime = make_runtime()
    # The table holds stale rows of both kinds: some to update, some to delete (a delete both runs
    # want to make fails the slower run's transaction unless it re-diffs).
    runtime.state.apply_mapping_changes(
        [MappingEntry(str(i), f"old{i}@x", str(i)) for i in range(1, 41)]
        + [MappingEntry(str(i), f"gone{i}@x", str(i)) for i in range(200, 230)],
        [],
    )
    add(athoc_sim, *[(f"u{i}@x", str(i)) for i in range(1, 81)])
    results: list[MappingSyncResult] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        other = Runtime(runtime.settings)  # a second instance: its own clients and state objects
        barrier.wait()
        results.append(run_mapping_sync(other, force=True, trigger="sync_mappings"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert [r.status for r in results] == [Outcome.SUCCESS, Outcome.SUCCESS], [r.error for r in results]
    assert table(runtime) == {str(i): f"u{i}@x" for i in range(1, 81)}


def test_applying_the_same_difference_twice_is_harmless(make_runtime) -> None:
    runtime = make_runtime()
    upserts = [MappingEntry("1", "a@x", "1"), MappingEntry("2", "b@x", "2")]
    runtime.state.apply_mapping_changes(upserts, [])
    runtime.state.apply_mapping_changes(upserts, [])
    assert table(runtime) == {"1": "a@x", "2": "b@x"}
