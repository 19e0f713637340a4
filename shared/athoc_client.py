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
* Retries: 408/429/5xx, timeouts and dropped connections, exponential backoff with full jitter (at
  least 1 s after a 429), `Retry-After` honoured up to a cap (above it the call fails transiently at
  once), never past the caller's deadline or the per-request budget.
* Every JSON body is decoded from its bytes (decode_json): the server's charset labels are not trusted.
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
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

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
# A Retry-After above this fails the call at once (transient): see _call for why it is not slept.
RETRY_AFTER_CAP_SECONDS = 60.0
# 429 without Retry-After: the limit is per time window, so a retry sooner than this is a likely 429 again.
THROTTLED_MIN_WAIT_SECONDS = 1.0
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

# Expected row outcomes (contract section 2), matched on the row's detail text after every login in it
# (the one sent and the one echoed) became LOGIN_PLACEHOLDER. A wrong NOT_FOUND or DENIED silently loses an
# update, so the patterns only accept texts whose subject is clearly the user; anything else is an ERROR.
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
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/=]+", re.IGNORECASE)
_TOKEN_JSON = re.compile(
    r'("(?:access_token|refresh_token|id_token|password|client_secret)"\s*:\s*")(?:[^"\\]|\\.)*(")',
    re.IGNORECASE,
)
# A form echoed back by a server (error descriptions sometimes quote the request).
_FORM_SECRET = re.compile(r"\b(password|client_secret|refresh_token|access_token)=[^&\s]*", re.IGNORECASE)
# key=value pairs of an echoed form: their words (acr_values=tenant%3A...) are not the server's diagnosis.
_FORM_PAIR = re.compile(r"\b[\w.]+=[^&\s]*")

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


def retry_wait(retry: int, retry_after: float | None, *, rng: Callable[[], float], throttled: bool = False) -> float:
    """How long to wait before retry number `retry` (0-based): Retry-After (capped) when given, else backoff
    (at least THROTTLED_MIN_WAIT_SECONDS after a 429)."""
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP_SECONDS)
    delay = backoff_delay(retry, rng=rng)
    return max(delay, THROTTLED_MIN_WAIT_SECONDS) if throttled else delay


def decode_json(content: bytes) -> Any:
    """A JSON body from its raw bytes, whatever charset the Content-Type claims or omits.

    json.loads on bytes detects UTF-8/16/32 and skips a BOM (RFC 8259 JSON is UTF-8), where
    requests' response.json() would decode `text/json` or `text/plain` without charset as ISO-8859-1 and
    fail on a UTF-8 BOM. Raises ValueError (JSONDecodeError, UnicodeDecodeError) when it is not JSON.
    """
    return json.loads(content)


def _body_as_text(response: requests.Response) -> str:
    """A non-JSON body as text: UTF-8 when it is valid UTF-8 (the common case), else requests' guess."""
    try:
        return response.content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return response.text


def _lookup(row: Mapping[str, Any], key: str) -> Any:
    """Value of `key` in `row`, matching the key case-insensitively (the server's casing is unverified)."""
    if key in row:
        return row[key]
    folded = key.casefold()
    for candidate, value in row.items():
        if isinstance(candidate, str) and candidate.casefold() == folded:
            return value
    return None


def _has_key(row: Mapping[str, Any], key: str) -> bool:
    folded = key.casefold()
    return any(isinstance(candidate, str) and candidate.casefold() == folded for candidate in row)


def _login_of(row: Mapping[str, Any]) -> str | None:
    """A search row's LOGIN_ID, or None when it is missing, null or blank (such a user cannot be updated)."""
    login = _lookup(row, LOGIN_FIELD)
    if login is None or not str(login).strip():
        return None
    return str(login)


def _row_fingerprint(row: Mapping[str, Any]) -> str:
    """Identifies a row without LOGIN_ID across pages (by USER_ID when it has one), so it is counted once."""
    user_id = _lookup(row, "USER_ID")
    if user_id is not None:
        return f"USER_ID={user_id}"
    return json.dumps(row, sort_keys=True, default=str)


def _page_start(mode: str | None, offset: int, limit: int) -> int:
    """Index in the server's list of the first row answered for `offset` under the detected meaning."""
    if mode == "record":
        return offset
    if mode == "page1":
        return (offset - 1) * limit
    return offset * limit


