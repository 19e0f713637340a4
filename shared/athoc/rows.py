"""What each row of a SyncByCommonNames answer means for the login it was sent for (docs/design.md#latest-wins).

Pure: no HTTP. A wrong NOT_FOUND or DENIED silently loses an update, so only texts whose subject is clearly
the user are expected outcomes; anything else is an ERROR, and a login without a row of its own is MISSING.
"""

from __future__ import annotations

import enum
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.athoc.errors import AtHocProtocolError
from shared.athoc.redaction import Redactor
from shared.athoc.users import LOGIN_FIELD, field_value
from shared.errors import ErrorKind

log = logging.getLogger(__name__)

SYNC_KIND = "SyncByCommonNames"

# Expected row outcomes, matched on the row's detail text after every login in it (the one sent and the one
# echoed) became LOGIN_PLACEHOLDER. The patterns only accept texts whose subject is clearly the user.
LOGIN_PLACEHOLDER = "<login>"
_LOGIN_REF = r"(?:<login>|'<login>'|\"<login>\"|\(<login>\)|\[<login>\])"
_DOES_NOT_EXIST = (
    r"(?:does\s*n[o']t\s+exists?|do\s+not\s+exists?|not\s+exists?|(?:was\s+|is\s+)?not\s+found"
    r"|(?:could|can)\s*(?:n[o']t|not)\s+be\s+found|cannot\s+be\s+found)"
)
_NOT_FOUND = re.compile(
    # "User: <login> does not exists in the Organization" (captured), "The user could not be found"
    rf"\buser\s*:?\s*(?:{_LOGIN_REF}\s*)?(?:with\s+login_id\s*:?\s*{_LOGIN_REF}\s*)?{_DOES_NOT_EXIST}\b"
    rf"|\buser\s*:?\s*(?:{_LOGIN_REF}\s*)?is\s+not\s+a\s+member\s+of\s+(?:the|this)\s+organi[sz]ation\b"
    r"|\b(?:unknown|no\s+such|no\s+matching)\s+user\b"
    r"|\bno\s+user\s+(?:was\s+)?found\b"
    r"|\b(?:cannot|can\s*n[o']t|could\s*n[o']t|could\s+not|unable\s+to)\s+find\s+(?:the\s+)?user\b"
    rf"|\blogin_id\s*:?\s*{_LOGIN_REF}\s+{_DOES_NOT_EXIST}\b"
    # The whole text is "<login> not found" (optionally "... in the organization").
    rf"|^\W*{_LOGIN_REF}\s+{_DOES_NOT_EXIST}(?:\s+in\s+(?:the|this)\s+organi[sz]ation)?\W*$",
    re.IGNORECASE,
)
_DENIED = re.compile(
    r"access\s+(?:is\s+)?denied|permission|not\s+authori[sz]ed|unauthori[sz]ed|forbidden|not\s+allowed"
    r"|not\s+permitted|insufficient\s+(?:privileges?|permissions?|rights|access)"
    r"|(?:does|do)\s*(?:n[o']t|not)\s+have\s+(?:the\s+)?(?:necessary\s+|required\s+|sufficient\s+)?"
    r"(?:access|rights?|permissions?|privileges?)\b",
    re.IGNORECASE,
)
# A text about an attribute, a value or its format is about the data (or, when denied, a configuration
# error that must surface as failed files), never "user missing" or "denied for this user".
_ABOUT_DATA = re.compile(r"\battribut|\bfields?\b|\bvalues?\b|\bformat|\bdate", re.IGNORECASE)


class RowStatus(enum.Enum):
    UPDATED = "updated"  # AtHoc confirmed the value
    NOT_FOUND = "not_found"  # the user does not exist in the organization (expected, counted)
    DENIED = "denied"  # the service account may not update this user (expected, counted apart)
    ERROR = "error"  # any other row error: the file is retried
    MISSING = "missing"  # the response did not mention this login: not confirmed
    FAILED = "failed"  # the request carrying this row failed (see RowResult.transient and .kind)


@dataclass(frozen=True)
class RowResult:
    login: str
    value: str
    status: RowStatus
    detail: str
    transient: bool = False
    kind: ErrorKind | None = None  # FAILED rows: the AtHocError kind (auth/tls mean "fix the settings")


@dataclass(frozen=True)
class SyncReport:
    rows: list[RowResult]  # exactly one per input pair, in input order
    requests: int  # SyncByCommonNames HTTP requests made, retries included (token requests not counted)
    errors: tuple[str, ...] = ()  # one secret-free message per failed chunk
    elapsed_seconds: float = 0.0

    def by_status(self) -> dict[RowStatus, int]:
        counts = Counter(row.status for row in self.rows)
        return {status: counts.get(status, 0) for status in RowStatus}


def without_logins(text: str, logins: Sequence[str]) -> str:
    """`text` with each login replaced by LOGIN_PLACEHOLDER, case-insensitively, longest first (a login
    may contain words like "field" or "user", and servers may echo it in another case)."""
    for login in sorted({lg.strip() for lg in logins if lg and lg.strip()}, key=len, reverse=True):
        text = re.sub(re.escape(login), LOGIN_PLACEHOLDER, text, flags=re.IGNORECASE)
    return text


