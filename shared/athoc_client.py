"""The one module that talks HTTP to AtHoc: token, bulk duty updates, user paging, retries.

Callers (pipeline, mapping sync, cleanup, `check`) never touch HTTP: they get classified row results,
complete user lists, or an `AtHocError` that says whether the failure is worth retrying later.

Design notes (see ../shared/reference/athoc-api.md for the API facts and unknowns):

* Authentication is the documented password grant as a plain form post (msal does not fit this
  grant, see the README). One token is reused until shortly before `expires_in`; a refresh token is
  used when the server gave one, the password grant again when the refresh fails; a 401 from an API
  call gets one fresh token and one retry.
* Transport: one `requests.Session` per client (connection pooling), TLS 1.2 minimum through an
  adapter with its own SSL context, `verify=` passed on every request because requests lets
  `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE` override `session.verify` (and even `verify=True`), proxies
  from the environment (`trust_env` stays on), connect and read timeouts on every request, no
  redirects followed (a 307 would re-post the password form to wherever it points).
* Retries: 408/429/5xx, timeouts and dropped connections, exponential backoff with full jitter,
  `Retry-After` honoured and capped, never past the caller's deadline or the per-request budget.
* Secrets (password, client secret, access and refresh tokens) never appear in a log line or an
  exception text: server text is redacted before use, tokens travel only in headers and form bodies,
  and no URL, PreparedRequest or token response body is ever logged.
"""

from __future__ import annotations

import email.utils
import enum
import json
import logging
import math
import random
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import certifi
import requests
import requests.adapters
import requests.utils
from urllib3.util.ssl_ import create_urllib3_context

from shared.settings import AtHocSettings

log = logging.getLogger("shared.athoc_client")

TOKEN_PATH = "/AuthServices/Auth/connect/token"  # noqa: S105 - a path, not a secret
SEARCH_KIND = "users/search/basic"
SYNC_KIND = "SyncByCommonNames"
LOGIN_FIELD = "LOGIN_ID"

# Statuses worth another attempt: the server may answer differently in a moment.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
RETRY_AFTER_CAP_SECONDS = 60.0
# A token is renewed this long before it expires: 10 % of its life, at most 60 s.
TOKEN_RENEW_FRACTION = 0.1
TOKEN_RENEW_MAX_MARGIN_SECONDS = 60.0
# expires_in is unverified for AtHoc; when absent assume a short life (a 401 would recover anyway).
DEFAULT_TOKEN_LIFETIME_SECONDS = 300.0
# Less time than this left: a request would only time out, so it is not started.
MIN_REQUEST_SECONDS = 0.05
# Server text quoted in errors is cut to this length (bodies can be whole HTML pages).
MAX_QUOTED_TEXT = 300
# Hard stop for paging against a server without TotalUsers that keeps inventing users.
MAX_PAGES_WITHOUT_TOTAL = 100_000

# Expected row outcomes (contract section 2), matched on the row's detail text with the login removed.
_NOT_FOUND = re.compile(
    r"\buser\b.*\b(does\s*n[o']t\s+exists?|not\s+exists?|not\s+found|was\s+not\s+found)\b"
    r"|\b(unknown|no\s+such)\s+user\b",
    re.IGNORECASE | re.DOTALL,
)
_DENIED = re.compile(
    r"access\s+denied|permission|not\s+authori[sz]ed|unauthori[sz]ed|forbidden|not\s+allowed",
    re.IGNORECASE,
)
# An error text naming an attribute or value is about the data, never "user missing" or "denied".
_ABOUT_DATA = re.compile(r"\battribute|\bfield\b|\binvalid\s+value\b", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/=]+", re.IGNORECASE)
_TOKEN_JSON = re.compile(r'("(?:access_token|refresh_token|id_token)"\s*:\s*")[^"]*(")', re.IGNORECASE)

_TOKEN_ERROR_CAUSES = {
    "invalid_grant": "wrong ATHOC_USERNAME or ATHOC_PASSWORD (or the account is locked or disabled)",
    "invalid_client": (
        "wrong ATHOC_CLIENT_ID or ATHOC_CLIENT_SECRET, or the API application is not enabled for this organization"
    ),
    "invalid_scope": "the API application may not request the scope in ATHOC_SCOPE (offline_access not allowed?)",
    "unauthorized_client": "the API application may not use the password grant",
    "unsupported_grant_type": "the server does not accept the password grant",
    "invalid_request": "the token request was refused as malformed",
    "invalid_target": "wrong ATHOC_ORG_CODE (tenant)",
}
# No common protocol version or cipher: a configuration problem, not worth retrying.
_TLS_VERSION_MARKERS = (
    "wrong_version_number",
    "unsupported protocol",
    "protocol version",
    "no protocols available",
    "handshake failure",
    "no shared cipher",
)
_TLS_CERTIFICATE_MARKERS = ("certificate", "hostname", "host name", "verify failed")
_WRONG_ORG_HINTS = re.compile(r"tenant|organi[sz]ation|\borg\b|acr_values", re.IGNORECASE)


