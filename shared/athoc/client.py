"""AtHocClient: the bulk duty update, the complete user list, and the checks `check` runs.

Callers (pipeline, mapping sync, cleanup, `check`) never touch HTTP: they get classified row results,
complete user lists, or an `AtHocError` that says whether the failure is worth retrying later. The API
facts and unknowns are in ../shared/reference/athoc-api.md; the parts live beside this module:
transport (TLS, proxies, one HTTP attempt), calls (retries), token, paging, rows (row outcomes), redaction.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import requests

from shared.athoc.calls import AttemptCounter, RetryingCaller
from shared.athoc.errors import AtHocAuthError, AtHocError, AtHocProtocolError
from shared.athoc.paging import SEARCH_KIND, PageRequest, UserPager
from shared.athoc.redaction import Redactor
from shared.athoc.rows import SYNC_KIND, RowResult, RowStatus, SyncReport, match_rows
from shared.athoc.token import TOKEN_PATH, TokenCache
from shared.athoc.transport import ApiRequest, Transport, decode_json, describe_verify, proxy_for
from shared.athoc.users import LOGIN_FIELD, JsonObject, field_value, has_field
from shared.errors import ErrorKind
from shared.settings import AtHocSettings

log = logging.getLogger(__name__)

# Failures that concern one chunk only: the next chunks are still sent.
_CHUNK_ONLY_KINDS = frozenset({ErrorKind.CLIENT, ErrorKind.PROTOCOL})


@dataclass(frozen=True)
class ConnectionInfo:
    """What `check` reports about the path to AtHoc; secret-free."""

    server_url: str
    org_code: str
    tls_version: str | None  # None for http:// (or when the socket could not be inspected)
    proxy: str | None  # the proxy requests will use for the server, credentials removed
    verify: str  # how the server certificate is checked
    expires_in: float  # token lifetime the server announced
    refresh_token: bool  # the server gave a refresh token
    elapsed_seconds: float


@dataclass(frozen=True)
class AttributeCheck:
    """Whether search can read an attribute; `detail` says why (not)."""

    name: str
    readable: bool
    detail: str


class AtHocClient:
    """Talks to one AtHoc organization. One instance per process; thread-safe for concurrent calls.

    `sleep` and `clock` (monotonic seconds) are how backoff waits and deadlines see time.
    """

    def __init__(
        self,
        settings: AtHocSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self._clock = clock
        self._redact = Redactor(settings.password, settings.client_secret)
        self._transport = Transport(settings, redact=self._redact, clock=clock)
        self._caller = RetryingCaller(
            self._transport, settings, redact=self._redact, clock=clock, sleep=sleep, rng=random.Random().random
        )
        self._tokens = TokenCache(self._caller, settings, redact=self._redact, clock=clock)
        self._org_path = f"/api/v2/orgs/{quote(settings.org_code, safe='')}"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> AtHocClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- bulk update

    def sync_duty_values(self, pairs: Sequence[tuple[str, str]], *, deadline: float | None = None) -> SyncReport:
        """Write (login, value) pairs to the duty field with SyncByCommonNames; value "" clears it.

        Sends only LOGIN_ID and the duty field, `settings.sync_chunk_size` rows per request, existing
        users only. Never raises for a request failure: the rows of a failed chunk come back FAILED with
        `transient` (retry the file later) and `kind`; rows of chunks that succeeded are still reported.
        After a failure other than a 4xx for the chunk or a garbled answer (auth, TLS, time, a server still
        down after all retries), the remaining chunks are not sent and come back FAILED with the same error.
        `deadline` is an absolute `clock()` value.
        """
        started = self._clock()
        pairs = [(str(login), "" if value is None else str(value)) for login, value in pairs]
        size = max(1, self.settings.sync_chunk_size)
        results: list[RowResult] = []
        errors: list[str] = []
        request_count = 0
        stop: AtHocError | None = None
        for first in range(0, len(pairs), size):
            chunk = pairs[first : first + size]
            if stop is None:
                chunk_results, attempts, error = self._sync_chunk(chunk, deadline)
                request_count += attempts
                if error is not None:
                    errors.append(str(error))
                    # Bad data or a garbled answer concerns this chunk only; anything else (credentials,
                    # TLS, time, a server down after all retries) would fail the next chunks the same way.
                    if error.kind not in _CHUNK_ONLY_KINDS:
                        stop = error
            else:
                chunk_results = [_failed_row(login, value, stop) for login, value in chunk]
            results.extend(chunk_results)
            for row in chunk_results:
                log.debug("%s row: %s -> %s (%s)", SYNC_KIND, row.login, row.status.name, row.detail)
        report = SyncReport(results, request_count, tuple(errors), self._clock() - started)
        _log_sync_summary(report)
        return report

    def _sync_chunk(
        self, chunk: list[tuple[str, str]], deadline: float | None
    ) -> tuple[list[RowResult], int, AtHocError | None]:
        """One chunk: (results in input order, HTTP attempts made, the request-level error if any)."""
        sendable = [(login, value) for login, value in chunk if login.strip()]
        if not sendable:
            return [RowResult(lg, v, RowStatus.ERROR, "empty LOGIN_ID, not sent") for lg, v in chunk], 0, None
        body = [{LOGIN_FIELD: login, self.settings.duty_field: value} for login, value in sendable]
        request = ApiRequest(
            SYNC_KIND,
            "POST",
            f"{self._org_path}/users/SyncByCommonNames",
            params={"syncExistingUsersOnly": "true", "AllowPartialUpdate": "false"},
            body=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        counter = AttemptCounter()
        try:
            response = self._call(request, deadline=deadline, attempts=counter)
            payload = _json_of(response.content, SYNC_KIND)
            rows = match_rows(chunk, payload, duty_field=self.settings.duty_field, redact=self._redact)
        except AtHocError as error:
            return [_failed_row(login, value, error) for login, value in chunk], counter.count, error
        return rows, counter.count, None

    # ---------------------------------------------------------------- user search

    def search_users(
        self,
        fields: Sequence[str],
        *,
        criteria: str | None = None,
        deadline: float | None = None,
        max_retries: int | None = None,
    ) -> list[JsonObject]:
        """Every user (with LOGIN_ID and `fields`) exactly once, in the order the server listed them.

        Works whether the server reads `Offset` as a page index (0- or 1-based) or a record offset, and when
        it caps Limit (see shared.athoc.paging). Rows without LOGIN_ID are skipped and counted (one WARNING
        per call). Raises AtHocError on any failure: a partial list is never returned as complete.
        `max_retries` overrides the setting.
        """
        started = self._clock()
        wanted = list(dict.fromkeys([LOGIN_FIELD, *fields]))
        pager = UserPager(self.settings.page_size)
        while (page := pager.next_request()) is not None:
            rows, total = self._search_page(wanted, page, criteria=criteria, deadline=deadline, max_retries=max_retries)
            pager.add_page(rows, total)
        _log_search_summary(pager, self._clock() - started)
        return pager.users

    def _search_page(
        self,
        fields: list[str],
        page: PageRequest,
        *,
        criteria: str | None,
        deadline: float | None,
        max_retries: int | None = None,
    ) -> tuple[list[JsonObject], int | None]:
        """One page: its user rows and the TotalUsers the server reported (None when absent or unreadable)."""
        params = {"Fields": ",".join(fields), "Limit": str(page.limit), "Offset": str(page.offset)}
        if criteria:
            params["Criteria"] = criteria
        request = ApiRequest(
            SEARCH_KIND, "GET", f"{self._org_path}/users/search/basic", params=params, max_retries=max_retries
        )
        payload = _json_of(self._call(request, deadline=deadline).content, SEARCH_KIND)
        if not isinstance(payload, dict):
            raise AtHocProtocolError(f"{SEARCH_KIND}: the response has no Users array")
        total_users = _total_users(field_value(payload, "TotalUsers"))
        users = field_value(payload, "Users")
        if users is None and (has_field(payload, "Users") or total_users == 0):
            users = []  # "Users": null, or no Users at all beside TotalUsers 0: an empty page
        if not isinstance(users, list) or not all(isinstance(user, dict) for user in users):
            raise AtHocProtocolError(f"{SEARCH_KIND}: the response has no Users array")
        return users, total_users

    # ---------------------------------------------------------------- checks

    def attribute_readable(self, name: str, *, deadline: float | None = None) -> AttributeCheck:
        """Whether search can read attribute `name` (one row). A 400 naming it -> not readable, with the
        server's text; other failures raise AtHocError.

        A server that ignores unknown Fields answers 200 without the key: rows that carry other keys but
        not `name` (case-insensitively) make it not readable, unless a search with Criteria `name pr`
        returns the key (a server that leaves empty values out of its rows).
        """
        one_row = PageRequest(offset=0, limit=1)
        try:
            rows, _ = self._search_page([LOGIN_FIELD, name], one_row, criteria=None, deadline=deadline)
        except AtHocError as error:
            if error.status == 400:
                return AttributeCheck(name, False, str(error))
            raise
        if not rows:
            return AttributeCheck(name, True, "readable (no users to read it from)")
        if any(has_field(row, name) for row in rows) or not any(row for row in rows):
            return AttributeCheck(name, True, "readable")
        refused = ""
        try:
            present, _ = self._search_page([LOGIN_FIELD, name], one_row, criteria=f"{name} pr", deadline=deadline)
        except AtHocError as error:
            if error.transient or isinstance(error, AtHocAuthError):
                raise
            present, refused = [], f"; a search with Criteria '{name} pr' was refused too ({error})"
        if any(has_field(row, name) for row in present):
            return AttributeCheck(name, True, "readable (the server leaves empty values out of its rows)")
        return AttributeCheck(
            name,
            False,
            f"the server returned no such field in {len(rows)} rows: check the common name{refused}",
        )

    def check_connection(self) -> ConnectionInfo:
        """Get a fresh token with the password grant and describe the path (for the `check` command).

        Raises AtHocAuthError for bad credentials/configuration/TLS, AtHocError for anything else.
        """
        started = self._clock()
        token = self._tokens.fresh(started + self.settings.call_budget_seconds)
        base = self._transport.base
        return ConnectionInfo(
            server_url=base,
            org_code=self.settings.org_code,
            tls_version=self._transport.last_tls_version if urlsplit(base).scheme.lower() == "https" else None,
            proxy=proxy_for(base + TOKEN_PATH),
            verify=describe_verify(self.settings),
            expires_in=token.expires_in,
            refresh_token=token.refresh_token is not None,
            elapsed_seconds=self._clock() - started,
        )

    # ---------------------------------------------------------------- internals

    def _call(
        self, request: ApiRequest, *, deadline: float | None, attempts: AttemptCounter | None = None
    ) -> requests.Response:
        return self._caller.call(request, end=self._caller.end_for(deadline), tokens=self._tokens, attempts=attempts)


def _json_of(content: bytes, label: str) -> object:
    try:
        return decode_json(content)
    except ValueError:
        raise AtHocProtocolError(f"{label}: the response is not JSON") from None


def _total_users(value: object) -> int | None:
    """TotalUsers as a count; None when absent or unreadable (a boolean is not a count)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _failed_row(login: str, value: str, error: AtHocError) -> RowResult:
    return RowResult(login, value, RowStatus.FAILED, str(error), transient=error.transient, kind=error.kind)


