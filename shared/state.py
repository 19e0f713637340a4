"""Table Storage state, replacing the predecessor's SQLite file.

Tables (all carry `BOBO_TABLE_PREFIX`):
- files:      one record per incoming blob name: state, attempts, size, ETag, first seen, last attempt, last error...
- watermarks: per employee, the last event applied to AtHoc (so older or repeated events are never sent again)
- mappings:   normalised employee id -> AtHoc login, as the last mapping sync found it
- runs:       one entry per run of any job (the run log), partitioned by UTC day, newest first
- jobstatus:  one row per job kind: last success, last attempt, last status and error, counts

Reads are bulk (one paged query per table per batch); writes that share a partition go in transactions
of at most 100 operations (Azurite answers a 101-operation transaction with a malformed reply).
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from threading import Lock
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.errors import ErrorKind
from shared.records import (
    FILES_PARTITION,
    STATUS_PARTITION,
    FileRecord,
    FileState,
    JobKind,
    JobStatus,
    MappingEntry,
    Outcome,
    RunRecord,
    as_utc,
    decode_key,
    encode_key,
    status_from_entity,
    status_to_entity,
    utcnow,
)
from shared.storage import table_service

log = logging.getLogger(__name__)

TABLE_SUFFIXES = ("files", "watermarks", "mappings", "runs", "jobstatus", "history")
TRANSACTION_LIMIT = 100
DELETE_RACE_ATTEMPTS = 5

# Mappings and watermarks (one row per employee, tens of thousands) are spread over hashed partitions:
# a partition is Table Storage's unit of scale (about 2,000 entities/s each), and Azurite's lookups
# inside one partition are linear, which made a 50,000-user cold mapping sync take 683 s there (72 s in
# 64 partitions). Mappings are written in bulk once a day: 64 buckets. Watermarks are written every batch
# for the users it updated, one transaction per bucket touched: 8 buckets keep a burst of 150 users at
# 8 transactions (64 would make it ~60) while still splitting a large table.
WATERMARK_PARTITION_PREFIX = "wm"
MAPPING_PARTITION_PREFIX = "map"
# The decision history (shared/history.py) is keyed like the watermarks: written every batch, read per employee.
HISTORY_PARTITION_PREFIX = "hist"
BUCKETS = {MAPPING_PARTITION_PREFIX: 64, WATERMARK_PARTITION_PREFIX: 8, HISTORY_PARTITION_PREFIX: 8}
# Version 0.1.0 kept each of those tables in one partition of this name; `ensure_tables` moves such rows.
LEGACY_PARTITION = {"watermarks": "wm", "mappings": "map"}


def employee_partition(prefix: str, employee_id: str) -> str:
    """The partition of an employee's row: a stable hash bucket, so any id lands in the same one."""
    return f"{prefix}-{zlib.crc32(employee_id.encode('utf-8')) % BUCKETS[prefix]:02d}"