class AtHocError(Exception):
    """An AtHoc call failed. The message names the cause and never contains a secret.

    `transient`: worth retrying later (the file waits); `kind`: one of auth, tls, network, throttled,
    server, client, protocol, budget; `status`: the HTTP status when there was one.
    """

    def __init__(self, message: str, *, kind: str, transient: bool, status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.transient = transient
        self.status = status


class AtHocAuthError(AtHocError):
    """Credentials or configuration are wrong (invalid_grant, invalid_client, wrong org, scope, TLS, 403)."""

    def __init__(self, message: str, *, kind: str = "auth", status: int | None = None):
        super().__init__(message, kind=kind, transient=False, status=status)


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
    kind: str = ""  # for FAILED rows: the AtHocError kind (auth/tls mean "fix the settings", not "bad file")


@dataclass(frozen=True)
class SyncReport:
    rows: list[RowResult]  # exactly one per input pair, in input order
    requests: int  # SyncByCommonNames HTTP requests made, retries included (token requests not counted)
    errors: tuple[str, ...] = ()  # one secret-free message per failed chunk
    elapsed_seconds: float = 0.0

    def by_status(self) -> dict[RowStatus, int]:
        counts = Counter(row.status for row in self.rows)
        return {status: counts.get(status, 0) for status in RowStatus}


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
    """Whether search can read an attribute; truthy when readable, `detail` says why not."""

    name: str
    readable: bool
    detail: str

    def __bool__(self) -> bool:
        return self.readable


@dataclass
class _Token:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: float
    renew_at: float  # clock() value after which the token is renewed


# ---------------------------------------------------------------- pure helpers (unit-tested)


def backoff_delay(
    retry: int, *, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS, rng: Callable[[], float]
) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**retry)] so many waiting callers spread out."""
    ceiling: float = min(cap, base * 2.0 ** min(retry, 32))
    return rng() * ceiling


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable.

    `now` is the wall-clock time (time.time()) an HTTP-date is compared with.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def retry_wait(retry: int, retry_after: float | None, *, rng: Callable[[], float]) -> float:
    """How long to wait before retry number `retry` (0-based): Retry-After (capped) when given, else backoff."""
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP_SECONDS)
    return backoff_delay(retry, rng=rng)


def _lookup(row: Mapping[str, Any], key: str) -> Any:
    """Value of `key` in `row`, matching the key case-insensitively (the server's casing is unverified)."""
    if key in row:
        return row[key]
    folded = key.casefold()
    for candidate, value in row.items():
        if isinstance(candidate, str) and candidate.casefold() == folded:
            return value
    return None


def classify_row(row: Mapping[str, Any]) -> tuple[RowStatus, str]:
    """Classify one SyncByCommonNames response row, conservatively (contract section 2).

    OK -> UPDATED. An Error whose text says the *user* does not exist -> NOT_FOUND; one that says the
    service account may not update the user -> DENIED. Everything else (Partial, unknown status, errors
    about attributes or values, missing status) -> ERROR with the server's text, so nothing unexpected is
    ever counted as an expected outcome.
    """
    status = str(_lookup(row, ":SyncStatus") or "").strip()
    details = str(_lookup(row, ":SyncDetails") or "").strip()
    if status.casefold() == "ok":
        return RowStatus.UPDATED, details or "OK"
    if not status:
        return RowStatus.ERROR, f"no :SyncStatus in the response row ({details or 'no details'})"
    if status.casefold() == "error":
        # The login itself may contain words like "field" or "user": judge the text without it.
        login = str(_lookup(row, LOGIN_FIELD) or "").strip()
        text = details.replace(login, "<login>") if login else details
        if not _ABOUT_DATA.search(text):
            if _NOT_FOUND.search(text):
                return RowStatus.NOT_FOUND, details
            if _DENIED.search(text):
                return RowStatus.DENIED, details
    return RowStatus.ERROR, f"{status}: {details}" if details else status


def _strip_userinfo(url: str) -> str:
    """A proxy URL without user:password@ (proxy credentials are secrets too)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_QUOTED_TEXT else text[: MAX_QUOTED_TEXT - 3] + "..."


def _tls_version(response: requests.Response) -> str | None:
    """The negotiated TLS version, read from the socket before the body is consumed."""
    connection = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    version = getattr(sock, "version", None)
    if callable(version):
        try:
            result = version()
        except (OSError, ValueError):
            return None
        return result if isinstance(result, str) else None
    return None


# ---------------------------------------------------------------- transport


class _TLSAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose connections (direct and through a proxy) use our SSL context (TLS 1.2+)."""

    def __init__(self, ssl_context: ssl.SSLContext, **kwargs: Any):
        self._ssl_context = ssl_context
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)


