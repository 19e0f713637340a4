"""Table Storage state against Azurite: hashed partitions of mappings and watermarks, and the move of rows
that version 0.1.0 kept in one partition."""

from __future__ import annotations

from shared.records import MappingEntry, encode_key
from shared.state import (
    BUCKETS,
    LEGACY_PARTITION,
    MAPPING_PARTITION_PREFIX,
    WATERMARK_PARTITION_PREFIX,
    employee_partition,
)


def partitions(runtime, suffix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entity in runtime.state.table(suffix).list_entities(select=["PartitionKey"]):
        counts[entity["PartitionKey"]] = counts.get(entity["PartitionKey"], 0) + 1
    return counts


def test_employee_partition_is_stable_and_spread() -> None:
    ids = [str(n) for n in range(5000)]
    buckets = {employee_partition("map", emp) for emp in ids}
    # Stored rows are found where this function puts them: a change of hash or bucket count would orphan
    # every mapping and watermark already written (and a lost watermark lets an older event through).
    assert [employee_partition("map", "123"), employee_partition("wm", "123")] == ["map-18", "wm-02"]
    assert [employee_partition("map", "00123"), employee_partition("wm", "4711")] == ["map-58", "wm-07"]
    assert len(buckets) == BUCKETS["map"]
    assert len({employee_partition("wm", emp) for emp in ids}) == BUCKETS["wm"]
    assert all(b.startswith("map-") and len(b) == len("map-00") for b in buckets)


def test_mappings_spread_over_partitions_round_trip_and_delete(make_runtime) -> None:
    runtime = make_runtime()
    entries = [MappingEntry(str(n), f"user{n}@x", f"{n:05d}") for n in range(1, 351)]

    writes = runtime.state.apply_mapping_changes(entries, [])
    runtime.state.apply_mapping_changes([], [str(n) for n in range(1, 51)])

    assert writes == 350
    stored = runtime.state.mapping_entries()
    assert sorted(stored, key=int) == [str(n) for n in range(51, 351)]
    assert stored["200"] == MappingEntry("200", "user200@x", "00200")
    spread = partitions(runtime, "mappings")
    assert len(spread) > 32 and sum(spread.values()) == 300
    assert all(p.startswith(f"{MAPPING_PARTITION_PREFIX}-") for p in spread)


def test_watermarks_spread_over_partitions_and_overwrite_per_employee(make_runtime) -> None:
    runtime = make_runtime()
    runtime.state.save_watermarks({str(n): f"2025-10-22T07:{n % 60:02d}:00||BON" for n in range(250)})
    runtime.state.save_watermarks({"7": "2025-10-22T08:00:00||BOF"})

    loaded = runtime.state.load_watermarks()

    assert len(loaded) == 250 and loaded["7"] == "2025-10-22T08:00:00||BOF"
    assert len(partitions(runtime, "watermarks")) == BUCKETS[WATERMARK_PARTITION_PREFIX]


def test_rows_of_version_0_1_0_move_to_their_buckets_and_a_newer_watermark_is_kept(make_runtime) -> None:
    runtime = make_runtime()
    state = runtime.state
    legacy_map, legacy_wm = LEGACY_PARTITION["mappings"], LEGACY_PARTITION["watermarks"]
    for n in (1, 2, 3):
        state.table("mappings").upsert_entity(
            {"PartitionKey": legacy_map, "RowKey": encode_key(str(n)), "login": f"old{n}@x", "collar": f"0{n}"}
        )
        state.table("watermarks").upsert_entity(
            {"PartitionKey": legacy_wm, "RowKey": encode_key(str(n)), "wm": "2025-10-22T07:00:00||BON"}
        )
    # A crash after part of an earlier move: employee 3 already has a newer watermark in its bucket.
    state.table("watermarks").upsert_entity(
        {
            "PartitionKey": employee_partition(WATERMARK_PARTITION_PREFIX, "3"),
            "RowKey": encode_key("3"),
            "wm": "2025-10-22T09:00:00||BOF",
        }
    )

    state.ensure_tables()
    state.ensure_tables()  # idempotent: nothing left to move

    assert {emp: e.login for emp, e in state.mapping_entries().items()} == {"1": "old1@x", "2": "old2@x", "3": "old3@x"}
    assert state.load_watermarks() == {
        "1": "2025-10-22T07:00:00||BON",
        "2": "2025-10-22T07:00:00||BON",
        "3": "2025-10-22T09:00:00||BOF",
    }
    assert legacy_map not in partitions(runtime, "mappings")
    assert legacy_wm not in partitions(runtime, "watermarks")


def test_a_delete_of_a_row_already_gone_does_not_fail_the_rest_of_its_transaction(make_runtime) -> None:
    runtime = make_runtime()
    # Ids of one bucket, so both deletes share a transaction, as when two syncs remove the same rows.
    same_bucket = [
        emp for emp in map(str, range(2000)) if employee_partition(MAPPING_PARTITION_PREFIX, emp) == "map-05"
    ]
    present, gone = same_bucket[:3], same_bucket[3]
    runtime.state.apply_mapping_changes([MappingEntry(emp, f"u{emp}@x", emp) for emp in present], [])

    runtime.state.apply_mapping_changes([], [gone, present[0]])

    assert sorted(runtime.state.mapping_entries()) == sorted(present[1:])