class StateStore:
    """All Table Storage access of the app."""

    _mapping_cache: dict[tuple[str, str], dict[str, str]] = {}  # noqa: RUF012 - process-wide on purpose
    _mapping_cache_lock = Lock()

    def __init__(self, settings):  # type: ignore[no-untyped-def]
        self.settings = settings
        self.service = table_service(settings)
        self.prefix = settings.table_prefix

    def table(self, suffix: str) -> TableClient:
        return self.service.get_table_client(f"{self.prefix}{suffix}")

    def ensure_tables(self) -> list[str]:
        created = []
        for suffix in TABLE_SUFFIXES:
            try:
                self.service.create_table(f"{self.prefix}{suffix}")
                created.append(f"{self.prefix}{suffix}")
            except ResourceExistsError:
                pass
        self._move_legacy_rows()
        return created

    def _move_legacy_rows(self) -> None:
        """Rows written by version 0.1.0 into one partition move to their hash buckets (copy, then delete).

        Idempotent and crash-safe: a row is deleted only after its copy is written; a watermark copy never
        replaces a newer one already in its bucket.
        """
        for suffix, partition in LEGACY_PARTITION.items():
            legacy = list(self._query_partition(suffix, partition))
            if not legacy:
                continue
            log.info("moving %d %s rows of version 0.1.0 into hashed partitions", len(legacy), suffix)
            if suffix == "watermarks":
                newer = self.load_watermarks()
                keep = {
                    decode_key(e["RowKey"]): str(e["wm"])
                    for e in legacy
                    if decode_key(e["RowKey"]) not in newer or newer[decode_key(e["RowKey"])] == str(e["wm"])
                }
                self.save_watermarks(keep)
            else:
                self._transact(
                    suffix,
                    (
                        (
                            "upsert",
                            {
                                **_plain(e),
                                "PartitionKey": employee_partition(MAPPING_PARTITION_PREFIX, decode_key(e["RowKey"])),
                            },
                        )
                        for e in legacy
                    ),
                )
            self._transact(suffix, (("delete", {"PartitionKey": partition, "RowKey": e["RowKey"]}) for e in legacy))

    # -- generic helpers --------------------------------------------------------------------------
    def _query_partition(self, suffix: str, partition: str, extra_filter: str = "") -> Iterator[dict[str, Any]]:
        query = f"PartitionKey eq '{partition}'"
        if extra_filter:
            query += f" and {extra_filter}"
        yield from self.table(suffix).query_entities(query, results_per_page=1000)

    def _transact(self, suffix: str, operations: Iterable[tuple[Any, ...]]) -> int:
        """Submit operations in transactions of at most 100 per partition; returns the number of requests.

        Operations are grouped by PartitionKey (a transaction may hold one partition only), keeping their
        order within each partition.
        """
        table = self.table(suffix)
        by_partition: dict[str, list[tuple[Any, ...]]] = {}
        for op in operations:
            by_partition.setdefault(op[1]["PartitionKey"], []).append(op)
        requests = 0
        for partition, partition_ops in by_partition.items():
            for start in range(0, len(partition_ops), TRANSACTION_LIMIT):
                requests += self._submit(table, partition, partition_ops[start : start + TRANSACTION_LIMIT])
        return requests

    def _submit(self, table: TableClient, partition: str, operations: list[tuple[Any, ...]]) -> int:
        """One transaction; a delete of a row already gone (a concurrent run got there first) counts as done.

        One such delete fails the whole transaction with 404, so the partition's keys are read again and the
        transaction resent without those deletes. Returns the number of requests made.
        """
        requests = 0
        for attempt in range(1, DELETE_RACE_ATTEMPTS + 1):
            try:
                requests += 1
                table.submit_transaction(operations)
                return requests
            except HttpResponseError as error:
                deletes = any(op[0] == "delete" for op in operations)
                if error.status_code != 404 or not deletes or attempt == DELETE_RACE_ATTEMPTS:
                    raise
            present = {e["RowKey"] for e in table.query_entities(f"PartitionKey eq '{partition}'", select=["RowKey"])}
            operations = [op for op in operations if op[0] != "delete" or op[1]["RowKey"] in present]
            if not operations:
                return requests
        return requests

    def _query_all(self, suffix: str, prefix: str, select: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every row of the hashed partitions `prefix-NN` in one paged query (ge/lt on the key range)."""
        query = f"PartitionKey ge '{prefix}-' and PartitionKey lt '{prefix}.'"
        yield from self.table(suffix).query_entities(query, select=select, results_per_page=1000)

    # -- files ------------------------------------------------------------------------------------
    def get_file(self, name: str) -> FileRecord | None:
        try:
            return FileRecord.from_entity(self.table("files").get_entity(FILES_PARTITION, encode_key(name)))
        except ResourceNotFoundError:
            return None

    def waiting_files(self) -> dict[str, FileRecord]:
        """Every record still waiting, in one paged query."""
        records = (
            FileRecord.from_entity(e) for e in self._query_partition("files", FILES_PARTITION, "state eq 'waiting'")
        )
        return {r.name: r for r in records}

    def failed_files(self) -> dict[str, FileRecord]:
        records = (
            FileRecord.from_entity(e) for e in self._query_partition("files", FILES_PARTITION, "state eq 'failed'")
        )
        return {r.name: r for r in records}

    def record_seen(self, name: str, etag: str, size: int) -> FileRecord:
        """Note a file the moment its trigger fires; a new version of a finished name starts afresh."""
        now = utcnow()
        existing = self.get_file(name)
        if existing is not None and existing.state == FileState.WAITING:
            return existing
        if existing is not None and existing.etag == etag:
            return existing  # a duplicate event for a file already finished
        record = FileRecord(name=name, etag=etag, size=size, first_seen=now, updated_at=now)
        self.table("files").upsert_entity(record.to_entity(), mode=UpdateMode.REPLACE)
        return record

    def save_files(self, records: Iterable[FileRecord]) -> int:
        now = utcnow()
        operations = []
        for record in records:
            record.updated_at = now
            operations.append(("upsert", record.to_entity(), {"mode": UpdateMode.REPLACE}))
        return self._transact("files", operations)

    def purge_files(self, before: datetime) -> int:
        old = [
            e
            # Only processed records: failed files stay until an operator acts, and so do their records.
            for e in self._query_partition("files", FILES_PARTITION, "state eq 'processed'")
            if (as_utc(e.get("updated_at")) or utcnow()) < before
        ]
        self._transact("files", [("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]}) for e in old])
        return len(old)

    # -- watermarks -------------------------------------------------------------------------------
    def load_watermarks(self) -> dict[str, str]:
        """employee id -> watermark text (see decisions.Watermark)."""
        # A row without `wm` holds only `last_applied` (a user the cleanup cleared): no watermark.
        return {
            decode_key(e["RowKey"]): str(e["wm"])
            for e in self._query_all("watermarks", WATERMARK_PARTITION_PREFIX)
            if e.get("wm")
        }

    def save_watermarks(
        self, watermarks: Mapping[str, str], extra: Mapping[str, Mapping[str, Any]] | None = None
    ) -> int:
        """Upsert (merge) each employee's watermark; `extra` adds properties to some rows in the same
        transactions (the pipeline's `last_applied`, shared/history.py)."""
        extra = extra or {}
        operations = [
            (
                "upsert",
                {
                    "PartitionKey": employee_partition(WATERMARK_PARTITION_PREFIX, emp),
                    "RowKey": encode_key(emp),
                    "wm": text,
                    **extra.get(emp, {}),
                },
            )
            for emp, text in sorted(watermarks.items())
        ]
        return self._transact("watermarks", operations)

    # -- mappings ---------------------------------------------------------------------------------
    def mapping_entries(self) -> dict[str, MappingEntry]:
        return {
            decode_key(e["RowKey"]): MappingEntry(decode_key(e["RowKey"]), str(e["login"]), str(e.get("collar", "")))
            for e in self._query_all("mappings", MAPPING_PARTITION_PREFIX)
        }

    def mapping_count(self) -> int:
        """How many mappings there are, reading keys only (the table can hold tens of thousands of rows)."""
        return sum(1 for _ in self._query_all("mappings", MAPPING_PARTITION_PREFIX, select=["RowKey"]))

    def load_mappings(self) -> dict[str, str]:
        """employee id -> login; reuses this process's copy while the mapping version is unchanged."""
        version = self.job_status(JobKind.SYNC_MAPPINGS).version
        cache_key = (f"{self.service.url}|{self.prefix}", version)
        with self._mapping_cache_lock:
            cached = self._mapping_cache.get(cache_key) if version else None
        if cached is not None:
            return cached
        mappings = {emp: entry.login for emp, entry in self.mapping_entries().items()}
        if version:
            with self._mapping_cache_lock:
                self._mapping_cache.clear()
                self._mapping_cache[cache_key] = mappings
        return mappings

    def apply_mapping_changes(self, upserts: Iterable[MappingEntry], deletes: Iterable[str]) -> int:
        """Write only what changed, in transactions; returns the number of entity writes."""
        operations: list[tuple[str, dict[str, Any]]] = [
            (
                "upsert",
                {
                    "PartitionKey": employee_partition(MAPPING_PARTITION_PREFIX, m.employee_id),
                    "RowKey": encode_key(m.employee_id),
                    "login": m.login,
                    "collar": m.collar,
                },
            )
            for m in upserts
        ]
        operations += [
            ("delete", {"PartitionKey": employee_partition(MAPPING_PARTITION_PREFIX, emp), "RowKey": encode_key(emp)})
            for emp in deletes
        ]
        self._transact("mappings", operations)
        return len(operations)

    # -- run log ----------------------------------------------------------------------------------
    def write_run(self, run: RunRecord) -> None:
        self.table("runs").upsert_entity(run.to_entity())

    def runs_since(self, since: datetime, now: datetime | None = None) -> list[RunRecord]:
        now = now or utcnow()
        runs: list[RunRecord] = []
        day = since.astimezone(UTC).date()
        while day <= now.date():
            for entity in self._query_partition("runs", day.strftime("%Y%m%d")):
                run = RunRecord.from_entity(entity)
                if run.started_at >= since:
                    runs.append(run)
            day += timedelta(days=1)
        runs.sort(key=lambda r: r.started_at, reverse=True)
        return runs

    def purge_runs(self, before: datetime) -> int:
        purged = 0
        cutoff_day = before.strftime("%Y%m%d")
        for entity in self.table("runs").query_entities(
            f"PartitionKey lt '{cutoff_day}'", select=["PartitionKey", "RowKey"]
        ):
            self.table("runs").delete_entity(entity["PartitionKey"], entity["RowKey"])
            purged += 1
        return purged

    def finish_run(
        self,
        run: RunRecord,
        *,
        status_counts: Mapping[str, Any] | None = None,
        new_version: bool = False,
        at: datetime | None = None,
    ) -> bool:
        """Every job's last step: its run-log entry and its status row. False (logged) if storage refused."""
        try:
            self.write_run(run)
            self.record_job(
                run.kind,
                run.outcome,
                error=run.error,
                error_kind=run.error_kind,
                counts=run.counts if status_counts is None else status_counts,
                new_version=new_version,
                at=at,
            )
            return True
        except AzureError as error:
            log.error("could not record the %s run %s: %s", run.kind, run.run_id, str(error).splitlines()[0][:300])
            return False

    # -- job status -------------------------------------------------------------------------------
    def job_status(self, kind: str) -> JobStatus:
        try:
            entity = self.table("jobstatus").get_entity(STATUS_PARTITION, kind)
        except ResourceNotFoundError:
            return JobStatus(kind=kind)
        return status_from_entity(entity)

    def all_job_status(self) -> dict[str, JobStatus]:
        found = {e["RowKey"]: status_from_entity(e) for e in self._query_partition("jobstatus", STATUS_PARTITION)}
        return {kind.value: found.get(kind.value, JobStatus(kind=kind.value)) for kind in JobKind} | found

    def record_job(
        self,
        kind: str,
        outcome: str,
        *,
        error: str = "",
        error_kind: ErrorKind | None = None,
        counts: Mapping[str, Any] | None = None,
        new_version: bool = False,
        at: datetime | None = None,
    ) -> JobStatus:
        """Update the job's status row with optimistic concurrency (ETag), retrying on a concurrent writer."""
        table = self.table("jobstatus")
        at = at or utcnow()
        for _ in range(10):
            try:
                entity = table.get_entity(STATUS_PARTITION, kind)
                etag = entity.metadata["etag"]
                status = status_from_entity(entity)
            except ResourceNotFoundError:
                etag, status = None, JobStatus(kind=kind)
            status.last_attempt = at
            status.last_run_status = str(outcome)
            status.last_run_finished = at
            if outcome != Outcome.SKIPPED:
                status.last_status = outcome
                status.last_finished = at
                status.last_error = error if outcome == Outcome.FAILED else ""
                status.last_error_kind = error_kind if outcome == Outcome.FAILED else None
                status.last_counts = dict(counts or {})
                if outcome == Outcome.SUCCESS:
                    status.last_success = at
                    status.success_count += 1
                    status.failing_since = None
                else:
                    status.failure_count += 1
                    status.failing_since = status.failing_since or at
            elif status.last_status == Outcome.NEVER:
                status.last_status = Outcome.SKIPPED
                status.last_finished = at
            if new_version:
                status.version = uuid.uuid4().hex
            new_entity = status_to_entity(status)
            try:
                if etag is None:
                    table.create_entity(new_entity)
                else:
                    table.update_entity(
                        new_entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
                return status
            except (ResourceExistsError, HttpResponseError) as error:
                if isinstance(error, ResourceExistsError) or getattr(error, "status_code", None) == 412:
                    time.sleep(0.05)
                    continue
                raise
        raise RuntimeError(f"could not update the status of {kind}: too many concurrent writers")


def _plain(entity: Mapping[str, Any]) -> dict[str, Any]:
    """An entity's properties without the service's metadata (Timestamp, etag), ready to write elsewhere."""
    return {key: value for key, value in entity.items() if key != "Timestamp"}
