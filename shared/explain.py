"""`explain EMPLOYEE_ID [--days N] [--live]`: why does AtHoc show this person on (or off) duty?

Reads the employee's decision history (one partition range query, shared/history.py), the mapped login
and what this app last set for them; `--live` adds AtHoc's current value from one search call. JSON keys
follow docs/history.md; the text is a timeline a duty sergeant can read, in `BOBO_TIMEZONE`.

`explain_http` is the status function's `?employee=ID` answer (JSON, or an HTML page with format=html).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.athoc import LOGIN_FIELD, AtHocError
from shared.bobo_csv import normalise_employee_id
from shared.errors import ExitCode
from shared.history import HistoryEntry, HistoryOutcome, employee_history
from shared.last_applied import LastApplied, last_applied_of, mapped_login
from shared.logcontext import brief_error

DEFAULT_DAYS = 7.0

# What each outcome means, in words for the timeline.
OUTCOME_WORDS = {
    HistoryOutcome.APPLIED: "applied: AtHoc confirmed it",
    HistoryOutcome.SUPERSEDED: "not sent: a newer event for this person in the same batch won",
    HistoryOutcome.STALE: "not sent: not newer than what was already applied",
    HistoryOutcome.UNMAPPED: "not sent: no AtHoc user has this collar number (unmapped)",
    HistoryOutcome.NOT_FOUND: "sent, but AtHoc says the user does not exist",
    HistoryOutcome.DENIED: "sent, but the service account may not update this user",
    HistoryOutcome.ERROR: "sent, but AtHoc answered with an error: the file is retried or failed",
    HistoryOutcome.PENDING: "sent, but never confirmed (call failed or timed out): the file is retried",
    HistoryOutcome.CLEARED_STALE: "cleared by the stale duty cleanup (value too old)",
    HistoryOutcome.RECONCILED: "set back by reconcile (AtHoc differed from what this app had set)",
}


@dataclass
class Explanation:
    """The `explain` command's answer (docs/history.md)."""

    employee_id: str  # as given
    normalised_id: str
    login: str | None
    last_applied: LastApplied | None
    events: list[HistoryEntry]
    days: float
    timezone: str
    live: bool = False
    athoc_value: str | None = None
    live_error: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.FAILED if self.live_error else ExitCode.OK

    @property
    def failure(self) -> str:
        return f"explain --live: AtHoc could not be read: {self.live_error}" if self.live_error else ""

    @property
    def disagrees(self) -> bool:
        """--live: AtHoc holds something other than what this app last set."""
        if not self.live or self.live_error or self.last_applied is None:
            return False
        return (self.athoc_value or "") != self.last_applied.value

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "employee_id": self.employee_id,
            "login": self.login,
            "last_applied": self.last_applied.to_json() if self.last_applied is not None else None,
            "events": [entry.to_json() for entry in self.events],
            "days": self.days,
        }
        if self.live:
            body["athoc_value"] = self.athoc_value
            body["in_sync"] = None if self.live_error or self.last_applied is None else not self.disagrees
        body["errors"] = list(self.errors)
        return body

    def text_lines(self) -> list[str]:
        zone = ZoneInfo(self.timezone)
        name = (
            self.normalised_id
            if self.normalised_id == self.employee_id
            else f"{self.employee_id} ({self.normalised_id})"
        )
        lines = [f"Employee {name}: AtHoc login {self.login or '(none: unmapped)'}"]
        last = self.last_applied
        if last is None:
            lines.append("This app has never set a duty value for this person.")
        else:
            origin = (
                f"BOBO event at {_clock(last.event_time)}" if last.event_time else "stale duty cleanup or reconcile"
            )
            lines.append(
                f"Last set by this app: {_shown(last.value)} at {_local(last.applied_at, zone)} (from {origin})"
            )
        if self.live:
            lines += self._live_lines()
        if not self.events:
            lines.append(f"No decisions in the last {self.days:g} days.")
            return lines
        lines.append(f"Decisions in the last {self.days:g} days, newest first (times in {self.timezone}):")
        lines += [f"  {line}" for line in timeline_lines(self.events, zone)]
        return lines

    def _live_lines(self) -> list[str]:
        if self.live_error:
            return [f"AtHoc now: could not be read ({self.live_error})"]
        now_line = f"AtHoc now: {_shown(self.athoc_value or '')}"
        if self.last_applied is None:
            return [now_line, "  (this app never set it, so AtHoc's value came from elsewhere)"]
        if self.disagrees:
            return [
                now_line,
                f"  AtHoc DISAGREES with this app: it holds {_shown(self.athoc_value or '')}, this app last set "
                f"{_shown(self.last_applied.value)}. Someone or something else changed it; `reconcile --apply` "
                "sets it back.",
            ]
        return [now_line + " (matches what this app last set)"]


def timeline_lines(events: list[HistoryEntry], zone: ZoneInfo) -> list[str]:
    lines = []
    for entry in events:
        if entry.kind:
            what = f"{'book on' if entry.kind == 'BON' else 'book off'} at {_clock(entry.event_time)}"
            where = f" ({entry.file}, row {entry.row})"
        else:
            what, where = "duty value", ""
        sent = f"; sent {_shown(entry.value_sent)}" if entry.value_sent is not None else ""
        lines.append(
            f"{_local(entry.decided_at, zone)}  {what}{where}: {OUTCOME_WORDS[entry.outcome]}{sent} "
            f"[run {entry.run_id}]"
        )
    return lines