def _next_offset(mode: str | None, position: int, limit: int) -> int:
    """The Offset whose page holds the row at index `position` (page indexes round down: the overlap with
    what was read is deduplicated, nothing is skipped)."""
    if mode == "record":
        return position
    if mode == "page1":
        return position // limit + 1
    return position // limit


def _without_logins(text: str, logins: Sequence[str]) -> str:
    """`text` with each login replaced by LOGIN_PLACEHOLDER, case-insensitively, longest first (a login
    may contain words like "field" or "user", and servers may echo it in another case)."""
    for login in sorted({lg.strip() for lg in logins if lg and lg.strip()}, key=len, reverse=True):
        text = re.sub(re.escape(login), LOGIN_PLACEHOLDER, text, flags=re.IGNORECASE)
    return text


def classify_row(
    row: Mapping[str, Any], *, sent_login: str | None = None, duty_field: str | None = None
) -> tuple[RowStatus, str]:
    """Classify one SyncByCommonNames response row, conservatively (contract section 2).

    OK -> UPDATED. Any other status but Partial (Error, Failed, ...) whose text, with the logins
    removed, says the *user* does not exist -> NOT_FOUND; that the service account may not update the
    user -> DENIED. Everything else (Partial, no status, texts naming an attribute, a value, a format, a
    date or `duty_field`, texts matching both or neither) -> ERROR with the server's text, so nothing
    unexpected is ever counted as an expected outcome.
    """
    status = str(_lookup(row, ":SyncStatus") or "").strip()
    details = str(_lookup(row, ":SyncDetails") or "").strip()
    if status.casefold() == "ok":
        return RowStatus.UPDATED, details or "OK"
    if not status:
        return RowStatus.ERROR, f"no :SyncStatus in the response row ({details or 'no details'})"
    if status.casefold() != "partial":
        echoed = _lookup(row, LOGIN_FIELD)
        text = _without_logins(details, [sent_login or "", "" if echoed is None else str(echoed)])
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


def _secret_forms(secret: str) -> set[str]:
    """The ways a secret can come back in server text: as is, form-encoded (quote_plus, quote) and
    JSON-escaped (with and without escaped slashes)."""
    escaped = json.dumps(secret)[1:-1]
    forms = {secret, quote_plus(secret), quote(secret, safe=""), quote(secret), escaped, escaped.replace("/", "\\/")}
    return {form for form in forms if form}


