"""One logical AtHoc request with retries: bearer, one fresh token after a 401, backoff, Retry-After, budget.

Retries: 408/429/5xx, timeouts and dropped connections, exponential backoff with full jitter (at least 1 s
after a 429), `Retry-After` honoured up to a cap (above it the call fails transiently at once), never past
the caller's deadline or the per-request budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import requests

from shared.athoc.errors import AtHocError
from shared.athoc.redaction import Redactor
from shared.athoc.responses import explain_refusal
from shared.athoc.retry import RETRY_AFTER_CAP_SECONDS, parse_retry_after, retry_wait
from shared.athoc.transport import ApiRequest, Transport
from shared.errors import ErrorKind
from shared.settings import AtHocSettings

log = logging.getLogger(__name__)

# Less time than this left: a request would only time out, so it is not started.
MIN_REQUEST_SECONDS = 0.05


class TokenSource(Protocol):
    """Where API requests get their bearer token (shared.athoc.token.TokenCache)."""

    def bearer(self, end: float) -> str: ...

    def forget(self, access_token: str) -> None: ...


@dataclass
class AttemptCounter:
    """HTTP attempts actually sent for one logical request, retries included (counted even when it fails)."""

    count: int = 0


class RetryingCaller:
    """Sends ApiRequests through a Transport until they succeed, fail permanently, or run out of time."""

    def __init__(
        self,
        transport: Transport,
        settings: AtHocSettings,
        *,
        redact: Redactor,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        rng: Callable[[], float],
    ):
        self._transport = transport
        self._settings = settings
        self._redact = redact
        self._clock = clock
        self._sleep = sleep
        self._rng = rng

    def end_for(self, deadline: float | None) -> float:
        """The time limit of a request starting now: its own budget, cut to the caller's deadline."""
        end = self._clock() + self._settings.call_budget_seconds
        return end if deadline is None else min(end, deadline)

    def call(
        self,
        request: ApiRequest,
        *,
        end: float,
        tokens: TokenSource | None,
        attempts: AttemptCounter | None = None,
    ) -> requests.Response:
        """The 2xx answer to `request`, or AtHocError. `end` is an absolute clock() value (see end_for); a token
        request made on the way inherits it. `tokens` is None for the token endpoint itself."""
        max_retries = self._settings.max_retries if request.max_retries is None else request.max_retries
        retry = sent = 0
        renewed_after_401 = False
        while True:
            bearer = None if tokens is None else tokens.bearer(end)
            headers = dict(request.headers or {})
            if bearer is not None:
                headers["Authorization"] = f"Bearer {bearer}"
            timeout = self._timeout(end)
            if timeout is None:
                raise self._out_of_time(request.label, retry)
            sent += 1
            if attempts is not None:
                attempts.count += 1
            retry_after: float | None = None
            try:
                response = self._transport.send(request, headers=headers, timeout=timeout, attempt=sent)
            except AtHocError as error:
                failure = error
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response
                if status == 401 and tokens is not None and bearer is not None and not renewed_after_401:
                    # Expired or revoked: one fresh token and one retry, not counted as a retry.
                    log.info("%s: 401, getting a fresh token and retrying once", request.label)
                    tokens.forget(bearer)
                    renewed_after_401 = True
                    continue
                failure = explain_refusal(request, response, org_code=self._settings.org_code, redact=self._redact)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            wait = self._wait_or_give_up(failure, retry, max_retries=max_retries, retry_after=retry_after, end=end)
            retry += 1
            log.warning("%s: %s; retry %d of %d in %.1f s", request.label, failure, retry, max_retries, wait)
            self._sleep(wait)

    def _timeout(self, end: float) -> tuple[float, float] | None:
        """(connect, read) timeouts shortened to the time left, so nothing waits on the network past `end`;
        None when too little time is left to start a request."""
        remaining = end - self._clock()
        if remaining < MIN_REQUEST_SECONDS:
            return None
        return min(self._settings.connect_timeout, remaining), min(self._settings.read_timeout, remaining)

    def _wait_or_give_up(
        self, failure: AtHocError, retry: int, *, max_retries: int, retry_after: float | None, end: float
    ) -> float:
        """Seconds to wait before the next retry, or raise: `failure` when it is permanent or the retries are
        spent, a transient error of its kind when waiting is not worth it or no time is left."""
        if not failure.transient or retry >= max_retries:
            raise failure
        if retry_after is not None and retry_after > RETRY_AFTER_CAP_SECONDS:
            # Sleeping the cap would only retry into a certain 429/503, and sleeping the whole
            # Retry-After would hold the function (and the batch lock) for minutes even when the
            # budget allows it: the call fails transiently now and the file's next attempt comes later.
            raise _transient_like(
                failure,
                f"the server asks to wait {retry_after:.0f} s, more than the "
                f"{RETRY_AFTER_CAP_SECONDS:.0f} s a call waits: retrying later",
            )
        wait = retry_wait(retry, retry_after, rng=self._rng, throttled=failure.status == 429)
        if self._clock() + wait + MIN_REQUEST_SECONDS > end:
            raise _transient_like(failure, "no time left to retry within the budget")
        return wait

    @staticmethod
    def _out_of_time(label: str, retries: int) -> AtHocError:
        suffix = f" after {retries} retries" if retries else ""
        return AtHocError(
            f"{label}: out of time{suffix} (deadline or call budget reached)", kind=ErrorKind.BUDGET, transient=True
        )


def _transient_like(failure: AtHocError, why: str) -> AtHocError:
    """`failure` with `why` appended, transient: the file is retried later."""
    return AtHocError(f"{failure} ({why})", kind=failure.kind, transient=True, status=failure.status)