def _shown(value: str | None) -> str:
    return "(empty: off duty)" if not value else repr(value)


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "?"


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def explain(runtime: Any, employee_id: str, *, days: float = DEFAULT_DAYS, live: bool = False) -> Explanation:
    """Build the explanation; storage errors propagate (the command line names them, exit 3)."""
    settings = runtime.settings
    runtime.ensure_ready()
    normalised = normalise_employee_id(employee_id)
    state = runtime.state
    since = datetime.now(UTC) - timedelta(days=days)
    result = Explanation(
        employee_id=employee_id,
        normalised_id=normalised,
        login=mapped_login(state, normalised) if normalised else None,
        last_applied=last_applied_of(state, normalised) if normalised else None,
        events=employee_history(state, normalised, since) if normalised else [],
        days=days,
        timezone=settings.timezone_name,
        live=live,
    )
    if live:
        login = result.login or (result.last_applied.login if result.last_applied else None)
        if login:
            _read_live(runtime, result, login)
        else:
            result.errors.append("no AtHoc login known for this employee: nothing to read live")
    return result


def _read_live(runtime: Any, result: Explanation, login: str) -> None:
    duty_field = runtime.settings.athoc.duty_field
    quoted = login.replace("'", "''")
    try:
        users = runtime.athoc.search_users([duty_field], criteria=f"{LOGIN_FIELD} eq '{quoted}'")
    except AtHocError as error:
        result.live_error = brief_error(error)
        result.errors.append(f"AtHoc could not be read: {result.live_error}")
        return
    from shared.mapping_sync import field_value

    match = [u for u in users if str(field_value(u, LOGIN_FIELD) or "").casefold() == login.casefold()]
    result.athoc_value = str(field_value(match[0], duty_field) or "") if match else None
    if not match:
        result.errors.append(f"AtHoc has no user {login}")


# ------------------------------------------------------------------------------------- HTML and HTTP


def render_html_fragment(result: Explanation) -> str:
    """A <section> for the status page: the same facts as the text timeline."""
    zone = ZoneInfo(result.timezone)
    e = html.escape
    last = result.last_applied
    rows = "".join(
        "<tr>"
        f"<td>{e(_local(entry.decided_at, zone))}</td><td>{e(entry.kind or '')}</td>"
        f"<td>{e(_clock(entry.event_time) if entry.event_time else '')}</td>"
        f"<td>{e(entry.file or '')}</td><td>{'' if entry.row is None else entry.row}</td>"
        f"<td>{e(entry.outcome.value)}</td>"
        f"<td>{e(_shown(entry.value_sent) if entry.value_sent is not None else '')}</td>"
        f"<td>{e(OUTCOME_WORDS[entry.outcome])}</td></tr>"
        for entry in result.events
    )
    summary = [
        f"<p>AtHoc login: <b>{e(result.login or '(unmapped)')}</b></p>",
        "<p>Last set by this app: "
        + (f"<b>{e(_shown(last.value))}</b> at {e(_local(last.applied_at, zone))}" if last else "never")
        + "</p>",
    ]
    if result.live and not result.live_error:
        warn = " <b>(differs from what this app last set)</b>" if result.disagrees else ""
        summary.append(f"<p>AtHoc now: {e(_shown(result.athoc_value))}{warn}</p>")
    table = (
        "<table><thead><tr><th>decided</th><th>kind</th><th>event time</th><th>file</th><th>row</th>"
        f"<th>outcome</th><th>sent</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>"
        if result.events
        else f"<p>No decisions in the last {result.days:g} days.</p>"
    )
    return f'<section class="explain"><h2>Employee {e(result.employee_id)}</h2>{"".join(summary)}{table}</section>'


def explain_http(
    runtime_factory: Callable[[], Any], employee_id: str, wants_html: bool, days: float = DEFAULT_DAYS
) -> tuple[int, str, str]:
    """`GET /api/status?employee=ID[&days=N][&format=html]`: (status code, body, mimetype).

    503 naming the cause (never a secret) when settings or storage fail, like the status report.
    """
    from shared.status_page import page_html, render_error_html, unavailable_cause  # the status page's look

    try:
        result = explain(runtime_factory(), employee_id.strip(), days=days)
    except Exception as error:  # an operator page must say what is wrong, whatever it is
        cause = unavailable_cause(error)
        if wants_html:
            return 503, render_error_html(cause), "text/html"
        return 503, json.dumps({"error": cause}), "application/json"
    if wants_html:
        title = f"BOBO Sync: employee {result.employee_id}, on duty or not, and why"
        return 200, page_html(title, f"<h1>{html.escape(title)}</h1>{render_html_fragment(result)}"), "text/html"
    return 200, json.dumps(result.to_json(), default=str), "application/json"


def parse_days(raw: str | None) -> float:
    """`days` as the command line and the HTTP query take it: a positive number (default 7)."""
    if raw is None or not raw.strip():
        return DEFAULT_DAYS
    value = float(raw)
    if not value > 0:
        raise ValueError("days must be a positive number")
    return value