def _log_sync_summary(report: SyncReport) -> None:
    counts = report.by_status()
    log.info(
        "%s: %d rows in %d requests, %d updated, %d not found, %d denied, %d errors, %d missing, %d failed, %.1f s",
        SYNC_KIND,
        len(report.rows),
        report.requests,
        counts[RowStatus.UPDATED],
        counts[RowStatus.NOT_FOUND],
        counts[RowStatus.DENIED],
        counts[RowStatus.ERROR],
        counts[RowStatus.MISSING],
        counts[RowStatus.FAILED],
        report.elapsed_seconds,
    )


def _log_search_summary(pager: UserPager, elapsed_seconds: float) -> None:
    if pager.same_page_for_every_offset is not None:
        log.warning(
            "%s: Offset 0, 1 and 2 all answered the same %d users and there is no TotalUsers: "
            "taking them as the whole list",
            SEARCH_KIND,
            pager.same_page_for_every_offset,
        )
    if pager.login_less:
        log.warning(
            "%s: skipped %d user rows without %s (users AtHoc cannot update by login)",
            SEARCH_KIND,
            pager.login_less,
            LOGIN_FIELD,
        )
    if pager.total is not None and pager.seen != pager.total:
        log.warning(
            "%s: the server reported TotalUsers=%d but listed %d users (users changed while paging?)",
            SEARCH_KIND,
            pager.total,
            pager.seen,
        )
    log.info(
        "%s: %d users in %d requests (Offset read as %s, %d per page), %.1f s",
        SEARCH_KIND,
        len(pager.users),
        pager.requests,
        pager.meaning.value if pager.meaning is not None else "not needed",
        pager.limit,
        elapsed_seconds,
    )
