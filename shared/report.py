"""The status report: one answer to "is it working, and if not, why?" for `status --json`, the `status`
HTTP function and its HTML page.

Everything comes from storage the jobs already write (containers, file records, the run log, the job
status rows); building the report makes no AtHoc call, so it answers while AtHoc is down and says so.
Times in JSON are ISO 8601 UTC; the readable reasons and the page show them in `BOBO_TIMEZONE`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared import SERVICE_NAME, __version__
from shared.state import FileRecord, JobKind, JobStatus, Outcome, RunRecord, utcnow

# Jobs the contract lists under `last_runs` (retry-failed runs show in `recent_runs` instead).
REPORTED_JOBS = (JobKind.PROCESS, JobKind.SYNC_MAPPINGS, JobKind.CLEANUP)
JOB_TITLES = {
    JobKind.PROCESS: "file processing",
    JobKind.SYNC_MAPPINGS: "mapping sync",
    JobKind.CLEANUP: "stale duty cleanup",
    JobKind.RETRY_FAILED: "retry of failed files",
}
# Files arrive every minute and the sweep runs every 5: a file older than this is stuck, not just queued.
BACKLOG_ALERT_SECONDS = 15 * 60
FAILED_FILES_LISTED = 500
RECENT_RUNS_LISTED = 10
HOURS = 24
# Counts summed over the last 24 hours of process runs (the run log's keys, see pipeline.ProcessReport).
DAY_COUNTS = (
    "files_processed",
    "files_failed",
    "files_retry",
    "rows_read",
    "rows_rejected",
    "updates_sent",
    "users_updated",
    "users_not_found",
    "users_denied",
    "unmapped_employees",
)
HOUR_COUNTS = ("files_processed", "files_failed", "files_retry", "rows_read", "users_updated")
# Texts of the AtHoc client's errors that mean "credentials or trust are wrong", not "AtHoc is busy".
_AUTH_MARKERS = re.compile(
    r"token request failed|TLS failure|a fresh token was refused|User Manager role|invalid_grant|invalid_client",
    re.IGNORECASE,
)


# ------------------------------------------------------------------------------------- the report


def build_status(runtime: Any, now: datetime | None = None) -> dict[str, Any]:
    """The status report as a JSON-ready dict (contract section 6 keys plus the operator's extras)."""
    runtime.ensure_ready()
    now = now or utcnow()
    settings, state, storage = runtime.settings, runtime.state, runtime.storage
    zone = settings.timezone

    incoming = storage.list_incoming()
    waiting = state.waiting_files()
    failed = _failed_files(runtime)
    jobs = state.all_job_status()
    runs = state.runs_since(now - timedelta(hours=HOURS), now=now)
    mapping_status = jobs[JobKind.SYNC_MAPPINGS]

    oldest_age = int((now - incoming[0].last_modified).total_seconds()) if incoming else None
    report: dict[str, Any] = {
        "service": SERVICE_NAME,
        "version": __version__,
        "generated_at": _iso(now),
        "timezone": settings.timezone_name,
        "health": {},  # filled below, kept first for readers of the raw JSON
        "mappings_total": _mapping_count(state),
        "mappings_last_sync": _iso(mapping_status.last_success),
        "files_pending": len(incoming),
        "files_retrying": sum(1 for b in incoming if (r := waiting.get(b.name)) and r.attempts > 0),
        "oldest_pending_age_seconds": max(oldest_age, 0) if oldest_age is not None else None,
        "oldest_pending_name": incoming[0].name if incoming else None,
        "files_failed": len(failed),
        "failed_files": failed[:FAILED_FILES_LISTED],
        "last_runs": {kind.value: _last_run(jobs[kind]) for kind in REPORTED_JOBS},
        "last_24h": _day_totals(runs),
        "hourly": _hourly(runs, now, zone),
        "recent_runs": [_run_summary(run) for run in runs[:RECENT_RUNS_LISTED]],
    }
    report["health"] = verdict(report, jobs, settings.mapping_max_age_days, zone, now)
    return report


def _mapping_count(state: Any) -> int:
    return int(state.mapping_count())


def _failed_files(runtime: Any) -> list[dict[str, Any]]:
    """What lies in the failed container (what retry-failed acts on), newest first, with reason and attempts.

    The reason is the file record's last error; the pipeline also writes it into the blob's metadata, which
    covers records already purged or a file moved there by hand.
    """
    settings = runtime.settings
    records = runtime.state.failed_files()
    by_destination = {r.destination: r for r in records.values() if r.destination}
    items = []
    for blob in runtime.storage.container(settings.failed_container).list_blobs(include=["metadata"]):
        record = by_destination.get(f"{settings.failed_container}/{blob.name}") or records.get(blob.name)
        metadata = blob.metadata or {}
        items.append((blob.last_modified, _failed_entry(blob.name, record, metadata)))
    items.sort(key=lambda item: item[0], reverse=True)
    return [entry for _, entry in items]


def _failed_entry(name: str, record: FileRecord | None, metadata: dict[str, str]) -> dict[str, Any]:
    reason = (record.last_error if record is not None else "") or metadata.get("error", "") or "unknown"
    attempts = record.attempts if record is not None else _int(metadata.get("attempts"))
    return {"name": name, "reason": reason, "attempts": attempts}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _last_run(status: JobStatus) -> dict[str, Any]:
    """The job's very last run (a skip included), as contract section 6 has it, and its last success."""
    last = status.last_run_status or status.last_status
    state = last if last in {o.value for o in Outcome} else Outcome.NEVER
    finished = None if state == Outcome.NEVER else (status.last_run_finished or status.last_finished)
    return {
        "status": str(state),
        "finished_at": _iso(finished),
        "error": (status.last_error or None) if state == Outcome.FAILED else None,
        "last_success": _iso(status.last_success),
        "failing_since": _iso(status.failing_since),
    }


def _process_runs(runs: Iterable[RunRecord]) -> list[RunRecord]:
    return [run for run in runs if run.kind == JobKind.PROCESS]


def _day_totals(runs: list[RunRecord]) -> dict[str, int]:
    process = _process_runs(runs)
    totals = {key: sum(_int(run.counts.get(key)) for run in process) for key in DAY_COUNTS}
    totals["runs"] = len(runs)
    totals["runs_failed"] = sum(1 for run in runs if run.outcome == Outcome.FAILED)
    return totals


def _hourly(runs: list[RunRecord], now: datetime, zone: ZoneInfo) -> list[dict[str, Any]]:
    """24 hourly buckets, oldest first, the last one being the current (partial) hour."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    starts = [current - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    buckets = [
        {"hour": _iso(start), "label": start.astimezone(zone).strftime("%H:00"), **dict.fromkeys(HOUR_COUNTS, 0)}
        for start in starts
    ]
    for run in _process_runs(runs):
        index = int((run.started_at - starts[0]).total_seconds() // 3600)
        if 0 <= index < HOURS:
            for key in HOUR_COUNTS:
                buckets[index][key] += _int(run.counts.get(key))
    return buckets


def _run_summary(run: RunRecord) -> dict[str, Any]:
    return {
        "kind": run.kind,
        "run_id": run.run_id,
        "started_at": _iso(run.started_at),
        "duration_seconds": run.duration_seconds,
        "outcome": run.outcome,
        "trigger": run.trigger,
        "error": run.error[:300] or None,
    }


# ------------------------------------------------------------------------------------- the verdict


def verdict(
    report: dict[str, Any], jobs: dict[str, JobStatus], mapping_max_age_days: float, zone: ZoneInfo, now: datetime
) -> dict[str, Any]:
    """Healthy unless something needs an operator; each reason is a sentence an operator can act on."""
    reasons: list[str] = []
    auth_failing = [job for job in (jobs[k] for k in REPORTED_JOBS) if _auth_failure(job)]
    if auth_failing:
        since = _local(min((j.failing_since or j.last_finished or now) for j in auth_failing), zone, now)
        reasons.append(f"AtHoc authentication failing since {since}: {_auth_cause(auth_failing[0].last_error)}")
    reasons += _mapping_reasons(jobs[JobKind.SYNC_MAPPINGS], mapping_max_age_days, auth_failing, zone, now)
    reasons += _job_reasons(jobs, auth_failing, zone, now)
    reasons += _file_reasons(report)
    return {"healthy": not reasons, "reasons": reasons}


def _auth_failure(job: JobStatus) -> bool:
    return job.last_status == Outcome.FAILED and bool(_AUTH_MARKERS.search(job.last_error))


def _auth_cause(error: str) -> str:
    # "AtHoc request failed: AtHoc token request failed: invalid_grant: wrong ..." -> "invalid_grant: wrong ..."
    _, marker, rest = error.partition("token request failed: ")
    return _brief(rest if marker else error)


def _mapping_reasons(
    status: JobStatus, max_age_days: float, auth_failing: list[JobStatus], zone: ZoneInfo, now: datetime
) -> list[str]:
    if status.last_success is None:
        # Files wait until a first mapping sync succeeds (contract section 2).
        return ["mapping sync has never succeeded: files wait until it does"]
    reasons = []
    age = now - status.last_success
    if age > timedelta(days=max_age_days):
        reasons.append(f"mapping sync has not succeeded for {_duration(age)}")
    if status.last_status == Outcome.FAILED and status not in auth_failing and not reasons:
        since = _local(status.failing_since or status.last_finished or now, zone, now)
        reasons.append(f"mapping sync failing since {since}: {_brief(status.last_error)}")
    return reasons


def _job_reasons(jobs: dict[str, JobStatus], auth_failing: list[JobStatus], zone: ZoneInfo, now: datetime) -> list[str]:
    reasons = []
    cleanup = jobs[JobKind.CLEANUP]
    if cleanup.last_status == Outcome.FAILED and cleanup not in auth_failing:
        since = _local(cleanup.failing_since or cleanup.last_finished or now, zone, now)
        reasons.append(f"stale duty cleanup failing since {since}: {_brief(cleanup.last_error)}")
    process = jobs[JobKind.PROCESS]
    # A process run "fails" when one bad file fails; only AtHoc or storage trouble is a job-level problem
    # (bad files are counted below).
    if (
        process.last_status == Outcome.FAILED
        and process not in auth_failing
        and re.search(r"AtHoc|storage unavailable|mapping sync", process.last_error)
    ):
        since = _local(process.failing_since or process.last_finished or now, zone, now)
        reasons.append(f"file processing failing since {since}: {_brief(process.last_error)}")
    return reasons


def _file_reasons(report: dict[str, Any]) -> list[str]:
    reasons = []
    age = report["oldest_pending_age_seconds"]
    if age is not None and age > BACKLOG_ALERT_SECONDS:
        count = report["files_pending"]
        reasons.append(f"{count} file{'s' if count != 1 else ''} waiting, oldest {_duration(timedelta(seconds=age))}")
    failed_today = report["last_24h"]["files_failed"]
    if failed_today:
        reasons.append(
            f"{failed_today} file{'s' if failed_today != 1 else ''} failed in the last 24 hours "
            "(see failed files; fix and run retry-failed)"
        )
    return reasons


def _brief(error: str) -> str:
    text = " ".join(error.split())
    return text if len(text) <= 160 else text[:157] + "..."


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 2 * 3600:
        return f"{seconds // 60} minutes"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} hours"
    return f"{seconds // 86400} days"


def _local(moment: datetime, zone: ZoneInfo, now: datetime) -> str:
    """HH:MM today, else with the date: operators read the org's local time."""
    local = moment.astimezone(zone)
    if local.date() == now.astimezone(zone).date():
        return local.strftime("%H:%M")
    return local.strftime("%d %b %H:%M")


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


# ------------------------------------------------------------------------------------- command result


@dataclass
class StatusResult:
    """`status`: exit 0 whenever the report could be built, healthy or not (it did its job)."""

    report: dict[str, Any]
    exit_code: int = 0
    failure: str = ""

    def to_json(self) -> dict[str, Any]:
        return self.report

    def text_lines(self) -> list[str]:
        return text_lines(self.report)


def status_result(runtime: Any) -> StatusResult:
    probe_storage(runtime.settings)  # fail in a second, not after the SDK's minute of retries
    return StatusResult(build_status(runtime))


# The SDKs' default retries take over a minute to give up on an unreachable account; a probe without
# retries lets `status` and `check` name the cause at once (a blip: ask again).
PROBE_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 15}