def build_ssl_context(settings: AtHocSettings) -> ssl.SSLContext:
    """TLS 1.2 minimum; the trust store the settings ask for; no verification only when switched off."""
    if not settings.verify_tls:
        context = create_urllib3_context(ssl_minimum_version=ssl.TLSVersion.TLSv1_2, cert_reqs=ssl.CERT_NONE)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = create_urllib3_context(ssl_minimum_version=ssl.TLSVersion.TLSv1_2, cert_reqs=ssl.CERT_REQUIRED)
    context.check_hostname = True
    try:
        if settings.ca_bundle:
            # A private CA only: the AtHoc certificate must chain to it.
            context.load_verify_locations(cafile=settings.ca_bundle)
        else:
            # The OS store; requests adds certifi's bundle through verify=<path> (see request_verify).
            context.load_default_certs()
    except (OSError, ssl.SSLError) as error:
        raise AtHocAuthError(
            f"ATHOC_CA_BUNDLE {settings.ca_bundle!r} could not be loaded as PEM certificates "
            f"({error.__class__.__name__})",
            kind="tls",
        ) from None
    return context


def request_verify(settings: AtHocSettings) -> bool | str:
    """The `verify=` value for every request.

    Never `True`: requests replaces `verify=True` with `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE` from the
    environment, so the default trust is passed as certifi's path, which the environment cannot override.
    """
    if not settings.verify_tls:
        return False
    if settings.ca_bundle:
        return settings.ca_bundle
    return certifi.where()


def describe_verify(settings: AtHocSettings) -> str:
    if urlsplit(settings.server_url).scheme.lower() == "http":
        return "not applicable (http:// without TLS)"
    if not settings.verify_tls:
        return "disabled (ATHOC_VERIFY_TLS=false)"
    if settings.ca_bundle:
        return f"ATHOC_CA_BUNDLE {settings.ca_bundle}"
    return f"system CA store and certifi bundle {certifi.where()}"


def proxy_for(url: str) -> str | None:
    """The proxy requests will use for `url` (HTTPS_PROXY / HTTP_PROXY / NO_PROXY), credentials removed."""
    proxies = requests.utils.get_environ_proxies(url)
    proxy = requests.utils.select_proxy(url, proxies)
    return _strip_userinfo(proxy) if proxy else None


# ---------------------------------------------------------------- the client


class _Redactor:
    """Removes every secret this client knows from text that came from outside (server bodies, errors)."""

    def __init__(self, *secrets: str):
        self._lock = threading.Lock()
        self._secrets: list[str] = [s for s in secrets if s]

    def add(self, secret: str | None) -> None:
        if secret:
            with self._lock:
                if secret not in self._secrets:
                    self._secrets.append(secret)
                    # Keep the list bounded: the two credentials plus the latest tokens.
                    if len(self._secrets) > 50:
                        del self._secrets[2:12]

    def __call__(self, text: str) -> str:
        text = _BEARER.sub(r"\1***", text)
        text = _TOKEN_JSON.sub(r"\1***\2", text)
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text


