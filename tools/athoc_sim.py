"""AtHoc REST API simulator: a real HTTP server on loopback for tests, the local demo and benchmarks.

Pure standard library. It implements what is known of the AtHoc REST API
(token endpoint, OIDC discovery, ``users/search/basic``, ``users/SyncByCommonNames``) strictly enough
to catch client mistakes, plus fault injection (status codes, dropped connections, latency, malformed
answers, revoked/expired tokens) and a control API under ``/__sim__/`` for other processes.

Choices a caller may rely on (the real server is unverified on these points):

- Search: every user object carries ``LOGIN_ID``, ``USER_ID`` and every requested field; a field the
  user has no value for is ``null``. Users come in ``USER_ID`` order. Field names and ``eq`` values
  match exactly (case-sensitive). ``offset_mode="ignore"`` is a misbehaving server that always answers
  the first page (to test client loop guards); ``"page1"`` reads Offset as a 1-based page number
  (Offset 0 and 1 both answer the first page).
- Switchable behaviours of other servers (``configure(...)``, or ``POST /__sim__/configure``): the JSON
  wire format (Content-Type, BOM, raw UTF-8 instead of ``\\u`` escapes), page skipping by the requested
  rather than the capped Limit, no ``TotalUsers``, an empty page as ``"Users": null`` or without
  ``Users``, Criteria answered with a status, unknown Fields ignored instead of 400, null values left
  out of user objects. ``add_login_less_user`` seeds a search row without a usable ``LOGIN_ID``.
- Sync: a row with any error applies nothing, unless ``AllowPartialUpdate=true`` is sent and at least
  one attribute is valid: then the valid ones are applied and the row says ``Partial``. ``null`` values
  are accepted and stored (and recorded in history) as ``None``, so a client that sends ``null``
  instead of ``""`` is detectable. With a malformed answer (``malform_next``) the updates are still
  applied: the server did the work, the answer is garbled.
- Tokens: refresh tokens rotate (the old one is invalid once used), as IdentityServer's OneTimeOnly.
  The client may authenticate in the form or with HTTP Basic.
- Path prefixes and query parameter names are case-insensitive; the org code in the path too.
- History: ``history(login)`` lists the duty values written, in order; ``history_entries(login)`` adds
  when each was applied and the ``seq`` of the request that wrote it (every recorded request carries
  its ``seq`` and headers), so a caller can attribute each value to the sender that sent it.

Command line: ``python -m tools.athoc_sim [--port 0] [--demo-users N] ...`` prints
``ATHOC_SIM_URL=http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import codecs
import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

KINDS = ("discovery", "token", "search", "sync", "control", "other")
MALFORM_MODES = ("not_json", "object", "drop_rows", "wrong_logins", "anonymous_errors", "conflicting_rows")
OFFSET_MODES = ("page", "page1", "record", "ignore")
# How a page without users lists them: [] (what production clients saw), null, or no Users key at all.
EMPTY_USERS_FORMS = ("list", "null", "missing")
# A seeded user whose search row has no LOGIN_ID key at all (add_login_less_user).
OMIT_LOGIN = object()
ALLOWED_SCOPES = frozenset({"openid", "profile", "athoc.iws.web.api", "offline_access"})
API_SCOPE = "athoc.iws.web.api"
# Attributes every org has, besides the duty and collar fields and any seeded attribute.
BASE_ATTRIBUTES = ("LOGIN_ID", "USER_ID", "FIRSTNAME", "LASTNAME", "DISPLAYNAME")
REFRESH_TOKEN_LIFETIME = 30 * 24 * 3600
DEFAULT_SEARCH_LIMIT = 100
_REDACTED_FORM_FIELDS = ("password", "client_secret", "refresh_token")


@dataclass
class RecordedRequest:
    """One request the simulator answered (or dropped)."""

    kind: str  # one of KINDS
    method: str
    path: str  # path without query string
    query: dict[str, str]  # last value wins for repeated names
    status: int | None  # None: the connection was dropped without a response
    body: Any = None  # sync: parsed JSON; token: form with secrets as "***"; control: parsed JSON
    headers: dict[str, str] = field(default_factory=dict)  # Authorization redacted
    fault: str | None = None  # "fail", "drop", "drop_after_apply", "malform:<mode>" or None
    started: float = 0.0  # time.monotonic() when the request line arrived
    client_port: int = 0  # the client's source port: equal ports mean one pooled connection
    seq: int = 0  # this request's number, 1, 2, ... in arrival order (history entries name it)


@dataclass(frozen=True)
class HistoryEntry:
    """One value written to a user's duty field, with when and by which request (see `history_entries`)."""

    value: str | None
    applied_at: float  # time.monotonic() when the value was applied
    request_seq: int  # the `seq` of the SyncByCommonNames request that wrote it (0: not through HTTP)


@dataclass
class _Fault:
    action: str  # "fail", "drop", "malform"
    remaining: int
    kinds: frozenset[str] | None
    status: int = 503
    retry_after: int | str | None = None
    mode: str | None = None
    after_apply: bool = False


@dataclass(frozen=True)
class JsonWire:
    """How JSON answers are put on the wire (control answers always use the default)."""

    content_type: str = "application/json; charset=utf-8"
    bom: bool = False  # a UTF-8 byte order mark before the JSON text
    ascii_only: bool = True  # non-ASCII as \u escapes; False: raw UTF-8 bytes

    def encode(self, payload: Any) -> bytes:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=self.ascii_only).encode("utf-8")
        return codecs.BOM_UTF8 + body if self.bom else body