def probe_storage(settings: Any) -> tuple[str, str]:
    """One cheap request to each of the blob and table services; raises their error. Returns both URLs."""
    from shared.storage import blob_service, table_service

    blobs, tables = blob_service(settings), table_service(settings)
    next(iter(blobs.list_containers(results_per_page=1, **PROBE_OPTIONS).by_page()), None)
    next(iter(tables.list_tables(results_per_page=1, **PROBE_OPTIONS).by_page()), None)
    return blobs.url, tables.url


def text_lines(report: dict[str, Any]) -> list[str]:
    zone = ZoneInfo(report["timezone"])
    now = _parse(report["generated_at"]) or utcnow()
    health = report["health"]
    lines = ["HEALTHY" if health["healthy"] else "NOT HEALTHY"]
    lines += [f"  - {reason}" for reason in health["reasons"]]
    when = _when(report["mappings_last_sync"], zone, now)
    lines.append(f"mappings: {report['mappings_total']} (last sync {when})")
    pending = f"files waiting: {report['files_pending']}"
    if report["files_pending"]:
        age = _duration(timedelta(seconds=report["oldest_pending_age_seconds"] or 0))
        pending += f" (oldest {age}: {report['oldest_pending_name']}; {report['files_retrying']} retrying)"
    lines.append(pending)
    lines.append(f"files failed: {report['files_failed']}")
    lines += [f"  {f['name']}: {f['reason']} (attempts {f['attempts']})" for f in report["failed_files"][:20]]
    if report["files_failed"] > 20:
        lines.append(f"  ... and {report['files_failed'] - 20} more (see --json)")
    for kind, run in report["last_runs"].items():
        line = f"{kind}: {run['status']}"
        if run["finished_at"]:
            line += f" at {_when(run['finished_at'], zone, now)}"
        if run["error"]:
            line += f": {_brief(run['error'])}"
        lines.append(line)
    day = report["last_24h"]
    lines.append(
        f"last 24 hours: {day['files_processed']} files processed, {day['files_failed']} failed, "
        f"{day['rows_read']} rows ({day['rows_rejected']} rejected), {day['users_updated']} users updated, "
        f"{day['users_not_found']} not found, {day['unmapped_employees']} unmapped"
    )
    return lines