def classify_row(
    row: Mapping[str, object], *, sent_login: str | None = None, duty_field: str | None = None
) -> tuple[RowStatus, str]:
    """Classify one SyncByCommonNames response row, conservatively (docs/design.md#latest-wins).

    OK -> UPDATED. Any other status but Partial (Error, Failed, ...) whose text, with the logins
    removed, says the *user* does not exist -> NOT_FOUND; that the service account may not update the
    user -> DENIED. Everything else (Partial, no status, texts naming an attribute, a value, a format, a
    date or `duty_field`, texts matching both or neither) -> ERROR with the server's text, so nothing
    unexpected is ever counted as an expected outcome.
    """
    status = str(field_value(row, ":SyncStatus") or "").strip()
    details = str(field_value(row, ":SyncDetails") or "").strip()
    if status.casefold() == "ok":
        return RowStatus.UPDATED, details or "OK"
    if not status:
        return RowStatus.ERROR, f"no :SyncStatus in the response row ({details or 'no details'})"
    if status.casefold() != "partial":
        echoed = field_value(row, LOGIN_FIELD)
        text = without_logins(details, [sent_login or "", "" if echoed is None else str(echoed)])
        about_data = _ABOUT_DATA.search(text) or (
            duty_field and duty_field.strip() and duty_field.strip().casefold() in text.casefold()
        )
        if not about_data:
            not_found = _NOT_FOUND.search(text) is not None
            denied = _DENIED.search(text) is not None
            if not_found and not denied:
                return RowStatus.NOT_FOUND, details
            if denied and not not_found:
                return RowStatus.DENIED, details
    return RowStatus.ERROR, f"{status}: {details}" if details else status


def match_rows(
    chunk: Sequence[tuple[str, str]], payload: object, *, duty_field: str, redact: Redactor
) -> list[RowResult]:
    """Pair the answer's rows with the (login, value) pairs sent, by the echoed LOGIN_ID (case and spaces
    ignored); one result per pair, in order.

    A login without a row of its own is MISSING (not confirmed, retried), never confirmed by position:
    its detail quotes the rows that named no login sent. An answer that is not a JSON array raises
    AtHocProtocolError (the chunk fails).
    """
    if not isinstance(payload, list):
        raise AtHocProtocolError(f"{SYNC_KIND}: the response is a JSON {type(payload).__name__}, not an array of rows")
    sent_counts = Counter(login.strip().casefold() for login, _ in chunk if login.strip())
    by_login, unattributed = _rows_by_login(payload, sent_counts, duty_field=duty_field, redact=redact)
    if unattributed:
        log.warning(
            "%s: %d response rows name no login sent (their users stay unconfirmed): %s",
            SYNC_KIND,
            len(unattributed),
            redact.quoted("; ".join(unattributed)),
        )
    missing_detail = "not in the response: not confirmed"
    if unattributed:
        missing_detail += f"; {len(unattributed)} rows named no login sent: " + "; ".join(unattributed)
    results = []
    for login, value in chunk:
        if not login.strip():
            results.append(RowResult(login, value, RowStatus.ERROR, "empty LOGIN_ID, not sent"))
            continue
        key = login.strip().casefold()
        queue = by_login.get(key)
        if not queue:
            results.append(RowResult(login, value, RowStatus.MISSING, redact.quoted(missing_detail)))
            continue
        status, detail = _classify_rows_of(login, queue, sent_counts[key], duty_field=duty_field)
        results.append(RowResult(login, value, status, redact.quoted(detail)))
    return results


def _rows_by_login(
    payload: list[object], sent_counts: Counter[str], *, duty_field: str, redact: Redactor
) -> tuple[dict[str, list[Mapping[str, object]]], list[str]]:
    """The answer's rows grouped by the sent login they echo, and a text for each row that echoes none."""
    by_login: dict[str, list[Mapping[str, object]]] = {}
    unattributed: list[str] = []
    for row in payload:
        if not isinstance(row, Mapping):
            unattributed.append(f"a row that is not an object: {redact.quoted(str(row))}")
            continue
        echoed = field_value(row, LOGIN_FIELD)
        key = str(echoed).strip().casefold() if echoed is not None else ""
        if key in sent_counts:
            by_login.setdefault(key, []).append(row)
            continue
        status, detail = classify_row(row, duty_field=duty_field)
        who = f"LOGIN_ID {redact.quoted(str(echoed))!r}" if key else f"no {LOGIN_FIELD}"
        unattributed.append(f"{who}: {'OK' if status is RowStatus.UPDATED else detail}")
    return by_login, unattributed


def _classify_rows_of(
    login: str, queue: list[Mapping[str, object]], times_sent: int, *, duty_field: str
) -> tuple[RowStatus, str]:
    """The outcome for one occurrence of `login`, taking its next row; more rows than the login was
    sent that disagree are an ERROR (which of them is true is unknown)."""
    if len(queue) > times_sent:
        outcomes = [classify_row(row, sent_login=login, duty_field=duty_field) for row in queue]
        if len({status for status, _ in outcomes}) > 1:
            texts = "; ".join(f"{status.value}: {detail}" for status, detail in outcomes)
            return RowStatus.ERROR, f"{len(queue)} conflicting rows in the response for this login ({texts})"
    return classify_row(queue.pop(0), sent_login=login, duty_field=duty_field)
