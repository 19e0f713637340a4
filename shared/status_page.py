"""The status report for people: text lines for `status`, the `status` HTTP function's answer, and the
HTML page with its SVG chart of the last 24 hours.

The page is self-contained (inline CSS and SVG, no script, font or image) and its Content-Security-Policy
forbids anything else; every value from the report is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from azure.core.exceptions import AzureError

from shared import SERVICE_NAME, __version__
from shared.logcontext import brief_error
from shared.records import JobKind
from shared.settings import SettingsError
from shared.status_report import (
    FailedFile,
    HourBucket,
    LastRun,
    RunSummary,
    StatusReport,
    brief,
    build_status,
    duration_text,
    local_time,
)
from shared.storage import StorageUnavailable, probe_storage

if TYPE_CHECKING:
    from shared.runtime import Runtime

JOB_TITLES = {
    JobKind.PROCESS: "file processing",
    JobKind.SYNC_MAPPINGS: "mapping sync",
    JobKind.CLEANUP: "stale duty cleanup",
    JobKind.RETRY_FAILED: "retry of failed files",
}
FAILED_FILES_IN_TEXT = 20
FAILED_FILES_ON_PAGE = 50


# ------------------------------------------------------------------------------------- text


def text_lines(report: StatusReport) -> list[str]:
    """The report for a terminal: the verdict first, then one line per figure and per job."""
    zone, now = report.zone, report.generated_at
    lines = ["HEALTHY" if report.health.healthy else "NOT HEALTHY"]
    lines += [f"  - {reason}" for reason in report.health.reasons]
    lines.append(f"mappings: {report.mappings_total} (last sync {_when(report.mappings_last_sync, zone, now)})")
    pending = f"files waiting: {report.files_pending}"
    if report.files_pending:
        age = duration_text(timedelta(seconds=report.oldest_pending_age_seconds or 0))
        pending += f" (oldest {age}: {report.oldest_pending_name}; {report.files_retrying} retrying)"
    lines.append(pending)
    lines.append(f"files failed: {report.files_failed}")
    shown = report.failed_files[:FAILED_FILES_IN_TEXT]
    lines += [f"  {f.name}: {f.reason} (attempts {f.attempts})" for f in shown]
    if report.files_failed > FAILED_FILES_IN_TEXT:
        lines.append(f"  ... and {report.files_failed - FAILED_FILES_IN_TEXT} more (see --json)")
    lines += [_last_run_line(kind, run, zone, now) for kind, run in report.last_runs.items()]
    if report.drift is not None:
        lines.append(
            f"drift: {report.drift.drifted} users differed from what this app set, {report.drift.repaired} set back "
            f"(checked {local_time(report.drift.checked_at, zone, now)})"
        )
    day = report.last_24h
    lines.append(
        f"last 24 hours: {day.files_processed} files processed, {day.files_failed} failed, "
        f"{day.rows_read} rows ({day.rows_rejected} rejected), {day.users_updated} users updated, "
        f"{day.users_not_found} not found, {day.unmapped_employees} unmapped"
    )
    return lines


def _last_run_line(kind: JobKind, run: LastRun, zone: ZoneInfo, now: datetime) -> str:
    line = f"{kind}: {run.status}"
    if run.finished_at is not None:
        line += f" at {local_time(run.finished_at, zone, now)}"
    if run.error:
        line += f": {brief(run.error)}"
    return line


def _when(moment: datetime | None, zone: ZoneInfo, now: datetime) -> str:
    return local_time(moment, zone, now) if moment is not None else "never"


# ------------------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class HttpAnswer:
    status_code: int
    body: str
    mimetype: str


def status_http(runtime_factory: Callable[[], Runtime], wants_html: bool) -> HttpAnswer:
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
        from shared.telemetry import workbook_url

        return HttpAnswer(200, render_html(report, workbook=workbook_url()), "text/html")
    return HttpAnswer(200, json.dumps(report.to_json(), default=str), "application/json")


def unavailable_cause(error: BaseException) -> str:
    """Why the report could not be built, in one line without any key or signature."""
    if isinstance(error, SettingsError):
        return str(error)  # names each bad setting, never a secret's value
    if isinstance(error, AzureError | StorageUnavailable):
        return f"storage unreachable: {_redact_keys(brief_error(error))}"
    return f"status failed: {error.__class__.__name__}: {_redact_keys(brief_error(error))}"


def _redact_keys(text: str) -> str:
    # Azure errors may quote a connection string or a SAS URL; keep the gist without the key.
    return re.sub(r"(AccountKey|SharedAccessSignature|sig)=[^;&\s]+", r"\1=<hidden>", text, flags=re.IGNORECASE)


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
_OK_COLOUR, _BAD_COLOUR, _MUTED_COLOUR, _LINE_COLOUR = "#1b7f3b", "#b3261e", "#59636e", "#d1d9e0"


def render_html(report: StatusReport, *, workbook: str = "") -> str:
    """The report as one self-contained page: inline CSS and SVG, no script, font or image to fetch.
    `workbook`: the monitoring workbook's portal address (a plain link; nothing is fetched from it)."""
    zone, now = report.zone, report.generated_at
    parts = [
        _HEAD,
        f"<title>{_e(SERVICE_NAME)} status</title><style>{_CSS}</style></head><body><main>",
        f"<h1>BOBO Sync status <small class=legend>{_e(report.version)}</small></h1>",
        _verdict_html(report),
        _figures_html(report),
        "<h2>Last 24 hours, per hour</h2>",
        _chart_svg(report.hourly),
        _jobs_html(report.last_runs, zone, now),
        _failed_html(report.failed_files, report.files_failed),
        _runs_html(report.recent_runs, zone, now),
        f"<footer>Generated {_e(local_time(now, zone, now))} ({_e(report.timezone)}). "
        "Same data as <code>python -m shared.cli status --json</code>."
        + (f" History and AtHoc latency: <a href='{_e(workbook)}'>the monitoring workbook</a>." if workbook else "")
        + "</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def page_html(title: str, body: str) -> str:
    """Any page of this app with the status page's look and its Content-Security-Policy (`body` is HTML)."""
    return _HEAD + f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>{body}</main></body></html>"


def render_error_html(cause: str) -> str:
    """The page when no report could be built: the cause, and the command that explains it."""
    return (
        _HEAD + f"<title>{_e(SERVICE_NAME)} status unavailable</title><style>{_CSS}</style></head><body><main>"
        "<h1>BOBO Sync status</h1><div class='verdict bad'><strong>Status unavailable</strong>"
        f"<ul><li>{_e(cause)}</li></ul></div>"
        "<p>Run <code>python -m shared.cli check</code> with the app's settings for the cause and the fix.</p>"
        "</main></body></html>"
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _verdict_html(report: StatusReport) -> str:
    if report.health.healthy:
        return "<div class='verdict ok' id=verdict><strong>Healthy</strong></div>"
    items = "".join(f"<li>{_e(reason)}</li>" for reason in report.health.reasons)
    return f"<div class='verdict bad' id=verdict><strong>Not healthy</strong><ul>{items}</ul></div>"


def _figures_html(report: StatusReport) -> str:
    day = report.last_24h
    oldest = report.oldest_pending_age_seconds
    waiting_note = f"oldest {duration_text(timedelta(seconds=oldest))}" if oldest is not None else "none waiting"
    synced = _when(report.mappings_last_sync, report.zone, report.generated_at)
    figures = [
        ("files waiting", report.files_pending, waiting_note),
        ("files failed", report.files_failed, "in the failed container"),
        ("mappings", report.mappings_total, f"synced {synced}"),
        ("files processed", day.files_processed, "last 24 h"),
        ("rows read", day.rows_read, f"{day.rows_rejected} rejected"),
        ("users updated", day.users_updated, f"{day.users_not_found} not found"),
        ("unmapped employees", day.unmapped_employees, "last 24 h"),
    ]
    if report.drift is not None:
        checked = _when(report.drift.checked_at, report.zone, report.generated_at)
        figures.append(("drifted in AtHoc", report.drift.drifted, f"{report.drift.repaired} set back; {checked}"))
    cells = "".join(
        f"<div class=figure><span class=n>{_e(n)}</span><span class=l>{_e(label)}<br>{_e(note)}</span></div>"
        for label, n, note in figures
    )
    return f"<section class=figures>{cells}</section>"


def _chart_svg(hourly: tuple[HourBucket, ...]) -> str:
    """Stacked bars: processed (green) and failed (red) files per hour, with the hour labels below."""
    width, height, top, bottom, left = 480, 170, 12, 24, 28
    plot = height - top - bottom
    peak = max([h.files_processed + h.files_failed for h in hourly] + [1])
    slot = (width - left) / max(len(hourly), 1)
    bars, labels = [], []
    for i, hour in enumerate(hourly):
        x = left + i * slot + slot * 0.15
        w = slot * 0.7
        ok_h = plot * hour.files_processed / peak
        bad_h = plot * hour.files_failed / peak
        base = top + plot
        title = f"{hour.label}: {hour.files_processed} processed, {hour.files_failed} failed"
        bars.append(
            f"<g><title>{_e(title)}</title>"
            f"<rect x='{x:.1f}' y='{base - ok_h:.1f}' width='{w:.1f}' height='{ok_h:.1f}' fill='{_OK_COLOUR}'/>"
            f"<rect x='{x:.1f}' y='{base - ok_h - bad_h:.1f}' width='{w:.1f}' height='{bad_h:.1f}' "
            f"fill='{_BAD_COLOUR}'/></g>"
        )
        if i % 3 == 0:
            labels.append(
                f"<text x='{x + w / 2:.1f}' y='{height - 8}' font-size='10' text-anchor='middle' "
                f"fill='{_MUTED_COLOUR}'>{_e(hour.label)}</text>"
            )
    axis = (
        f"<line x1='{left}' y1='{top + plot}' x2='{width}' y2='{top + plot}' stroke='{_LINE_COLOUR}'/>"
        f"<text x='{left - 4}' y='{top + 8}' font-size='10' text-anchor='end' fill='{_MUTED_COLOUR}'>{peak}</text>"
        f"<text x='{left - 4}' y='{top + plot}' font-size='10' text-anchor='end' fill='{_MUTED_COLOUR}'>0</text>"
    )
    return (
        f"<svg viewBox='0 0 {width} {height}' role='img' aria-label='files processed and failed per hour'>"
        f"{axis}{''.join(bars)}{''.join(labels)}</svg>"
        f"<div class=legend><span class=sw style='background:{_OK_COLOUR}'></span>processed"
        f"<span class=sw style='background:{_BAD_COLOUR}'></span>failed</div>"
    )


def _jobs_html(last_runs: dict[JobKind, LastRun], zone: ZoneInfo, now: datetime) -> str:
    rows = "".join(
        f"<tr><td>{_e(JOB_TITLES.get(kind, kind))}</td><td class='s-{_e(run.status)}'>{_e(run.status)}</td>"
        f"<td>{_e(_when(run.finished_at, zone, now))}</td><td>{_e(run.error or '')}</td></tr>"
        for kind, run in last_runs.items()
    )
    return f"<h2>Jobs</h2><table><tr><th>job</th><th>last run</th><th>at</th><th>error</th></tr>{rows}</table>"


def _failed_html(failed_files: tuple[FailedFile, ...], files_failed: int) -> str:
    if not failed_files:
        return "<h2>Failed files</h2><p>None.</p>"
    shown = failed_files[:FAILED_FILES_ON_PAGE]
    rows = "".join(f"<tr><td>{_e(f.name)}</td><td>{_e(f.attempts)}</td><td>{_e(f.reason)}</td></tr>" for f in shown)
    more = files_failed - len(shown)
    tail = f"<p class=legend>... and {more} more.</p>" if more > 0 else ""
    return (
        f"<h2>Failed files ({files_failed})</h2><table><tr><th>file</th><th>attempts</th>"
        f"<th>reason</th></tr>{rows}</table>{tail}"
        "<p class=legend>Fix the cause, then <code>python -m shared.cli retry-failed NAME</code> (or --all).</p>"
    )


def _runs_html(runs: tuple[RunSummary, ...], zone: ZoneInfo, now: datetime) -> str:
    if not runs:
        return "<h2>Recent runs</h2><p>No runs in the last 24 hours.</p>"
    rows = "".join(
        f"<tr><td>{_e(local_time(r.started_at, zone, now))}</td><td>{_e(r.kind)}</td>"
        f"<td class='s-{_e(r.outcome)}'>{_e(r.outcome)}</td><td>{_e(r.trigger)}</td>"
        f"<td>{_e(r.error or '')}</td></tr>"
        for r in runs
    )
    return (
        "<h2>Recent runs</h2><table><tr><th>at</th><th>job</th><th>outcome</th><th>trigger</th><th>error</th></tr>"
        f"{rows}</table>"
    )