def _when(iso: str | None, zone: ZoneInfo, now: datetime) -> str:
    moment = _parse(iso)
    return _local(moment, zone, now) if moment else "never"


def _parse(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else None


# ------------------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class HttpAnswer:
    status_code: int
    body: str
    mimetype: str


def status_http(runtime_factory: Callable[[], Any], wants_html: bool) -> HttpAnswer:
    """The `status` function's answer: 200 with the report, or 503 naming the cause (never a secret).

    The runtime is created inside, so invalid settings (process_runtime raises SettingsError) and an
    unreachable storage account both become a 503 the operator can read, instead of a bare 500.
    """
    try:
        runtime = runtime_factory()
        probe_storage(runtime.settings)
        report = build_status(runtime)
    except Exception as error:  # an operator page must say what is wrong, whatever it is
        cause = unavailable_cause(error)
        if wants_html:
            return HttpAnswer(503, render_error_html(cause), "text/html")
        body = {"service": SERVICE_NAME, "version": __version__, "health": {"healthy": False, "reasons": [cause]}}
        return HttpAnswer(503, json.dumps({**body, "error": cause}), "application/json")
    if wants_html:
        return HttpAnswer(200, render_html(report), "text/html")
    return HttpAnswer(200, json.dumps(report, default=str), "application/json")


def unavailable_cause(error: BaseException) -> str:
    from azure.core.exceptions import AzureError

    from shared.logcontext import brief_error
    from shared.settings import SettingsError

    if isinstance(error, SettingsError):
        return str(error)  # names each bad setting, never a secret's value
    if isinstance(error, AzureError) or error.__class__.__name__ == "StorageUnavailable":
        return f"storage unreachable: {_redact_keys(brief_error(error))}"
    return f"status failed: {error.__class__.__name__}: {_redact_keys(brief_error(error))}"


def _redact_keys(text: str) -> str:
    # Azure errors may quote a connection string or a SAS URL; keep the gist without the key.
    text = re.sub(r"(AccountKey|SharedAccessSignature|sig)=[^;&\s]+", r"\1=<hidden>", text, flags=re.IGNORECASE)
    return text


# ------------------------------------------------------------------------------------- HTML page

# The page needs nothing but its own inline CSS: forbid everything else (no script can run even if an
# error text ever slipped past escaping, and nothing is fetched from anywhere).
_HEAD = (
    "<!doctype html><html lang=en><head><meta charset=utf-8>"
    "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
    '<meta name=viewport content="width=device-width,initial-scale=1">'
)

_CSS = """
:root{--ok:#1b7f3b;--bad:#b3261e;--warn:#9a6700;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}main{max-width:960px;margin:0 auto;padding:12px}
h1{font-size:1.15rem;margin:0 0 8px}h2{font-size:1rem;margin:18px 0 6px}
.verdict{border-radius:8px;padding:12px 14px;color:#fff}.verdict.ok{background:var(--ok)}
.verdict.bad{background:var(--bad)}.verdict strong{font-size:1.2rem}.verdict ul{margin:6px 0 0;padding-left:20px}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:8px;margin-top:12px}
.figure{border:1px solid var(--line);border-radius:8px;padding:8px 10px}
.figure .n{font-size:1.5rem;font-weight:600;display:block}.figure .l{color:var(--muted);font-size:.85rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:5px 6px;
border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}th{color:var(--muted);font-weight:600}
.s-success{color:var(--ok)}.s-failed{color:var(--bad)}.s-skipped,.s-never{color:var(--warn)}
svg{width:100%;height:auto;display:block}.legend{font-size:.8rem;color:var(--muted)}
.sw{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;border-radius:2px}
footer{color:var(--muted);font-size:.8rem;margin-top:18px}
"""


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained page: inline CSS and SVG, no script, font or image to fetch."""
    zone = ZoneInfo(report["timezone"])
    now = _parse(report["generated_at"]) or utcnow()
    parts = [
        _HEAD,
        f"<title>{_e(SERVICE_NAME)} status</title><style>{_CSS}</style></head><body><main>",
        f"<h1>BOBO Sync status <small class=legend>{_e(report['version'])}</small></h1>",
        _verdict_html(report["health"]),
        _figures_html(report, zone, now),
        "<h2>Last 24 hours, per hour</h2>",
        _chart_svg(report["hourly"]),
        _jobs_html(report["last_runs"], zone, now),
        _failed_html(report),
        _runs_html(report["recent_runs"], zone, now),
        f"<footer>Generated {_e(_local(now, zone, now))} ({_e(report['timezone'])}). "
        "Same data as <code>python -m shared.cli status --json</code>.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def render_error_html(cause: str) -> str:
    return (
        _HEAD + f"<title>{_e(SERVICE_NAME)} status unavailable</title><style>{_CSS}</style></head><body><main>"
        "<h1>BOBO Sync status</h1><div class='verdict bad'><strong>Status unavailable</strong>"
        f"<ul><li>{_e(cause)}</li></ul></div>"
        "<p>Run <code>python -m shared.cli check</code> with the app's settings for the cause and the fix.</p>"
        "</main></body></html>"
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _verdict_html(health: dict[str, Any]) -> str:
    if health["healthy"]:
        return "<div class='verdict ok' id=verdict><strong>Healthy</strong></div>"
    items = "".join(f"<li>{_e(reason)}</li>" for reason in health["reasons"])
    return f"<div class='verdict bad' id=verdict><strong>Not healthy</strong><ul>{items}</ul></div>"


def _figures_html(report: dict[str, Any], zone: ZoneInfo, now: datetime) -> str:
    day = report["last_24h"]
    oldest = report["oldest_pending_age_seconds"]
    waiting_note = f"oldest {_duration(timedelta(seconds=oldest))}" if oldest is not None else "none waiting"
    figures = [
        ("files waiting", report["files_pending"], waiting_note),
        ("files failed", report["files_failed"], "in the failed container"),
        ("mappings", report["mappings_total"], f"synced {_when(report['mappings_last_sync'], zone, now)}"),
        ("files processed", day["files_processed"], "last 24 h"),
        ("rows read", day["rows_read"], f"{day['rows_rejected']} rejected"),
        ("users updated", day["users_updated"], f"{day['users_not_found']} not found"),
        ("unmapped employees", day["unmapped_employees"], "last 24 h"),
    ]
    cells = "".join(
        f"<div class=figure><span class=n>{_e(n)}</span><span class=l>{_e(label)}<br>{_e(note)}</span></div>"
        for label, n, note in figures
    )
    return f"<section class=figures>{cells}</section>"


def _chart_svg(hourly: list[dict[str, Any]]) -> str:
    """Stacked bars: processed (green) and failed (red) files per hour, with the hour labels below."""
    width, height, top, bottom, left = 480, 170, 12, 24, 28
    plot = height - top - bottom
    peak = max([h["files_processed"] + h["files_failed"] for h in hourly] + [1])
    slot = (width - left) / max(len(hourly), 1)
    bars, labels = [], []
    for i, hour in enumerate(hourly):
        x = left + i * slot + slot * 0.15
        w = slot * 0.7
        ok_h = plot * hour["files_processed"] / peak
        bad_h = plot * hour["files_failed"] / peak
        base = top + plot
        title = f"{hour['label']}: {hour['files_processed']} processed, {hour['files_failed']} failed"
        bars.append(
            f"<g><title>{_e(title)}</title>"
            f"<rect x='{x:.1f}' y='{base - ok_h:.1f}' width='{w:.1f}' height='{ok_h:.1f}' fill='#1b7f3b'/>"
            f"<rect x='{x:.1f}' y='{base - ok_h - bad_h:.1f}' width='{w:.1f}' height='{bad_h:.1f}' fill='#b3261e'/></g>"
        )
        if i % 3 == 0:
            labels.append(
                f"<text x='{x + w / 2:.1f}' y='{height - 8}' font-size='10' text-anchor='middle' fill='#59636e'>"
                f"{_e(hour['label'])}</text>"
            )
    axis = (
        f"<line x1='{left}' y1='{top + plot}' x2='{width}' y2='{top + plot}' stroke='#d1d9e0'/>"
        f"<text x='{left - 4}' y='{top + 8}' font-size='10' text-anchor='end' fill='#59636e'>{peak}</text>"
        f"<text x='{left - 4}' y='{top + plot}' font-size='10' text-anchor='end' fill='#59636e'>0</text>"
    )
    return (
        f"<svg viewBox='0 0 {width} {height}' role='img' aria-label='files processed and failed per hour'>"
        f"{axis}{''.join(bars)}{''.join(labels)}</svg>"
        "<div class=legend><span class=sw style='background:#1b7f3b'></span>processed"
        "<span class=sw style='background:#b3261e'></span>failed</div>"
    )


def _jobs_html(last_runs: dict[str, Any], zone: ZoneInfo, now: datetime) -> str:
    rows = "".join(
        f"<tr><td>{_e(JOB_TITLES.get(kind, kind))}</td><td class='s-{_e(run['status'])}'>{_e(run['status'])}</td>"
        f"<td>{_e(_when(run['finished_at'], zone, now))}</td><td>{_e(run['error'] or '')}</td></tr>"
        for kind, run in last_runs.items()
    )
    return f"<h2>Jobs</h2><table><tr><th>job</th><th>last run</th><th>at</th><th>error</th></tr>{rows}</table>"


def _failed_html(report: dict[str, Any]) -> str:
    if not report["failed_files"]:
        return "<h2>Failed files</h2><p>None.</p>"
    rows = "".join(
        f"<tr><td>{_e(f['name'])}</td><td>{_e(f['attempts'])}</td><td>{_e(f['reason'])}</td></tr>"
        for f in report["failed_files"][:50]
    )
    more = report["files_failed"] - min(len(report["failed_files"]), 50)
    tail = f"<p class=legend>... and {more} more.</p>" if more > 0 else ""
    return (
        f"<h2>Failed files ({report['files_failed']})</h2><table><tr><th>file</th><th>attempts</th>"
        f"<th>reason</th></tr>{rows}</table>{tail}"
        "<p class=legend>Fix the cause, then <code>python -m shared.cli retry-failed NAME</code> (or --all).</p>"
    )


def _runs_html(runs: list[dict[str, Any]], zone: ZoneInfo, now: datetime) -> str:
    if not runs:
        return "<h2>Recent runs</h2><p>No runs in the last 24 hours.</p>"
    rows = "".join(
        f"<tr><td>{_e(_when(r['started_at'], zone, now))}</td><td>{_e(r['kind'])}</td>"
        f"<td class='s-{_e(r['outcome'])}'>{_e(r['outcome'])}</td><td>{_e(r['trigger'])}</td>"
        f"<td>{_e(r['error'] or '')}</td></tr>"
        for r in runs
    )
    return (
        "<h2>Recent runs</h2><table><tr><th>at</th><th>job</th><th>outcome</th><th>trigger</th><th>error</th></tr>"
        f"{rows}</table>"
    )


__all__ = [
    "HttpAnswer",
    "StatusResult",
    "build_status",
    "render_error_html",
    "render_html",
    "status_http",
    "status_result",
    "text_lines",
    "verdict",
]
