"""The status report's text lines, HTML page and 503 cause, rendered from a report built by hand (no storage)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from azure.core.exceptions import ServiceRequestError

from shared.records import JobKind, Outcome
from shared.settings import SettingsError
from shared.status_page import render_error_html, render_html, text_lines, unavailable_cause
from shared.status_report import DayTotals, FailedFile, Health, HourBucket, LastRun, RunSummary, StatusReport

NOW = datetime(2025, 10, 22, 9, 47, 30, tzinfo=UTC)  # 10:47 in London (summer time until 26 October)
CSP = "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"


def hours(busy: dict[int, tuple[int, int]] | None = None) -> tuple[HourBucket, ...]:
    """24 buckets ending at NOW's hour; `busy` maps a bucket index to (processed, failed)."""
    start = NOW.replace(minute=0, second=0) - timedelta(hours=23)
    buckets = []
    for i in range(24):
        processed, failed = (busy or {}).get(i, (0, 0))
        hour = start + timedelta(hours=i)
        label = f"{(hour + timedelta(hours=1)).hour:02d}:00"  # London summer time
        buckets.append(HourBucket(hour=hour, label=label, files_processed=processed, files_failed=failed))
    return tuple(buckets)


def failed_files(count: int) -> tuple[FailedFile, ...]:
    return tuple(FailedFile(name=f"f{i:02d}.csv", reason="not a .csv file", attempts=i) for i in range(count))


def make_report(**changes: Any) -> StatusReport:
    never = LastRun(Outcome.NEVER, None, None, None, None)
    report = StatusReport(
        service="bobo-sync-azure",
        version="9.9.9",
        generated_at=NOW,
        timezone="Europe/London",
        health=Health(healthy=False, reasons=("mapping sync has not succeeded for 3 days",)),
        mappings_total=3,
        mappings_last_sync=NOW - timedelta(days=3),
        files_pending=2,
        files_retrying=1,
        oldest_pending_age_seconds=47 * 60,
        oldest_pending_name="20251022074142.csv",
        files_failed=1,
        failed_files=(FailedFile(name="bad.csv", reason="retries exhausted", attempts=5),),
        last_runs={
            JobKind.PROCESS: LastRun(Outcome.FAILED, NOW - timedelta(minutes=5), "AtHoc   busy\n  again", None, None),
            JobKind.SYNC_MAPPINGS: LastRun(Outcome.SKIPPED, NOW - timedelta(hours=1), None, None, None),
            JobKind.CLEANUP: never,
        },
        last_24h=DayTotals(files_processed=7, files_failed=1, rows_read=72, rows_rejected=2, users_updated=50),
        hourly=hours({21: (8, 2)}),
        recent_runs=(
            RunSummary("process", "abc123", NOW - timedelta(hours=2), 3.0, "failed", "ingest_csv", "bad.csv: x"),
        ),
    )
    return replace(report, **changes)


def test_text_lines_say_the_verdict_then_each_figure_in_local_time() -> None:
    assert text_lines(make_report()) == [
        "NOT HEALTHY",
        "  - mapping sync has not succeeded for 3 days",
        "mappings: 3 (last sync 19 Oct 10:47)",
        "files waiting: 2 (oldest 47 minutes: 20251022074142.csv; 1 retrying)",
        "files failed: 1",
        "  bad.csv: retries exhausted (attempts 5)",
        "process: failed at 10:42: AtHoc busy again",
        "sync-mappings: skipped at 09:47",
        "cleanup: never",
        "last 24 hours: 7 files processed, 1 failed, 72 rows (2 rejected), 50 users updated, 0 not found, 0 unmapped",
    ]


def test_text_lists_twenty_failed_files_and_counts_the_rest() -> None:
    lines = text_lines(make_report(files_failed=25, failed_files=failed_files(25), files_pending=0))

    assert "files waiting: 0" in lines
    listed = [line for line in lines if line.startswith("  f")]
    assert listed[0] == "  f00.csv: not a .csv file (attempts 0)" and len(listed) == 20
    assert "  ... and 5 more (see --json)" in lines


def test_page_escapes_every_value_and_allows_nothing_but_its_own_css() -> None:
    hostile = FailedFile(name='a&b"<i>.csv', reason="<script>alert(1)</script>", attempts=1)
    page = render_html(make_report(failed_files=(hostile,), health=Health(False, ("<b>x</b> & y",))))

    assert page.startswith("<!doctype html>") and CSP in page
    assert "<script" not in page and "<i>" not in page and "<b>x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&amp;b&quot;&lt;i&gt;.csv" in page
    assert "<li>&lt;b&gt;x&lt;/b&gt; &amp; y</li>" in page
    assert "Generated 10:47 (Europe/London)" in page


def test_page_lists_fifty_failed_files_and_counts_the_rest() -> None:
    page = render_html(make_report(files_failed=57, failed_files=failed_files(57)))

    assert "<h2>Failed files (57)</h2>" in page
    assert page.count("<td>not a .csv file</td>") == 50
    assert "... and 7 more." in page


def test_chart_scales_its_bars_to_the_busiest_hour() -> None:
    page = render_html(make_report())

    assert page.count("<rect") == 48  # processed and failed, per hour
    assert "<title>08:00: 8 processed, 2 failed</title>" in page
    heights = [float(h) for h in re.findall(r"height='([\d.]+)'", page)]
    assert max(heights) == 134 * 8 / 10  # the plot is 134 px high; the busiest hour had 10 files


def test_healthy_report_and_empty_lists() -> None:
    healthy = make_report(health=Health(True, ()), files_failed=0, failed_files=(), recent_runs=())

    assert text_lines(healthy)[0] == "HEALTHY"
    page = render_html(healthy)
    assert "<strong>Healthy</strong>" in page
    assert "<h2>Failed files</h2><p>None.</p>" in page
    assert "No runs in the last 24 hours." in page


def test_json_writes_times_in_utc_with_a_z() -> None:
    report = make_report(generated_at=NOW.astimezone(ZoneInfo("Asia/Tokyo")))

    data = report.to_json()
    assert data["generated_at"] == "2025-10-22T09:47:30Z"
    assert data["mappings_last_sync"] == "2025-10-19T09:47:30Z"
    assert data["last_runs"]["cleanup"] == {
        "status": "never",
        "finished_at": None,
        "error": None,
        "last_success": None,
        "failing_since": None,
    }
    assert data["hourly"][0] == {
        "hour": "2025-10-21T10:00:00Z",
        "label": "11:00",
        "files_processed": 0,
        "files_failed": 0,
        "files_retry": 0,
        "rows_read": 0,
        "users_updated": 0,
    }


def test_unavailable_cause_names_the_cause_without_a_key() -> None:
    settings = SettingsError(["BOBO_STORAGE is required"])
    azure = ServiceRequestError("connect failed: AccountKey=c2VjcmV0;BlobEndpoint=http://x sig=abc&se=1")

    assert unavailable_cause(settings) == "invalid settings: BOBO_STORAGE is required"
    cause = unavailable_cause(azure)
    assert cause.startswith("storage unreachable: ") and "AccountKey=<hidden>" in cause and "sig=<hidden>" in cause
    assert "c2VjcmV0" not in cause and "abc" not in cause
    assert unavailable_cause(KeyError("x")).startswith("status failed: KeyError: ")
    error_page = render_error_html("storage unreachable: <down>")
    assert CSP in error_page and "&lt;down&gt;" in error_page and "<down>" not in error_page