class AtHocClient:
    """Talks to one AtHoc organization. One instance per process; thread-safe for concurrent calls."""

    def __init__(
        self,
        settings: AtHocSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        source_identifier: str | None = None,
    ):
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._source_identifier = source_identifier
        self._random = random.Random()
        self._redact = _Redactor(settings.password, settings.client_secret)
        self._token: _Token | None = None
        self._token_lock = threading.RLock()
        self._base = settings.server_url.rstrip("/")
        self._org_path = f"/api/v2/orgs/{quote(settings.org_code, safe='')}"
        self._verify = request_verify(settings)
        self._last_tls_version: str | None = None
        self._session = session if session is not None else requests.Session()
        # Proxies and NO_PROXY come from the environment through trust_env; it must stay on.
        self._session.trust_env = True
        adapter = _TLSAdapter(build_ssl_context(settings))
        self._session.mount("https://", adapter)
        self._session.mount("http://", requests.adapters.HTTPAdapter())
        self._session.headers.update({"Accept": "application/json", "User-Agent": "bobo-sync-azure"})
        self._warn_about_transport()

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> AtHocClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _warn_about_transport(self) -> None:
        scheme = urlsplit(self._base).scheme.lower()
        if scheme == "http":
            log.warning(
                "ATHOC_SERVER_URL %s is plain http: credentials and tokens travel unencrypted "
                "(acceptable only for a test server on loopback)",
                self._base,
            )
        elif not self.settings.verify_tls:
            log.warning(
                "ATHOC_VERIFY_TLS=false: the AtHoc server certificate is NOT verified; anyone on the path can "
                "read the password and tokens. Use only for a test server; set ATHOC_CA_BUNDLE for a private CA."
            )

    # ---------------------------------------------------------------- public calls

    def sync_duty_values(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        deadline: float | None = None,
        on_progress: Callable[[Sequence[RowResult]], None] | None = None,
    ) -> SyncReport:
        """Write (login, value) pairs to the duty field with SyncByCommonNames; value "" clears it.

        Sends only LOGIN_ID and the duty field, `settings.sync_chunk_size` rows per request, existing
        users only. Never raises for a request failure: the rows of a failed chunk come back FAILED with
        `transient` (retry the file later) and `kind`; rows of chunks that succeeded are still reported.
        After a failure other than a 4xx for the chunk or a garbled answer (auth, TLS, time, a server still
        down after all retries), the remaining chunks are not sent and come back FAILED with the same error.
        `on_progress` is called after each chunk with that chunk's results (so callers can persist
        confirmed users as they go). `deadline` is an absolute `clock()` value.
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
                    if error.kind not in ("client", "protocol"):
                        stop = error
            else:
                chunk_results = [self._failed_row(login, value, stop) for login, value in chunk]
            results.extend(chunk_results)
            for row in chunk_results:
                log.debug("%s row: %s -> %s (%s)", SYNC_KIND, row.login, row.status.name, row.detail)
            if on_progress is not None:
                on_progress(chunk_results)
        report = SyncReport(
            rows=results,
            requests=request_count,
            errors=tuple(errors),
            elapsed_seconds=self._clock() - started,
        )
        counts = report.by_status()
        log.info(
            "%s: %d rows in %d requests, %d updated, %d not found, %d denied, %d errors, %d missing, %d failed, %.1f s",
            SYNC_KIND,
            len(results),
            request_count,
            counts[RowStatus.UPDATED],
            counts[RowStatus.NOT_FOUND],
            counts[RowStatus.DENIED],
            counts[RowStatus.ERROR],
            counts[RowStatus.MISSING],
            counts[RowStatus.FAILED],
            report.elapsed_seconds,
        )
        return report

    def search_users(
        self,
        fields: Sequence[str],
        *,
        criteria: str | None = None,
        deadline: float | None = None,
        on_page: Callable[[int, int | None], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Every user (with LOGIN_ID and `fields`) exactly once, in the order the server listed them.

        Works whether the server reads `Offset` as a page index or a record offset: Offset=0 then
        Offset=1; if the second page overlaps the first, offsets are records, else pages. Stops on an
        empty page or on reaching TotalUsers; a page that adds nothing new while users are still
        missing is a misbehaving server and raises (a partial list is never returned as complete).
        Raises AtHocError on any failure. `on_page(fetched_so_far, total_users)` after each page.
        """
        started = self._clock()
        wanted = list(dict.fromkeys([LOGIN_FIELD, *fields]))
        users: dict[str, dict[str, Any]] = {}
        mode: str | None = None  # "page" or "record" once detected
        first_page_keys: set[str] = set()
        first_page_size = 0
        offset = 0
        requests_made = 0
        total: int | None = None
        while True:
            rows, total_now = self._search_page(wanted, criteria, offset, deadline)
            requests_made += 1
            if total_now is not None:
                total = total_now
            keys = [self._user_key(row) for row in rows]
            new = 0
            for key, row in zip(keys, rows, strict=True):
                if key not in users:
                    users[key] = row
                    new += 1
            if on_page is not None:
                on_page(len(users), total)
            if not rows:
                break
            if total is not None and len(users) >= total:
                break
            if new == 0:
                if total is None:
                    break  # no TotalUsers to compare with: a page with nothing new is the end
                raise AtHocError(
                    f"{SEARCH_KIND}: paging made no progress at Offset={offset} with {len(users)} of "
                    f"{total} users (the server repeats pages)",
                    kind="protocol",
                    transient=True,
                )
            if offset == 0:
                first_page_keys = set(keys)
                first_page_size = len(rows)
                offset = 1  # the probe that tells page index from record offset
                continue
            if mode is None:
                # Record offsets make the probe repeat all but one user of the first page; page indexes
                # repeat none (or a few, if users were added while paging): judge by the size of the overlap.
                overlap = len(first_page_keys.intersection(keys))
                mode = "record" if overlap >= max(1.0, (min(len(rows), first_page_size) - 1) / 2) else "page"
            offset = offset + len(rows) if mode == "record" else offset + 1
            limit = 2 * math.ceil(total / max(1, first_page_size)) + 5 if total is not None else MAX_PAGES_WITHOUT_TOTAL
            if requests_made >= limit:
                raise AtHocError(
                    f"{SEARCH_KIND}: paging did not finish after {requests_made} requests "
                    f"({len(users)} of {total} users)",
                    kind="protocol",
                    transient=True,
                )
        if total is not None and len(users) != total:
            log.warning(
                "%s: the server reported TotalUsers=%d but listed %d users (users changed while paging?)",
                SEARCH_KIND,
                total,
                len(users),
            )
        meaning = {"page": "page index", "record": "record offset", None: "not needed"}[mode]
        log.info(
            "%s: %d users in %d requests (Offset read as %s), %.1f s",
            SEARCH_KIND,
            len(users),
            requests_made,
            meaning,
            self._clock() - started,
        )
        return list(users.values())

    def attribute_readable(self, name: str, *, deadline: float | None = None) -> AttributeCheck:
        """Whether search can read attribute `name` (one row). A 400 naming it -> not readable, with the
        server's text; other failures raise AtHocError."""
        try:
            self._search_page([LOGIN_FIELD, name], None, 0, deadline, limit=1)
        except AtHocError as error:
            if error.status == 400:
                return AttributeCheck(name, False, str(error))
            raise
        return AttributeCheck(name, True, "readable")

    def check_connection(self) -> ConnectionInfo:
        """Get a fresh token with the password grant and describe the path (for the `check` command).

        Raises AtHocAuthError for bad credentials/configuration/TLS, AtHocError for anything else.
        """
        started = self._clock()
        end = started + self.settings.call_budget_seconds
        with self._token_lock:
            token = self._password_grant(end)
            self._token = token
        tls = self._last_tls_version if urlsplit(self._base).scheme.lower() == "https" else None
        return ConnectionInfo(
            server_url=self._base,
            org_code=self.settings.org_code,
            tls_version=tls,
            proxy=proxy_for(self._base + TOKEN_PATH),
            verify=describe_verify(self.settings),
            expires_in=token.expires_in,
            refresh_token=token.refresh_token is not None,
            elapsed_seconds=self._clock() - started,
        )

    # ---------------------------------------------------------------- sync internals

    def _failed_row(self, login: str, value: str, error: AtHocError) -> RowResult:
        return RowResult(login, value, RowStatus.FAILED, str(error), transient=error.transient, kind=error.kind)

    def _sync_chunk(
        self, chunk: list[tuple[str, str]], deadline: float | None
    ) -> tuple[list[RowResult], int, AtHocError | None]:
        """One chunk: (results in input order, HTTP attempts made, the request-level error if any)."""
        sendable = [(login, value) for login, value in chunk if login.strip()]
        if not sendable:
            return [RowResult(lg, v, RowStatus.ERROR, "empty LOGIN_ID, not sent") for lg, v in chunk], 0, None
        body = [{LOGIN_FIELD: login, self.settings.duty_field: value} for login, value in sendable]
        params = {"syncExistingUsersOnly": "true", "AllowPartialUpdate": "false"}
        if self._source_identifier:
            params["sourceIdentifier"] = self._source_identifier
        counter = _AttemptCounter()
        try:
            response = self._call(
                SYNC_KIND,
                "POST",
                f"{self._org_path}/users/SyncByCommonNames",
                params=params,
                data=json.dumps(body).encode("utf-8"),
                headers={"Content-Type": "application/json; charset=utf-8"},
                deadline=deadline,
                attempts=counter,
            )
            rows = self._match_rows(chunk, response)
        except AtHocError as error:
            return [self._failed_row(login, value, error) for login, value in chunk], counter.count, error
        return rows, counter.count, None

    def _match_rows(self, chunk: list[tuple[str, str]], response: requests.Response) -> list[RowResult]:
        """Pair response rows with the logins sent; a response that does not echo them fails the chunk."""
        try:
            payload = response.json()
        except ValueError:
            raise self._protocol_error(f"{SYNC_KIND}: the response is not JSON") from None
        if not isinstance(payload, list):
            raise self._protocol_error(
                f"{SYNC_KIND}: the response is a JSON {type(payload).__name__}, not an array of rows"
            )
        sent = [login for login, _ in chunk if login.strip()]
        if len(payload) > len(sent):
            raise self._protocol_error(f"{SYNC_KIND}: {len(payload)} rows answered for {len(sent)} users sent")
        by_login: dict[str, list[Mapping[str, Any]]] = {}
        sent_keys = {login.strip().casefold() for login in sent}
        for row in payload:
            login = _lookup(row, LOGIN_FIELD) if isinstance(row, Mapping) else None
            key = str(login).strip().casefold() if login is not None else None
            if key is None or key not in sent_keys:
                raise self._protocol_error(
                    f"{SYNC_KIND}: the response does not echo the logins sent "
                    f"(a row for {self._redact(_quote(str(login)))!r})"
                )
            by_login.setdefault(key, []).append(row)
        results = []
        for login, value in chunk:
            if not login.strip():
                results.append(RowResult(login, value, RowStatus.ERROR, "empty LOGIN_ID, not sent"))
                continue
            queue = by_login.get(login.strip().casefold())
            if not queue:
                results.append(RowResult(login, value, RowStatus.MISSING, "not in the response: not confirmed"))
                continue
            status, detail = classify_row(queue.pop(0))
            results.append(RowResult(login, value, status, self._redact(_quote(detail))))
        return results

    def _protocol_error(self, message: str) -> AtHocError:
        # A reply we cannot trust is a failure of the file (retried later, counted), never a silent success.
        return AtHocError(message, kind="protocol", transient=True)

    # ---------------------------------------------------------------- search internals

    def _search_page(
        self, fields: list[str], criteria: str | None, offset: int, deadline: float | None, *, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        params: dict[str, str] = {
            "Fields": ",".join(fields),
            "Limit": str(limit or self.settings.page_size),
            "Offset": str(offset),
        }
        if criteria:
            params["Criteria"] = criteria
        response = self._call(
            SEARCH_KIND, "GET", f"{self._org_path}/users/search/basic", params=params, deadline=deadline
        )
        try:
            payload = response.json()
        except ValueError:
            raise self._protocol_error(f"{SEARCH_KIND}: the response is not JSON") from None
        users = _lookup(payload, "Users") if isinstance(payload, Mapping) else None
        if not isinstance(users, list) or not all(isinstance(user, dict) for user in users):
            raise self._protocol_error(f"{SEARCH_KIND}: the response has no Users array")
        total = _lookup(payload, "TotalUsers")
        try:
            total_users = int(total) if total is not None and not isinstance(total, bool) else None
        except (TypeError, ValueError):
            total_users = None
        return users, total_users

    def _user_key(self, row: Mapping[str, Any]) -> str:
        login = _lookup(row, LOGIN_FIELD)
        if login is None or not str(login).strip():
            raise self._protocol_error(f"{SEARCH_KIND}: a user row without {LOGIN_FIELD}")
        return str(login)

    # ---------------------------------------------------------------- token

    def _bearer(self, end: float) -> str:
        with self._token_lock:
            token = self._token
            if token is not None and self._clock() < token.renew_at:
                return token.access_token
            if token is not None and token.refresh_token:
                refreshed = self._refresh_grant(token.refresh_token, end)
                if refreshed is not None:
                    self._token = refreshed
                    return refreshed.access_token
            self._token = self._password_grant(end)
            return self._token.access_token

    def _forget_token(self, access_token: str) -> None:
        """After a 401: the access token is dead; keep the refresh token (it may still work)."""
        with self._token_lock:
            if self._token is not None and self._token.access_token == access_token:
                self._token.renew_at = -math.inf

    def _token_form(self, grant: str) -> dict[str, str]:
        form = {"grant_type": grant, "client_id": self.settings.client_id, "client_secret": self.settings.client_secret}
        if grant == "password":
            form.update(
                username=self.settings.username,
                password=self.settings.password,
                scope=self.settings.scope,
                acr_values=f"tenant:{self.settings.org_code}",
            )
        return form

    def _password_grant(self, end: float) -> _Token:
        response = self._call("token", "POST", TOKEN_PATH, data=self._token_form("password"), end=end)
        token = self._parse_token(response)
        log.info(
            "token: password grant for org %s, expires in %.0f s, %s",
            self.settings.org_code,
            token.expires_in,
            "refresh token given" if token.refresh_token else "no refresh token",
        )
        return token

    def _refresh_grant(self, refresh_token: str, end: float) -> _Token | None:
        """One refresh attempt; any failure falls back to the password grant (which has the retries)."""
        form = self._token_form("refresh_token")
        form["refresh_token"] = refresh_token
        try:
            response = self._call("token", "POST", TOKEN_PATH, data=form, end=end, retries=0)
            token = self._parse_token(response)
        except AtHocError as error:
            if error.kind == "budget":
                raise
            log.info("token: refresh refused (%s); using the password grant", error)
            return None
        if token.refresh_token is None:
            token.refresh_token = refresh_token  # servers may keep the old refresh token valid (sliding)
        log.info("token: refreshed, expires in %.0f s", token.expires_in)
        return token

    def _parse_token(self, response: requests.Response) -> _Token:
        try:
            payload = response.json()
        except ValueError:
            raise self._protocol_error("token endpoint: the response is not JSON") from None
        access = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(access, str) or not access:
            raise self._protocol_error("token endpoint: the response has no access_token")
        refresh = payload.get("refresh_token")
        refresh = refresh if isinstance(refresh, str) and refresh else None
        self._redact.add(access)
        self._redact.add(refresh)
        try:
            expires_in = float(payload.get("expires_in", DEFAULT_TOKEN_LIFETIME_SECONDS))
        except (TypeError, ValueError):
            expires_in = DEFAULT_TOKEN_LIFETIME_SECONDS
        if not math.isfinite(expires_in) or expires_in <= 0:
            expires_in = DEFAULT_TOKEN_LIFETIME_SECONDS
        # Measured from when the answer arrived; the margin covers the request time and clock skew.
        margin = min(TOKEN_RENEW_MAX_MARGIN_SECONDS, expires_in * TOKEN_RENEW_FRACTION)
        return _Token(access, refresh, expires_in, self._clock() + expires_in - margin)

    def _token_error(self, response: requests.Response) -> AtHocError:
        """400/401 from the token endpoint: name the cause from `error` (and error_description, redacted)."""
        try:
            payload = response.json()
        except ValueError:
            payload = None
        code = str(payload.get("error", "")) if isinstance(payload, dict) else ""
        description = str(payload.get("error_description", "") or "") if isinstance(payload, dict) else ""
        description = self._redact(_quote(description))
        cause = _TOKEN_ERROR_CAUSES.get(code, "the token request was refused")
        org = self.settings.org_code
        if _WRONG_ORG_HINTS.search(description):
            # IdentityServer answers a wrong acr_values tenant with invalid_grant + a description.
            cause = f"wrong ATHOC_ORG_CODE {org!r} (tenant), or the account does not belong to it"
        elif code == "invalid_client":
            cause += f" (or ATHOC_ORG_CODE {org!r} is not the client's organization)"
        label = code or f"HTTP {response.status_code}"
        message = f"AtHoc token request failed: {label}: {cause}"
        if description:
            message += f" (server: {description})"
        return AtHocAuthError(message, status=response.status_code)

    # ---------------------------------------------------------------- one request with retries

    def _call(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        end: float | None = None,
        retries: int | None = None,
        attempts: _AttemptCounter | None = None,
    ) -> requests.Response:
        """Send one logical request until it succeeds (2xx), fails permanently, or time/retries run out.

        The time limit is the earlier of the caller's `deadline` and this request's own budget
        (settings.call_budget_seconds); a token request inherits the `end` of the call that needs it.
        """
        if end is None:
            end = self._clock() + self.settings.call_budget_seconds
            if deadline is not None:
                end = min(end, deadline)
        max_retries = self.settings.max_retries if retries is None else retries
        is_token = kind == "token"
        retry = 0
        renewed_after_401 = False
        while True:
            bearer = None if is_token else self._bearer(end)
            request_headers = dict(headers or {})
            if bearer is not None:
                request_headers["Authorization"] = f"Bearer {bearer}"
            retry_after: float | None = None
            if attempts is not None:
                attempts.count += 1
            try:
                response = self._send(method, path, params=params, data=data, headers=request_headers, end=end)
            except _OutOfTime:
                if attempts is not None:
                    attempts.count -= 1  # never sent
                raise self._out_of_time(kind, retry) from None
            except AtHocError as error:
                failure = error
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response
                if status == 401 and bearer is not None and not renewed_after_401:
                    # Expired or revoked: one fresh token and one retry, not counted as a retry.
                    log.info("%s: 401, getting a fresh token and retrying once", kind)
                    self._forget_token(bearer)
                    renewed_after_401 = True
                    continue
                failure = self._http_error(kind, response)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            if not failure.transient or retry >= max_retries:
                raise failure
            wait = retry_wait(retry, retry_after, rng=self._random.random)
            if self._clock() + wait + MIN_REQUEST_SECONDS > end:
                raise AtHocError(
                    f"{failure} (no time left to retry within the budget)",
                    kind=failure.kind,
                    transient=True,
                    status=failure.status,
                )
            retry += 1
            log.warning("%s: %s; retry %d of %d in %.1f s", kind, failure, retry, max_retries, wait)
            self._sleep(wait)

    def _out_of_time(self, kind: str, retries: int) -> AtHocError:
        suffix = f" after {retries} retries" if retries else ""
        return AtHocError(
            f"{kind}: out of time{suffix} (deadline or call budget reached)", kind="budget", transient=True
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        data: Any,
        headers: Mapping[str, str],
        end: float,
    ) -> requests.Response:
        """One HTTP exchange; transport failures become AtHocError (transient or not)."""
        remaining = end - self._clock()
        if remaining < MIN_REQUEST_SECONDS:
            raise _OutOfTime
        # Never wait on the network past the deadline: shorten both timeouts to the time left.
        timeout = (min(self.settings.connect_timeout, remaining), min(self.settings.read_timeout, remaining))
        started = self._clock()
        try:
            response = self._session.request(
                method,
                self._base + path,
                params=params,
                data=data,
                headers=headers,
                timeout=timeout,
                verify=self._verify,
                allow_redirects=False,
                stream=True,
            )
            try:
                tls = _tls_version(response)
                if tls is not None:
                    self._last_tls_version = tls
                _ = response.content  # read the body now, inside the same error handling
            finally:
                response.close()
        except requests.exceptions.SSLError as error:
            raise self._tls_error(error) from None
        except requests.exceptions.Timeout as error:
            phase = "connect" if isinstance(error, requests.exceptions.ConnectTimeout) else "read"
            raise AtHocError(
                f"{method} {path}: {phase} timeout after {timeout[0 if phase == 'connect' else 1]:.1f} s",
                kind="network",
                transient=True,
            ) from None
        except requests.exceptions.ProxyError as error:
            raise AtHocError(
                f"{method} {path}: proxy error ({self._redact(_quote(str(error)))})", kind="network", transient=True
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
            raise AtHocError(
                f"{method} {path}: connection failed or dropped ({self._redact(_quote(str(error)))})",
                kind="network",
                transient=True,
            ) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            raise AtHocAuthError(f"ATHOC_SERVER_URL {self._base!r} is not a usable URL", kind="client") from None
        except requests.exceptions.RequestException as error:
            raise AtHocError(
                f"{method} {path}: {error.__class__.__name__} ({self._redact(_quote(str(error)))})",
                kind="network",
                transient=True,
            ) from None
        except OSError as error:  # e.g. requests refusing an unreadable CA bundle path
            raise AtHocAuthError(f"{method} {path}: TLS setup failed ({_quote(str(error))})", kind="tls") from None
        log.debug("%s %s -> %d in %.2f s", method, path, response.status_code, self._clock() - started)
        return response

    def _tls_error(self, error: Exception) -> AtHocError:
        text = self._redact(_quote(str(error)))
        lowered = text.lower()
        if any(marker in lowered for marker in _TLS_VERSION_MARKERS):
            return AtHocAuthError(
                f"TLS failure connecting to {self._base}: {text} "
                "(the server must offer TLS 1.2 or newer with a common cipher)",
                kind="tls",
            )
        if any(marker in lowered for marker in _TLS_CERTIFICATE_MARKERS):
            return AtHocAuthError(
                f"TLS failure connecting to {self._base}: {text} (certificate not trusted: set ATHOC_CA_BUNDLE to the "
                "CA that signed it, or fix ATHOC_SERVER_URL's host name)",
                kind="tls",
            )
        # A handshake cut short by the network (EOF, reset) is worth another try.
        return AtHocError(f"TLS handshake with {self._base} interrupted: {text}", kind="network", transient=True)

    def _http_error(self, kind: str, response: requests.Response) -> AtHocError:
        status = response.status_code
        if kind == "token" and status in (400, 401):
            return self._token_error(response)
        reason = response.reason or ""
        label = f"{kind}: HTTP {status} {reason}".rstrip()
        if 300 <= status < 400:
            location = _strip_userinfo(response.headers.get("Location", "?").split("?", 1)[0])
            return AtHocError(
                f"{label}: redirected to {location} (not followed; check ATHOC_SERVER_URL, e.g. https://)",
                kind="client",
                transient=False,
                status=status,
            )
        detail = "" if kind == "token" else self._body_text(response)
        message = f"{label}: {detail}" if detail else label
        if status in RETRYABLE_STATUSES:
            return AtHocError(message, kind="throttled" if status == 429 else "server", transient=True, status=status)
        if status == 401:
            return AtHocAuthError(
                f"{message} (a fresh token was refused too: is the API application enabled and the service "
                "account allowed to use the API?)",
                status=status,
            )
        if status == 403:
            return AtHocAuthError(
                f"{message} (the service account needs the User Manager role in org {self.settings.org_code})",
                status=status,
            )
        if status == 404:
            message += f" (check ATHOC_SERVER_URL and ATHOC_ORG_CODE {self.settings.org_code!r})"
        return AtHocError(message, kind="client" if status < 500 else "server", transient=False, status=status)

    def _body_text(self, response: requests.Response) -> str:
        """A short, redacted explanation from an error body (JSON message fields, else the text)."""
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            for key in ("Message", "message", "error_description", "error", "title", "detail", "Detail"):
                value = payload.get(key)
                if value:
                    return self._redact(_quote(str(value)))
        text = response.text if "html" not in response.headers.get("Content-Type", "") else ""
        return self._redact(_quote(text))


class _OutOfTime(Exception):
    """Internal: the time left is too short to start a request."""


@dataclass
class _AttemptCounter:
    count: int = 0


_shared_lock = threading.Lock()
_shared_clients: dict[AtHocSettings, AtHocClient] = {}


def shared_client(settings: AtHocSettings) -> AtHocClient:
    """The process-wide client for these settings: one Session, one token, pooled connections."""
    with _shared_lock:
        client = _shared_clients.get(settings)
        if client is None:
            client = _shared_clients[settings] = AtHocClient(settings)
        return client