DEFAULT_WIRE = JsonWire()


class _Keep:
    """configure(): an argument left out (None is a value for criteria_status)."""


_KEEP = _Keep()


class _Reply:
    """An HTTP answer built by a route, sent by the handler (JSON payloads are encoded when sent)."""

    def __init__(
        self,
        status: int,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.payload = payload
        self.raw = raw
        self.content_type = content_type
        self.headers = headers or {}

    def encode(self, wire: JsonWire) -> tuple[bytes, str]:
        if self.raw is not None:
            return self.raw, self.content_type or "application/octet-stream"
        return wire.encode(self.payload), self.content_type or wire.content_type


class _ClientError(Exception):
    """A 400-class answer from deep inside a route."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _normalize_kinds(kinds: str | Iterable[str] | None) -> frozenset[str] | None:
    if kinds is None:
        return None
    result = frozenset([kinds] if isinstance(kinds, str) else kinds)
    unknown = result - set(KINDS)
    if unknown:
        raise ValueError(f"unknown request kinds: {sorted(unknown)}")
    return result


# --- Criteria (SCIM-like filter) -------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<dstr>\"(?:[^\"\\]|\\.)*\")|(?P<word>[^\s'\"()]+))")


def _parse_criteria(text: str, known: set[str], supports_presence: bool) -> list[list[tuple[str, str, str | None]]]:
    """Parse ``A pr or B eq 'x' and C pr`` into OR-of-AND terms; raises _ClientError on anything else."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise _ClientError(400, f"Invalid Criteria: cannot parse near '{text[pos:]}'")
        pos = match.end()
        if match.group("str") is not None:
            tokens.append(("str", match.group("str")[1:-1].replace("''", "'")))
        elif match.group("dstr") is not None:
            tokens.append(("str", json.loads(match.group("dstr"))))
        else:
            tokens.append(("word", match.group("word")))
    if not tokens:
        raise _ClientError(400, "Invalid Criteria: empty expression")
    disjunction: list[list[tuple[str, str, str | None]]] = [[]]
    i = 0
    while True:
        if i >= len(tokens) or tokens[i][0] != "word":
            raise _ClientError(400, "Invalid Criteria: attribute name expected")
        name = tokens[i][1]
        if name not in known:
            raise _ClientError(400, f"Invalid Criteria: attribute '{name}' does not exist")
        if i + 1 >= len(tokens) or tokens[i + 1][0] != "word":
            raise _ClientError(400, f"Invalid Criteria: operator expected after '{name}'")
        op = tokens[i + 1][1].lower()
        if op == "pr":
            if not supports_presence:
                raise _ClientError(400, "Invalid Criteria: operator 'pr' is not supported")
            disjunction[-1].append((name, "pr", None))
            i += 2
        elif op in ("eq", "ne"):
            if i + 2 >= len(tokens) or tokens[i + 2][0] != "str":
                raise _ClientError(400, f"Invalid Criteria: quoted value expected after '{name} {op}'")
            disjunction[-1].append((name, op, tokens[i + 2][1]))
            i += 3
        else:
            raise _ClientError(400, f"Invalid Criteria: unsupported operator '{tokens[i + 1][1]}'")
        if i == len(tokens):
            return disjunction
        joiner = tokens[i][1].lower() if tokens[i][0] == "word" else ""
        if joiner == "or":
            disjunction.append([])
        elif joiner != "and":
            raise _ClientError(400, f"Invalid Criteria: 'or' or 'and' expected, got '{tokens[i][1]}'")
        i += 1


def _matches(user: dict[str, Any], criteria: list[list[tuple[str, str, str | None]]]) -> bool:
    for conjunction in criteria:
        ok = True
        for name, op, value in conjunction:
            actual = user.get(name)
            if op == "pr":
                ok = actual is not None and actual != ""
            elif op == "eq":
                ok = actual is not None and str(actual) == value
            else:  # ne
                ok = actual is None or str(actual) != value
            if not ok:
                break
        if ok:
            return True
    return False


# --- The simulator ---------------------------------------------------------------------------------


class AtHocSimulator:
    """An AtHoc server on 127.0.0.1 with fault injection; thread-safe. See the module docstring."""

    def __init__(
        self,
        org_code: str = "DEMO",
        client_id: str = "bobo-sync",
        client_secret: str = "sim-client-secret",  # noqa: S107 - a simulator's fixed test credential
        username: str = "svc-bobo",
        password: str = "sim-password",  # noqa: S107 - a simulator's fixed test credential
        expires_in: int = 3600,
        offset_mode: str = "page",
        duty_field: str = "On-Duty-DTG",
        collar_field: str = "Collar-Number",
        datetime_format: str = "%d/%m/%Y %H:%M:%S",
        supports_presence: bool = True,
        max_limit: int = 1000,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        attributes: Iterable[str] = (),
    ) -> None:
        if offset_mode not in OFFSET_MODES:
            raise ValueError(f"offset_mode must be one of {OFFSET_MODES}")
        self.org_code = org_code
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password = password
        self.expires_in = expires_in
        self.offset_mode = offset_mode
        self.duty_field = duty_field
        self.collar_field = collar_field
        self.datetime_format = datetime_format
        self.supports_presence = supports_presence
        self.max_limit = max_limit
        self.latency = 0.0
        # Behaviours of servers that differ from the default (see configure()).
        self.json_wire = DEFAULT_WIRE
        self.page_skip_by_requested_limit = False
        self.omit_total_users = False
        self.empty_users_as = "list"
        self.criteria_status: int | None = None
        self.ignore_unknown_fields = False
        self.omit_null_fields = False
        self.token_errors_echo_request = False
        self.host = host
        self.port = port
        self._lock = threading.RLock()
        self._users: dict[str, dict[str, Any]] = {}  # insertion order == USER_ID order
        self._next_id = itertools.count(1001)
        self._attributes: set[str] = {*BASE_ATTRIBUTES, duty_field, collar_field, *attributes}
        self._history: dict[str, list[str | None]] = {}
        self._history_entries: dict[str, list[HistoryEntry]] = {}
        self._request_seq = itertools.count(1)
        self._denied: set[str] = set()
        self._faults: list[_Fault] = []
        self._access_tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._refresh_tokens: dict[str, tuple[str, float]] = {}  # token -> (scope, monotonic expiry)
        self._issued: list[str] = []  # every access and refresh token ever issued (tests look for leaks)
        self._log: list[RecordedRequest] = []
        self._counts: Counter[str] = Counter()
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> AtHocSimulator:
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        httpd = _Server((self.host, self.port), _Handler)
        httpd.sim = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), name="athoc-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        # Keep-alive connections would otherwise still be served by their handler threads.
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> AtHocSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("simulator not started")
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/AuthServices/Auth/connect/token"

    # --- users -------------------------------------------------------------------------------------

    def add_user(self, login: str, collar: str | None = None, duty: str | None = None, **other_attributes: Any) -> int:
        """Add (or update) a user; returns its USER_ID. Attributes are keyed by common name."""
        attributes = dict(other_attributes)
        if collar is not None:
            attributes[self.collar_field] = collar
        if duty is not None:
            attributes[self.duty_field] = duty
        with self._lock:
            return self._upsert(login, attributes)

    def add_users(self, users: Iterable[dict[str, Any]]) -> list[int]:
        """Add (or update) many users: dicts with LOGIN_ID plus attributes; returns their USER_IDs."""
        with self._lock:
            ids = []
            for user in users:
                attributes = dict(user)
                login = attributes.pop("LOGIN_ID")
                ids.append(self._upsert(login, attributes))
            return ids

    def _upsert(self, login: str, attributes: dict[str, Any]) -> int:
        if not isinstance(login, str) or not login:
            raise ValueError("LOGIN_ID must be a non-empty string")
        attributes.pop("USER_ID", None)
        user = self._users.get(login)
        if user is None:
            user = {"LOGIN_ID": login, "USER_ID": next(self._next_id)}
            self._users[login] = user
        user.update(attributes)
        self._attributes.update(attributes)
        return user["USER_ID"]

    def add_login_less_user(self, login: Any = None, **attributes: Any) -> int:
        """A user whose search row has LOGIN_ID `login` (None, "" or another unusable value), or no
        LOGIN_ID key at all with `login=OMIT_LOGIN`; returns its USER_ID. Sync never matches it."""
        with self._lock:
            user_id = next(self._next_id)
            user: dict[str, Any] = {"USER_ID": user_id, **attributes}
            if login is not OMIT_LOGIN:
                user["LOGIN_ID"] = login
            # A key no real login can equal, so SyncByCommonNames never finds this user.
            self._users[f"\x00login-less-{user_id}"] = user
            self._attributes.update(attributes)
            return user_id

    def remove_user(self, login: str) -> None:
        with self._lock:
            self._users.pop(login, None)

    def set_attribute(self, login: str, name: str, value: Any) -> None:
        """Seed one attribute without recording history (registers the attribute name if new)."""
        with self._lock:
            self._users[login][name] = value
            self._attributes.add(name)

    def define_attribute(self, name: str) -> None:
        with self._lock:
            self._attributes.add(name)

    def drop_attribute(self, name: str) -> None:
        """The org no longer has this attribute: search and sync treat it as unknown."""
        with self._lock:
            self._attributes.discard(name)
            for user in self._users.values():
                user.pop(name, None)

    @property
    def attributes(self) -> set[str]:
        with self._lock:
            return set(self._attributes)

    def get_user(self, login: str) -> dict[str, Any] | None:
        with self._lock:
            user = self._users.get(login)
            return dict(user) if user is not None else None

    def users(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(user) for user in self._users.values()]

    def history(self, login: str) -> list[str | None]:
        """Every value written to the duty field through SyncByCommonNames for this user, in order."""
        with self._lock:
            return list(self._history.get(login, ()))

    def history_entries(self, login: str) -> list[HistoryEntry]:
        """`history(login)` with, for each value, when it was applied and the `seq` of the request that
        wrote it, so a caller can tell which of several senders (and which of their events) it came from."""
        with self._lock:
            return list(self._history_entries.get(login, ()))

    def deny(self, login: str) -> None:
        with self._lock:
            self._denied.add(login)

    def allow(self, login: str) -> None:
        with self._lock:
            self._denied.discard(login)

    # --- behaviours --------------------------------------------------------------------------------

    def configure(
        self,
        *,
        offset_mode: str | None = None,
        json_content_type: str | None = None,
        json_bom: bool | None = None,
        json_ascii_only: bool | None = None,
        page_skip_by_requested_limit: bool | None = None,
        omit_total_users: bool | None = None,
        empty_users_as: str | None = None,
        criteria_status: int | _Keep | None = _KEEP,
        ignore_unknown_fields: bool | None = None,
        omit_null_fields: bool | None = None,
        token_errors_echo_request: bool | None = None,
    ) -> None:
        """Switch behaviours of differently-built servers; arguments left out keep their value.

        `criteria_status`: every search with Criteria answers this HTTP status (None: evaluated normally).
        `page_skip_by_requested_limit`: Offset as page index skips pages of the *requested* Limit even
        when `max_limit` caps the page, so a client that keeps asking for more than the cap skips users.
        `token_errors_echo_request`: token errors quote the raw form body (password and all) in
        error_description, as some servers' diagnostics do.
        """
        if offset_mode is not None and offset_mode not in OFFSET_MODES:
            raise ValueError(f"offset_mode must be one of {OFFSET_MODES}")
        if empty_users_as is not None and empty_users_as not in EMPTY_USERS_FORMS:
            raise ValueError(f"empty_users_as must be one of {EMPTY_USERS_FORMS}")
        if not isinstance(criteria_status, _Keep) and criteria_status is not None:
            if isinstance(criteria_status, bool) or not isinstance(criteria_status, int):
                raise ValueError("criteria_status must be an HTTP status or None")
            if not 400 <= criteria_status <= 599:
                raise ValueError("criteria_status must be a 4xx or 5xx status")
        with self._lock:
            if offset_mode is not None:
                self.offset_mode = offset_mode
            wire = self.json_wire
            self.json_wire = JsonWire(
                content_type=wire.content_type if json_content_type is None else json_content_type,
                bom=wire.bom if json_bom is None else bool(json_bom),
                ascii_only=wire.ascii_only if json_ascii_only is None else bool(json_ascii_only),
            )
            if page_skip_by_requested_limit is not None:
                self.page_skip_by_requested_limit = bool(page_skip_by_requested_limit)
            if omit_total_users is not None:
                self.omit_total_users = bool(omit_total_users)
            if empty_users_as is not None:
                self.empty_users_as = empty_users_as
            if not isinstance(criteria_status, _Keep):
                self.criteria_status = criteria_status
            if ignore_unknown_fields is not None:
                self.ignore_unknown_fields = bool(ignore_unknown_fields)
            if omit_null_fields is not None:
                self.omit_null_fields = bool(omit_null_fields)
            if token_errors_echo_request is not None:
                self.token_errors_echo_request = bool(token_errors_echo_request)

    # --- faults ------------------------------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int = 503,
        retry_after: int | str | None = None,
        kinds: str | Iterable[str] | None = None,
    ) -> None:
        """The next `count` requests of those kinds (None: any but control) answer `status`, unprocessed."""
        with self._lock:
            self._faults.append(_Fault("fail", count, _normalize_kinds(kinds), status=status, retry_after=retry_after))

    def drop_next(self, count: int, kinds: str | Iterable[str] | None = None, after_apply: bool = False) -> None:
        """The next `count` requests: the connection closes without a response.

        after_apply=True: the request is processed first (a sync is applied), then the answer is lost.
        """
        with self._lock:
            self._faults.append(_Fault("drop", count, _normalize_kinds(kinds), after_apply=after_apply))

    def malform_next(self, count: int, mode: str) -> None:
        """The next `count` SyncByCommonNames answers are malformed (the updates are still applied)."""
        if mode not in MALFORM_MODES:
            raise ValueError(f"mode must be one of {MALFORM_MODES}")
        with self._lock:
            self._faults.append(_Fault("malform", count, frozenset({"sync"}), mode=mode))

    def pending_faults(self) -> int:
        """How many more requests the injected fail/drop/malform faults will still hit (0: all served)."""
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self.latency = 0.0

    def revoke_tokens(self) -> None:
        """Every access and refresh token issued so far becomes invalid."""
        with self._lock:
            self._access_tokens.clear()
            self._refresh_tokens.clear()

    @property
    def issued_tokens(self) -> list[str]:
        """Every access and refresh token issued so far, revoked or not, in issue order."""
        with self._lock:
            return list(self._issued)

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now (refresh tokens stay valid)."""
        with self._lock:
            self._access_tokens.clear()

    def _take_malform(self) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.action == "malform":
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _take_request_fault(self, kind: str) -> _Fault | None:
        """The first pending fail/drop fault matching this kind, in registration order."""
        with self._lock:
            for fault in self._faults:
                if fault.action in ("fail", "drop") and (fault.kinds is None or kind in fault.kinds):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- request log -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def count(self, kind: str) -> int:
        with self._lock:
            return self._counts[kind]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: self._counts[kind] for kind in KINDS}

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._counts.clear()

    def _next_request_seq(self) -> int:
        with self._lock:
            return next(self._request_seq)

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._log.append(entry)
            self._counts[entry.kind] += 1

    # --- protocol: tokens --------------------------------------------------------------------------

    def _issue_tokens(self, scope: str, with_refresh: bool) -> dict[str, Any]:
        now = time.monotonic()
        access = secrets.token_urlsafe(32)
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": scope,
        }
        with self._lock:
            self._access_tokens[access] = now + self.expires_in
            self._issued.append(access)
            if with_refresh:
                refresh = secrets.token_urlsafe(32)
                self._refresh_tokens[refresh] = (scope, now + REFRESH_TOKEN_LIFETIME)
                self._issued.append(refresh)
                answer["refresh_token"] = refresh
        return answer

    def _token(self, form: dict[str, str], basic: tuple[str, str] | None, raw_form: str = "") -> _Reply:
        def error(code: str, description: str | None = None) -> _Reply:
            body = {"error": code}
            if self.token_errors_echo_request:
                description = f"{description or code}; request: {raw_form}"
            if description:
                body["error_description"] = description
            return _Reply(400, body, headers={"Cache-Control": "no-store"})

        grant_type = form.get("grant_type")
        if not grant_type:
            return error("invalid_request", "grant_type is missing")
        client_id, client_secret = basic if basic else (form.get("client_id"), form.get("client_secret"))
        if not client_id:
            return error("invalid_request", "client_id is missing")
        if grant_type not in ("password", "refresh_token"):
            return error("unsupported_grant_type")
        required = ("username", "password", "acr_values", "scope") if grant_type == "password" else ("refresh_token",)
        for name in required:
            if not form.get(name):
                return error("invalid_request", f"{name} is missing")
        if client_id != self.client_id or client_secret != self.client_secret:
            return error("invalid_client")
        if grant_type == "refresh_token":
            with self._lock:
                entry = self._refresh_tokens.pop(form["refresh_token"], None)  # rotation: one use only
            if entry is None or entry[1] <= time.monotonic():
                return error("invalid_grant", "invalid refresh token")
            return _Reply(200, self._issue_tokens(entry[0], True), headers={"Cache-Control": "no-store"})
        if form["username"] != self.username or form["password"] != self.password:
            return error("invalid_grant", "invalid_username_or_password")
        if form["acr_values"] != f"tenant:{self.org_code}":
            return error("invalid_grant", "invalid tenant")
        scopes = form["scope"].split()
        if not scopes or any(s not in ALLOWED_SCOPES for s in scopes) or API_SCOPE not in scopes:
            return error("invalid_scope")
        tokens = self._issue_tokens(" ".join(scopes), "offline_access" in scopes)
        return _Reply(200, tokens, headers={"Cache-Control": "no-store"})

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        with self._lock:
            expiry = self._access_tokens.get(token.strip())
        return expiry is not None and time.monotonic() < expiry

    # --- protocol: search --------------------------------------------------------------------------

    def _search(self, query: dict[str, str]) -> _Reply:
        with self._lock:
            known = set(self._attributes)
        fields_param = query.get("fields")
        fields = [f.strip() for f in fields_param.split(",") if f.strip()] if fields_param else ["LOGIN_ID"]
        unknown = [name for name in fields if name not in known]
        if unknown and not self.ignore_unknown_fields:
            raise _ClientError(400, f"Invalid field: attribute '{unknown[0]}' does not exist")
        fields = [name for name in fields if name in known]
        requested_limit = _int_param(query, "limit", DEFAULT_SEARCH_LIMIT, minimum=1)
        limit = min(requested_limit, self.max_limit)
        offset = _int_param(query, "offset", 0, minimum=0)
        criteria_text = query.get("criteria")
        if criteria_text and self.criteria_status is not None:
            raise _ClientError(self.criteria_status, "Criteria is not supported by this server")
        criteria = _parse_criteria(criteria_text, known, self.supports_presence) if criteria_text else None
        with self._lock:
            if criteria is None:
                matching = list(self._users.values())
            else:
                matching = [user for user in self._users.values() if _matches(user, criteria)]
            page_unit = requested_limit if self.page_skip_by_requested_limit else limit
            if self.offset_mode == "page":
                start = offset * page_unit
            elif self.offset_mode == "page1":  # 1-based page numbers; 0 is read as 1
                start = max(offset - 1, 0) * page_unit
            elif self.offset_mode == "record":
                start = offset
            else:  # "ignore": a misbehaving server
                start = 0
            page = [_project(user, fields, self.omit_null_fields) for user in matching[start : start + limit]]
            answer: dict[str, Any] = {"Users": page}
            if not page and self.empty_users_as != "list":
                if self.empty_users_as == "null":
                    answer["Users"] = None
                else:
                    del answer["Users"]
            if not self.omit_total_users:
                answer["TotalUsers"] = len(matching)
            answer["FetchedRecords"] = len(page)
        return _Reply(200, answer)

    # --- protocol: sync ----------------------------------------------------------------------------

    def _valid_value(self, name: str, value: Any) -> bool:
        if value is None:
            return True
        if name == self.duty_field:
            if not isinstance(value, str):
                return False
            if value == "":
                return True
            try:
                datetime.strptime(value, self.datetime_format)
            except ValueError:
                return False
            return True
        return isinstance(value, (str, int, float, bool))

    def _sync(
        self, rows: list[dict[str, Any]], existing_only: bool, allow_partial: bool, request_seq: int = 0
    ) -> list[dict[str, Any]]:
        results = []
        with self._lock:
            for row in rows:
                results.append(self._sync_row(row, existing_only, allow_partial, request_seq))
        return results

    def _sync_row(
        self, row: dict[str, Any], existing_only: bool, allow_partial: bool, request_seq: int = 0
    ) -> dict[str, Any]:
        result = dict(row)

        def answer(status: str, details: str, user_id: int | None) -> dict[str, Any]:
            result[":SyncStatus"] = status
            result[":SyncDetails"] = details
            result["USER_ID"] = user_id
            return result

        login = row.get("LOGIN_ID")
        if not isinstance(login, str) or not login:
            return answer("Error", "LOGIN_ID is required", None)
        user = self._users.get(login)
        if user is None and existing_only:
            return answer("Error", f"User: {login} does not exists in the Organization", None)
        if login in self._denied:
            return answer("Error", f"Access denied: the operator does not have permission to update user {login}", None)
        errors: list[str] = []
        good: dict[str, Any] = {}
        for name, value in row.items():
            if name in ("LOGIN_ID", "USER_ID"):
                continue
            if name not in self._attributes:
                errors.append(f"Attribute '{name}' does not exist")
            elif not self._valid_value(name, value):
                errors.append(f"Invalid value '{value}' for attribute '{name}'")
            else:
                good[name] = value
        if errors and not (allow_partial and good):
            return answer("Error", "; ".join(errors), None)
        created = user is None
        if user is None:
            user = {"LOGIN_ID": login, "USER_ID": next(self._next_id)}
            self._users[login] = user
        user.update(good)
        if self.duty_field in good:
            self._history.setdefault(login, []).append(good[self.duty_field])
            self._history_entries.setdefault(login, []).append(
                HistoryEntry(good[self.duty_field], time.monotonic(), request_seq)
            )
        if errors:
            return answer("Partial", "; ".join(errors), user["USER_ID"])
        return answer("OK", "Created" if created else "Updated", user["USER_ID"])

    # --- protocol: control -------------------------------------------------------------------------

    def _control(self, method: str, action: str, query: dict[str, str], body: Any) -> _Reply:
        if method == "GET" and action == "state":
            return _Reply(200, {"users": self.users()})
        if method == "GET" and action == "user":
            user = self.get_user(query.get("login", ""))
            return _Reply(200, user) if user is not None else _Reply(404, {"Message": "no such user"})
        if method == "GET" and action == "history":
            login = query.get("login", "")
            return _Reply(200, {"login": login, "history": self.history(login)})
        if method == "GET" and action == "counts":
            return _Reply(200, self.counts())
        if method == "GET" and action == "requests":
            return _Reply(200, [asdict(entry) for entry in self.requests])
        if method == "POST" and action == "users":
            if not isinstance(body, list) or not all(isinstance(u, dict) and u.get("LOGIN_ID") for u in body):
                return _Reply(400, {"Message": "expected a JSON list of objects with LOGIN_ID"})
            return _Reply(200, {"user_ids": self.add_users(body)})
        if method == "POST" and action == "faults":
            if not isinstance(body, dict):
                return _Reply(400, {"Message": "expected a JSON object"})
            try:
                self._apply_control_faults(body)
            except (TypeError, ValueError, KeyError) as exc:
                return _Reply(400, {"Message": f"bad fault request: {exc}"})
            return _Reply(200, {"ok": True})
        if method == "POST" and action == "configure":
            if not isinstance(body, dict):
                return _Reply(400, {"Message": "expected a JSON object"})
            try:
                self.configure(**body)
            except (TypeError, ValueError) as exc:
                return _Reply(400, {"Message": f"bad configure request: {exc}"})
            return _Reply(200, {"ok": True})
        if method == "POST" and action == "reset_log":
            self.reset_log()
            return _Reply(200, {"ok": True})
        return _Reply(404, {"Message": f"unknown control endpoint {method} /__sim__/{action}"})

    def _apply_control_faults(self, body: dict[str, Any]) -> None:
        unknown = set(body) - {
            "fail_next",
            "drop_next",
            "malform_next",
            "revoke_tokens",
            "expire_tokens",
            "latency",
            "deny",
            "allow",
            "clear_faults",
        }
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        if body.get("clear_faults"):
            self.clear_faults()
        if "fail_next" in body:
            spec = body["fail_next"]
            self.fail_next(int(spec["count"]), int(spec.get("status", 503)), spec.get("retry_after"), spec.get("kinds"))
        if "drop_next" in body:
            spec = body["drop_next"]
            self.drop_next(int(spec["count"]), spec.get("kinds"), bool(spec.get("after_apply", False)))
        if "malform_next" in body:
            spec = body["malform_next"]
            self.malform_next(int(spec["count"]), spec["mode"])
        if body.get("revoke_tokens"):
            self.revoke_tokens()
        if body.get("expire_tokens"):
            self.expire_tokens()
        if "latency" in body:
            self.latency = float(body["latency"])
        for login in body.get("deny", ()):
            self.deny(login)
        for login in body.get("allow", ()):
            self.allow(login)


def _project(user: dict[str, Any], fields: list[str], omit_null: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if "LOGIN_ID" in user:  # absent only for a login-less user seeded with OMIT_LOGIN
        item["LOGIN_ID"] = user["LOGIN_ID"]
    item["USER_ID"] = user["USER_ID"]
    for name in fields:
        if name in ("LOGIN_ID", "USER_ID"):
            continue
        value = user.get(name)
        if value is None and omit_null:
            continue
        item[name] = value
    return item


def _int_param(query: dict[str, str], name: str, default: int, minimum: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _ClientError(400, f"Invalid value '{raw}' for parameter '{name}'") from None
    if value < minimum:
        raise _ClientError(400, f"Invalid value '{raw}' for parameter '{name}'")
    return value


def _true(query: dict[str, str], name: str) -> bool:
    return query.get(name, "").strip().lower() == "true"


def _redact_form(form: dict[str, str]) -> dict[str, str]:
    return {k: ("***" if k in _REDACTED_FORM_FIELDS else v) for k, v in form.items()}


# --- HTTP plumbing ---------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    sim: AtHocSimulator


_API_RE = re.compile(r"^/api/v2/orgs/(?P<org>[^/]+)/users/(?P<rest>.+?)/?$", re.IGNORECASE)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AtHocSim/1.0"
    timeout = 120  # idle keep-alive connections end eventually
    # Buffered writes: headers and body leave in one segment (flushed by handle_one_request); with
    # TCP_NODELAY this avoids the ~40 ms Nagle/delayed-ACK stall on every keep-alive request.
    wbufsize = 256 * 1024
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.sim._lock:
            self.server.sim._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.sim._lock:
                self.server.sim._connections.discard(self.connection)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # --- dispatch ----------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        sim = self.server.sim
        started = time.monotonic()
        split = urlsplit(self.path)
        path = unquote(split.path)
        lower = path.lower().rstrip("/")
        query = {k.lower(): v for k, v in parse_qsl(split.query, keep_blank_values=True)}
        raw_query = dict(parse_qsl(split.query, keep_blank_values=True))
        body = self._read_body()
        kind = _classify(lower)
        entry = RecordedRequest(
            kind=kind,
            method=self.command,
            path=path,
            query=raw_query,
            status=None,
            headers=self._recorded_headers(),
            started=started,
            client_port=self.client_address[1],
            seq=sim._next_request_seq(),
        )
        try:
            if kind == "control":
                entry.body = _json_or_none(body)
                reply = sim._control(self.command, lower[len("/__sim__/") :], query, entry.body)
                self._send(reply, entry)
                return
            if sim.latency > 0:
                time.sleep(sim.latency)
            fault = sim._take_request_fault(kind)
            if fault is not None and fault.action == "fail":
                entry.fault = "fail"
                if kind == "sync":
                    entry.body = _json_or_none(body)
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                try:
                    phrase = HTTPStatus(fault.status).phrase
                except ValueError:
                    phrase = "Error"
                self._send(_Reply(fault.status, {"Message": f"Simulated {phrase}"}, headers=headers), entry)
                return
            if fault is not None and not fault.after_apply:
                entry.fault = "drop"
                self._drop(entry, body if kind == "sync" else None)
                return
            reply = self._route(kind, lower, query, body, entry)
            if fault is not None:  # drop after apply
                entry.fault = "drop_after_apply"
                self._drop(entry, None)
                return
            self._send(reply, entry)
        except _ClientError as exc:
            self._send(_Reply(exc.status, {"Message": exc.message}), entry)
        except Exception as exc:  # a simulator bug must surface as a 500, never a hung client
            self._send(_Reply(500, {"Message": f"simulator error: {exc!r}"}), entry)

    def _route(self, kind: str, lower: str, query: dict[str, str], body: bytes, entry: RecordedRequest) -> _Reply:
        sim = self.server.sim
        method = self.command
        if kind == "discovery":
            if method != "GET":
                return _Reply(405, {"Message": "method not allowed"}, headers={"Allow": "GET"})
            return _Reply(200, self._discovery())
        if kind == "token":
            if method != "POST":
                return _Reply(405, {"error": "invalid_request"}, headers={"Allow": "POST"})
            if "application/x-www-form-urlencoded" not in self.headers.get("Content-Type", "").lower():
                entry.body = None
                return _Reply(400, {"error": "invalid_request", "error_description": "form body expected"})
            raw_form = body.decode("utf-8", "replace")
            form = dict(parse_qsl(raw_form, keep_blank_values=True))
            entry.body = _redact_form(form)
            return sim._token(form, self._basic_auth(), raw_form)
        if kind in ("search", "sync"):
            if kind == "sync":
                entry.body = _json_or_none(body)
            if not sim._authorized(self.headers.get("Authorization")):
                return _Reply(
                    401,
                    {"Message": "Authorization has been denied for this request."},
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            org = _API_RE.match(lower)
            assert org is not None
            if org.group("org") != sim.org_code.lower():
                return _Reply(404, {"Message": f"Organization '{org.group('org')}' not found"})
            if kind == "search":
                if method != "GET":
                    return _Reply(405, {"Message": "method not allowed"}, headers={"Allow": "GET"})
                return sim._search(query)
            if method != "POST":
                return _Reply(405, {"Message": "method not allowed"}, headers={"Allow": "POST"})
            return self._sync(query, body, entry)
        if lower.startswith("/api/") and not sim._authorized(self.headers.get("Authorization")):
            return _Reply(401, {"Message": "Authorization has been denied for this request."})
        return _Reply(404, {"Message": "No HTTP resource was found that matches the request URI."})

    def _sync(self, query: dict[str, str], body: bytes, entry: RecordedRequest) -> _Reply:
        sim = self.server.sim
        if "json" not in self.headers.get("Content-Type", "").lower():
            return _Reply(415, {"Message": "The request entity's media type is not supported for this resource."})
        rows = entry.body
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            return _Reply(400, {"Message": "The request body must be a JSON array of objects."})
        results = sim._sync(
            rows, _true(query, "syncexistingusersonly"), _true(query, "allowpartialupdate"), request_seq=entry.seq
        )
        fault = sim._take_malform()
        if fault is None:
            return _Reply(200, results)
        entry.fault = f"malform:{fault.mode}"
        if fault.mode == "not_json":
            html = b"<html><head><title>Service Unavailable</title></head><body>Maintenance</body></html>"
            return _Reply(200, raw=html, content_type="text/html; charset=utf-8")
        if fault.mode == "object":
            return _Reply(200, {"Message": "simulated malformed answer", "Results": results})
        if fault.mode == "drop_rows":
            return _Reply(200, results[:-1])
        if fault.mode == "conflicting_rows" and results:  # the first row again, with the other outcome
            twin = dict(results[0])
            ok = twin.get(":SyncStatus") == "OK"
            twin.update({":SyncStatus": "Error" if ok else "OK", ":SyncDetails": "Internal error" if ok else "Updated"})
            return _Reply(200, [*results, twin])
        if fault.mode == "anonymous_errors":  # error rows do not say whose they are
            for row in results:
                if row.get(":SyncStatus") != "OK":
                    row.pop("LOGIN_ID", None)
            return _Reply(200, results)
        if results:  # wrong_logins: the first row names someone else
            results[0]["LOGIN_ID"] = f"not-{results[0].get('LOGIN_ID')}"
        return _Reply(200, results)

    def _discovery(self) -> dict[str, Any]:
        sim = self.server.sim
        host = self.headers.get("Host")
        base = f"http://{host}" if host else sim.url
        issuer = f"{base}/AuthServices/Auth"
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/connect/authorize",
            "token_endpoint": f"{issuer}/connect/token",
            "userinfo_endpoint": f"{issuer}/connect/userinfo",
            "jwks_uri": f"{issuer}/.well-known/openid-configuration/jwks",
            "scopes_supported": sorted(ALLOWED_SCOPES),
            "grant_types_supported": ["password", "refresh_token"],
            "response_types_supported": ["token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "acr_values_supported": [f"tenant:{sim.org_code}"],
        }

    def _basic_auth(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, secret = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote(user), unquote(secret)

    def _recorded_headers(self) -> dict[str, str]:
        headers = {}
        for name, value in self.headers.items():
            if name.lower() == "authorization":
                value = value.split(" ", 1)[0] + " ***"
            headers[name] = value
        return headers

    def _send(self, reply: _Reply, entry: RecordedRequest) -> None:
        entry.status = reply.status
        sim = self.server.sim
        sim._record(entry)
        body, content_type = reply.encode(DEFAULT_WIRE if entry.kind == "control" else sim.json_wire)
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _drop(self, entry: RecordedRequest, body: bytes | None) -> None:
        if body is not None:
            entry.body = _json_or_none(body)
        entry.status = None
        self.server.sim._record(entry)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _classify(lower_path: str) -> str:
    if lower_path.startswith("/__sim__/"):
        return "control"
    if lower_path == "/authservices/auth/.well-known/openid-configuration":
        return "discovery"
    if lower_path == "/authservices/auth/connect/token":
        return "token"
    match = _API_RE.match(lower_path)
    if match:
        rest = match.group("rest")
        if rest == "search/basic":
            return "search"
        if rest == "syncbycommonnames":
            return "sync"
    return "other"


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


# --- command line ----------------------------------------------------------------------------------


def demo_users(count: int) -> list[dict[str, Any]]:
    """Demo users: LOGIN_ID user00001@demo.example, Collar-Number "1", ..."""
    return [
        {"LOGIN_ID": f"user{i:05d}@demo.example", "Collar-Number": str(i), "DISPLAYNAME": f"Demo User {i}"}
        for i in range(1, count + 1)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.athoc_sim", description="AtHoc REST API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--demo-users", type=int, default=0, metavar="N")
    parser.add_argument("--offset-mode", choices=OFFSET_MODES, default="page")
    parser.add_argument("--latency", type=float, default=0.0, metavar="S")
    parser.add_argument("--expires-in", type=int, default=3600, metavar="S")
    parser.add_argument("--max-limit", type=int, default=1000)
    parser.add_argument("--no-presence", action="store_true", help="Criteria 'X pr' answers 400")
    parser.add_argument("--org-code", default="DEMO")
    parser.add_argument("--ready-file", metavar="PATH")
    args = parser.parse_args(argv)

    sim = AtHocSimulator(
        org_code=args.org_code,
        expires_in=args.expires_in,
        offset_mode=args.offset_mode,
        supports_presence=not args.no_presence,
        max_limit=args.max_limit,
        host=args.host,
        port=args.port,
    )
    if args.demo_users:
        sim.add_users(demo_users(args.demo_users))
    sim.latency = args.latency
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sim.start()
    if args.ready_file:  # written before the stdout line, so either signal means "ready"
        tmp = f"{args.ready_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(sim.url + "\n")
        os.replace(tmp, args.ready_file)  # atomic: a watcher never reads half a URL
    print(f"ATHOC_SIM_URL={sim.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
