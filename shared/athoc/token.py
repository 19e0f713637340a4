"""The AtHoc access token: the documented password grant as a plain form post, refresh, reuse.

One token is reused until shortly before `expires_in`; a refresh token is used when the server gave one,
the password grant again when the refresh fails; a 401 from an API call makes the token forgotten (the
caller then gets a fresh one and retries once). msal does not fit this grant (see the README).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from shared.athoc.calls import RetryingCaller
from shared.athoc.errors import AtHocError, AtHocProtocolError
from shared.athoc.redaction import Redactor
from shared.athoc.transport import ApiRequest, decode_json
from shared.errors import ErrorKind
from shared.settings import AtHocSettings

log = logging.getLogger(__name__)

TOKEN_PATH = "/AuthServices/Auth/connect/token"  # noqa: S105 - a path, not a secret
TOKEN_LABEL = "token"  # noqa: S105 - names the call in logs, not a secret
# A token is renewed this long before it expires: 10 % of its life, at most 60 s.
TOKEN_RENEW_FRACTION = 0.1
TOKEN_RENEW_MAX_MARGIN_SECONDS = 60.0
# expires_in is unverified for AtHoc; when absent assume a short life (a 401 would recover anyway).
DEFAULT_TOKEN_LIFETIME_SECONDS = 300.0


@dataclass
class Token:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: float
    renew_at: float  # clock() value after which the token is renewed


class TokenCache:
    """The client's one token, shared by its threads; satisfies shared.athoc.calls.TokenSource."""

    def __init__(
        self, caller: RetryingCaller, settings: AtHocSettings, *, redact: Redactor, clock: Callable[[], float]
    ):
        self._caller = caller
        self._settings = settings
        self._redact = redact
        self._clock = clock
        self._token: Token | None = None
        self._lock = threading.RLock()

    def bearer(self, end: float) -> str:
        """A usable access token: the cached one, else refreshed, else from the password grant (may raise)."""
        with self._lock:
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

    def forget(self, access_token: str) -> None:
        """After a 401: the access token is dead; keep the refresh token (it may still work)."""
        with self._lock:
            if self._token is not None and self._token.access_token == access_token:
                self._token.renew_at = -math.inf

    def fresh(self, end: float) -> Token:
        """A new token from the password grant, cached (the `check` command tests the credentials)."""
        with self._lock:
            self._token = self._password_grant(end)
            return self._token

    def _request(self, form: dict[str, str], *, max_retries: int | None = None) -> ApiRequest:
        return ApiRequest(TOKEN_LABEL, "POST", TOKEN_PATH, body=form, token_endpoint=True, max_retries=max_retries)

    def _form(self, grant: str) -> dict[str, str]:
        settings = self._settings
        form = {"grant_type": grant, "client_id": settings.client_id, "client_secret": settings.client_secret}
        if grant == "password":
            form.update(
                username=settings.username,
                password=settings.password,
                scope=settings.scope,
                acr_values=f"tenant:{settings.org_code}",
            )
        return form

    def _password_grant(self, end: float) -> Token:
        response = self._caller.call(self._request(self._form("password")), end=end, tokens=None)
        token = self._parse(response)
        log.info(
            "token: password grant for org %s, expires in %.0f s, %s",
            self._settings.org_code,
            token.expires_in,
            "refresh token given" if token.refresh_token else "no refresh token",
        )
        return token

    def _refresh_grant(self, refresh_token: str, end: float) -> Token | None:
        """One refresh attempt; any failure falls back to the password grant (which has the retries)."""
        form = self._form("refresh_token")
        form["refresh_token"] = refresh_token
        try:
            response = self._caller.call(self._request(form, max_retries=0), end=end, tokens=None)
            token = self._parse(response)
        except AtHocError as error:
            if error.kind is ErrorKind.BUDGET:
                raise
            log.info("token: refresh refused (%s); using the password grant", error)
            return None
        if token.refresh_token is None:
            token.refresh_token = refresh_token  # servers may keep the old refresh token valid (sliding)
        log.info("token: refreshed, expires in %.0f s", token.expires_in)
        return token

    def _parse(self, response: requests.Response) -> Token:
        try:
            payload = decode_json(response.content)
        except ValueError:
            raise AtHocProtocolError("token endpoint: the response is not JSON") from None
        access = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(payload, dict) or not isinstance(access, str) or not access:
            raise AtHocProtocolError("token endpoint: the response has no access_token")
        refresh = payload.get("refresh_token")
        refresh = refresh if isinstance(refresh, str) and refresh else None
        self._redact.add(access)
        self._redact.add(refresh)
        expires_in = _lifetime(payload.get("expires_in", DEFAULT_TOKEN_LIFETIME_SECONDS))
        # Measured from when the answer arrived; the margin covers the request time and clock skew.
        margin = min(TOKEN_RENEW_MAX_MARGIN_SECONDS, expires_in * TOKEN_RENEW_FRACTION)
        return Token(access, refresh, expires_in, self._clock() + expires_in - margin)


def _lifetime(expires_in: object) -> float:
    """The announced lifetime in seconds; DEFAULT_TOKEN_LIFETIME_SECONDS when unreadable or not positive."""
    try:
        seconds = float(expires_in)  # type: ignore[arg-type]  # anything JSON: float() decides
    except (TypeError, ValueError):
        return DEFAULT_TOKEN_LIFETIME_SECONDS
    if not math.isfinite(seconds) or seconds <= 0:
        return DEFAULT_TOKEN_LIFETIME_SECONDS
    return seconds