class _Redactor:
    """Removes every secret this client knows from text that came from outside (server bodies, errors)."""

    MAX_TOKENS = 50

    def __init__(self, *credentials: str):
        self._lock = threading.Lock()
        # The credentials stay for the client's life; tokens are bounded to the latest ones.
        self._credentials: set[str] = set().union(*(_secret_forms(c) for c in credentials if c))
        self._tokens: list[str] = []

    def add(self, secret: str | None) -> None:
        if secret:
            with self._lock:
                if secret not in self._tokens:
                    self._tokens.append(secret)
                    if len(self._tokens) > self.MAX_TOKENS:
                        del self._tokens[:10]

    def __call__(self, text: str) -> str:
        text = _BEARER.sub(r"\1***", text)
        text = _TOKEN_JSON.sub(r"\1***\2", text)
        text = _FORM_SECRET.sub(r"\1=***", text)
        with self._lock:
            forms = set(self._credentials)
            for token in self._tokens:
                forms |= _secret_forms(token)
        for secret in sorted(forms, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def quoted(self, text: str) -> str:
        """Redacted, then shortened and whitespace-collapsed for quoting, then redacted again: cutting
        first could leave a secret's prefix, and collapsing could join a secret split by a line break."""
        return self(_quote(self(text)))


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
        max_retries: int | None = None,
    ) -> list[dict[str, Any]]:
        """Every user (with LOGIN_ID and `fields`) exactly once, in the order the server listed them.

        Works whether the server reads `Offset` as a page index (0- or 1-based) or a record offset:
        after Offset=0 the probe Offset=1 overlapping the first page means records, repeating it exactly
        means 1-based page numbers (confirmed by Offset=2), no overlap means page indexes. A page shorter
        than the Limit asked while more users may exist means the server caps Limit: later pages ask for
        the size it gives, so that page indexes count pages of the size the server uses. Stops on an
        empty page, on reaching TotalUsers, and on a page that adds nothing new (which raises when
        TotalUsers says users are missing: a partial list is never returned as complete). Rows without
        LOGIN_ID are skipped and counted (one WARNING per call). Raises AtHocError on any failure.
        `on_page(fetched_so_far, total_users)` after each page; `max_retries` overrides the setting.
        """
        started = self._clock()
        wanted = list(dict.fromkeys([LOGIN_FIELD, *fields]))
        users: dict[str, dict[str, Any]] = {}
        login_less: set[str] = set()  # distinct rows without LOGIN_ID (skipped, counted)
        limit = max(1, self.settings.page_size)
        mode: str | None = None  # "page", "page1" or "record" once the probe told
        stage = "first"  # "first" (Offset=0), "probe" (Offset=1), "probe2" (Offset=2 after a repeat), "walk"
        first_page: list[str] = []
        offset = 0
        requests_made = 0
        total: int | None = None
        while True:
            asked = limit
            rows, total_now = self._search_page(wanted, criteria, offset, deadline, limit=asked, retries=max_retries)
            requests_made += 1
            if total_now is not None:
                total = total_now
            identities: list[str] = []
            new = 0
            for row in rows:
                login = _login_of(row)
                if login is None:
                    identity = "\x00" + _row_fingerprint(row)  # cannot collide with a login
                    if identity not in login_less:
                        login_less.add(identity)
                        new += 1
                else:
                    identity = login
                    if login not in users:
                        users[login] = row
                        new += 1
                identities.append(identity)
            if on_page is not None:
                on_page(len(users), total)
            if not rows:
                break
            if stage == "first":
                start = 0
                first_page = identities
            elif stage == "probe":
                if identities == first_page:
                    # The first page again: Offset may be a 1-based page number (or ignored); Offset=2 tells.
                    stage, offset = "probe2", 2
                    continue
                # Record offsets make the probe repeat all but one user of the first page; page indexes
                # repeat none (or a few, if users were added while paging): judge by the size of the overlap.
                overlap = len(set(first_page).intersection(identities))
                mode = "record" if overlap >= max(1.0, (min(len(rows), len(first_page)) - 1) / 2) else "page"
                start = 1 if mode == "record" else asked
            elif stage == "probe2":
                mode = "page1"
                start = asked
            else:
                start = _page_start(mode, offset, asked)
            position = start + len(rows)  # index, in the server's list, of the first user not read yet
            seen = len(users) + len(login_less)
            if total is not None and (seen >= total or position >= total):
                break
            if new == 0:
                if total is None:
                    if stage == "probe2":
                        log.warning(
                            "%s: Offset 0, 1 and 2 all answered the same %d users and there is no TotalUsers: "
                            "taking them as the whole list",
                            SEARCH_KIND,
                            len(rows),
                        )
                    break  # no TotalUsers to compare with: a page with nothing new is the end
                raise AtHocError(
                    f"{SEARCH_KIND}: paging made no progress at Offset={offset} with {seen} of "
                    f"{total} users (the server repeats pages)",
                    kind="protocol",
                    transient=True,
                )
            if len(rows) < asked:
                limit = len(rows)  # fewer than asked while more may exist: the server caps Limit
            if stage == "first":
                stage, offset = "probe", 1
            else:
                stage = "walk"
                offset = _next_offset(mode, position, limit)
            max_requests = 2 * math.ceil(total / limit) + 5 if total is not None else MAX_PAGES_WITHOUT_TOTAL
            if requests_made >= max_requests:
                raise AtHocError(
                    f"{SEARCH_KIND}: paging did not finish after {requests_made} requests "
                    f"({len(users)} of {total} users)",
                    kind="protocol",
                    transient=True,
                )
        if login_less:
            log.warning(
                "%s: skipped %d user rows without %s (users AtHoc cannot update by login)",
                SEARCH_KIND,
                len(login_less),
                LOGIN_FIELD,
            )
        seen = len(users) + len(login_less)
        if total is not None and seen != total:
            log.warning(
                "%s: the server reported TotalUsers=%d but listed %d users (users changed while paging?)",
                SEARCH_KIND,
                total,
                seen,
            )
        meaning = {"page": "page index", "page1": "1-based page number", "record": "record offset", None: "not needed"}
        log.info(
            "%s: %d users in %d requests (Offset read as %s, %d per page), %.1f s",
            SEARCH_KIND,
            len(users),
            requests_made,
            meaning[mode],
            limit,
            self._clock() - started,
        )
        return list(users.values())

    def attribute_readable(self, name: str, *, deadline: float | None = None) -> AttributeCheck:
        """Whether search can read attribute `name` (one row). A 400 naming it -> not readable, with the
        server's text; other failures raise AtHocError.

        A server that ignores unknown Fields answers 200 without the key: rows that carry other keys but
        not `name` (case-insensitively) make it not readable, unless a search with Criteria `name pr`
        returns the key (a server that leaves empty values out of its rows).
        """
        try:
            rows, _ = self._search_page([LOGIN_FIELD, name], None, 0, deadline, limit=1)
        except AtHocError as error:
            if error.status == 400:
                return AttributeCheck(name, False, str(error))
            raise
        if not rows:
            return AttributeCheck(name, True, "readable (no users to read it from)")
        if any(_has_key(row, name) for row in rows) or not any(row for row in rows):
            return AttributeCheck(name, True, "readable")
        refused = ""
        try:
            present, _ = self._search_page([LOGIN_FIELD, name], f"{name} pr", 0, deadline, limit=1)
        except AtHocError as error:
            if error.transient or isinstance(error, AtHocAuthError):
                raise
            present, refused = [], f"; a search with Criteria '{name} pr' was refused too ({error})"
        if any(_has_key(row, name) for row in present):
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
        """Pair response rows with the logins sent, by the echoed LOGIN_ID (case and spaces ignored).

        A login without a row of its own is MISSING (not confirmed, retried), never confirmed by position:
        its detail quotes the rows that named no login sent. A response that is not a JSON array fails
        the chunk.
        """
        try:
            payload = decode_json(response.content)
        except ValueError:
            raise self._protocol_error(f"{SYNC_KIND}: the response is not JSON") from None
        if not isinstance(payload, list):
            raise self._protocol_error(
                f"{SYNC_KIND}: the response is a JSON {type(payload).__name__}, not an array of rows"
            )
        sent_counts = Counter(login.strip().casefold() for login, _ in chunk if login.strip())
        by_login: dict[str, list[Mapping[str, Any]]] = {}
        unattributed: list[str] = []  # texts of rows that name no login sent
        for row in payload:
            echoed = _lookup(row, LOGIN_FIELD) if isinstance(row, Mapping) else None
            key = str(echoed).strip().casefold() if echoed is not None else ""
            if isinstance(row, Mapping) and key in sent_counts:
                by_login.setdefault(key, []).append(row)
                continue
            if not isinstance(row, Mapping):
                unattributed.append(f"a row that is not an object: {self._redact.quoted(str(row))}")
                continue
            status, detail = classify_row(row, duty_field=self.settings.duty_field)
            who = f"LOGIN_ID {self._redact.quoted(str(echoed))!r}" if key else f"no {LOGIN_FIELD}"
            unattributed.append(f"{who}: {'OK' if status is RowStatus.UPDATED else detail}")
        if unattributed:
            log.warning(
                "%s: %d response rows name no login sent (their users stay unconfirmed): %s",
                SYNC_KIND,
                len(unattributed),
                self._redact.quoted("; ".join(unattributed)),
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
                results.append(RowResult(login, value, RowStatus.MISSING, self._redact.quoted(missing_detail)))
                continue
            status, detail = self._classify_rows_of(login, queue, sent_counts[key])
            results.append(RowResult(login, value, status, self._redact.quoted(detail)))
        return results

    def _classify_rows_of(self, login: str, queue: list[Mapping[str, Any]], times_sent: int) -> tuple[RowStatus, str]:
        """The outcome for one occurrence of `login`, taking its next row; more rows than the login was
        sent that disagree are an ERROR (which of them is true is unknown)."""
        if len(queue) > times_sent:
            outcomes = [classify_row(row, sent_login=login, duty_field=self.settings.duty_field) for row in queue]
            if len({status for status, _ in outcomes}) > 1:
                texts = "; ".join(f"{status.value}: {detail}" for status, detail in outcomes)
                return RowStatus.ERROR, f"{len(queue)} conflicting rows in the response for this login ({texts})"
        return classify_row(queue.pop(0), sent_login=login, duty_field=self.settings.duty_field)

    def _protocol_error(self, message: str) -> AtHocError:
        # A reply we cannot trust is a failure of the file (retried later, counted), never a silent success.
        return AtHocError(message, kind="protocol", transient=True)

    # ---------------------------------------------------------------- search internals

    def _search_page(
        self,
        fields: list[str],
        criteria: str | None,
        offset: int,
        deadline: float | None,
        *,
        limit: int | None = None,
        retries: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        params: dict[str, str] = {
            "Fields": ",".join(fields),
            "Limit": str(limit or self.settings.page_size),
            "Offset": str(offset),
        }
        if criteria:
            params["Criteria"] = criteria
        response = self._call(
            SEARCH_KIND,
            "GET",
            f"{self._org_path}/users/search/basic",
            params=params,
            deadline=deadline,
            retries=retries,
        )
        try:
            payload = decode_json(response.content)
        except ValueError:
            raise self._protocol_error(f"{SEARCH_KIND}: the response is not JSON") from None
        if not isinstance(payload, Mapping):
            raise self._protocol_error(f"{SEARCH_KIND}: the response has no Users array")
        total = _lookup(payload, "TotalUsers")
        try:
            total_users = int(total) if total is not None and not isinstance(total, bool) else None
        except (TypeError, ValueError):
            total_users = None
        users = _lookup(payload, "Users")
        if users is None and (_has_key(payload, "Users") or total_users == 0):
            users = []  # "Users": null, or no Users at all beside TotalUsers 0: an empty page
        if not isinstance(users, list) or not all(isinstance(user, dict) for user in users):
            raise self._protocol_error(f"{SEARCH_KIND}: the response has no Users array")
        return users, total_users

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
            payload = decode_json(response.content)
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
            payload = decode_json(response.content)
        except ValueError:
            payload = None
        code = str(payload.get("error", "")) if isinstance(payload, dict) else ""
        description = str(payload.get("error_description", "") or "") if isinstance(payload, dict) else ""
        description = self._redact.quoted(description)
        cause = _TOKEN_ERROR_CAUSES.get(code, "the token request was refused")
        org = self.settings.org_code
        # Only the server's own words count: an echoed form always contains acr_values=tenant%3A...
        if _WRONG_ORG_HINTS.search(_FORM_PAIR.sub(" ", description)):
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
            if retry_after is not None and retry_after > RETRY_AFTER_CAP_SECONDS:
                # Sleeping the cap would only retry into a certain 429/503, and sleeping the whole
                # Retry-After would hold the function (and the batch lock) for minutes even when the
                # budget allows it: the call fails transiently now and the file's next attempt comes later.
                raise AtHocError(
                    f"{failure} (the server asks to wait {retry_after:.0f} s, more than the "
                    f"{RETRY_AFTER_CAP_SECONDS:.0f} s a call waits: retrying later)",
                    kind=failure.kind,
                    transient=True,
                    status=failure.status,
                )
            wait = retry_wait(retry, retry_after, rng=self._random.random, throttled=failure.status == 429)
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
                f"{method} {path}: proxy error ({self._redact.quoted(str(error))})", kind="network", transient=True
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
            raise AtHocError(
                f"{method} {path}: connection failed or dropped ({self._redact.quoted(str(error))})",
                kind="network",
                transient=True,
            ) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            raise AtHocAuthError(f"ATHOC_SERVER_URL {self._base!r} is not a usable URL", kind="client") from None
        except requests.exceptions.RequestException as error:
            raise AtHocError(
                f"{method} {path}: {error.__class__.__name__} ({self._redact.quoted(str(error))})",
                kind="network",
                transient=True,
            ) from None
        except OSError as error:  # e.g. requests refusing an unreadable CA bundle path
            raise AtHocAuthError(f"{method} {path}: TLS setup failed ({_quote(str(error))})", kind="tls") from None
        log.debug("%s %s -> %d in %.2f s", method, path, response.status_code, self._clock() - started)
        return response

    def _tls_error(self, error: Exception) -> AtHocError:
        text = self._redact.quoted(str(error))
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
            payload = decode_json(response.content)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            for key in ("Message", "message", "error_description", "error", "title", "detail", "Detail"):
                value = payload.get(key)
                if value:
                    return self._redact.quoted(str(value))
        text = _body_as_text(response) if "html" not in response.headers.get("Content-Type", "") else ""
        return self._redact.quoted(text)


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
