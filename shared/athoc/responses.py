"""What a refused AtHoc answer means: the status (and, for the token endpoint, the OAuth error) as an AtHocError
whose message names the setting to fix, with the server's own words redacted."""

from __future__ import annotations

import re

import requests

from shared.athoc.errors import AtHocAuthError, AtHocError
from shared.athoc.redaction import Redactor, strip_userinfo
from shared.athoc.retry import RETRYABLE_STATUSES
from shared.athoc.transport import ApiRequest, body_as_text, decode_json
from shared.errors import ErrorKind

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
_WRONG_ORG_HINTS = re.compile(r"tenant|organi[sz]ation|\borg\b|acr_values", re.IGNORECASE)
# key=value pairs of an echoed form: their words (acr_values=tenant%3A...) are not the server's diagnosis.
_FORM_PAIR = re.compile(r"\b[\w.]+=[^&\s]*")
_MESSAGE_KEYS = ("Message", "message", "error_description", "error", "title", "detail", "Detail")


def explain_refusal(request: ApiRequest, response: requests.Response, *, org_code: str, redact: Redactor) -> AtHocError:
    """A non-2xx answer as an error: transient for 408/429/5xx, AtHocAuthError for 401/403 and refused grants."""
    status = response.status_code
    if request.token_endpoint and status in (400, 401):
        return token_refusal(response, org_code=org_code, redact=redact)
    reason = response.reason or ""
    label = f"{request.label}: HTTP {status} {reason}".rstrip()
    if 300 <= status < 400:
        location = strip_userinfo(response.headers.get("Location", "?").split("?", 1)[0])
        return AtHocError(
            f"{label}: redirected to {location} (not followed; check ATHOC_SERVER_URL, e.g. https://)",
            kind=ErrorKind.CLIENT,
            transient=False,
            status=status,
        )
    detail = "" if request.token_endpoint else body_text(response, redact)
    message = f"{label}: {detail}" if detail else label
    if status in RETRYABLE_STATUSES:
        kind = ErrorKind.THROTTLED if status == 429 else ErrorKind.SERVER
        return AtHocError(message, kind=kind, transient=True, status=status)
    if status == 401:
        return AtHocAuthError(
            f"{message} (a fresh token was refused too: is the API application enabled and the service "
            "account allowed to use the API?)",
            status=status,
        )
    if status == 403:
        return AtHocAuthError(
            f"{message} (the service account needs the User Manager role in org {org_code})", status=status
        )
    if status == 404:
        message += f" (check ATHOC_SERVER_URL and ATHOC_ORG_CODE {org_code!r})"
    kind = ErrorKind.CLIENT if status < 500 else ErrorKind.SERVER
    return AtHocError(message, kind=kind, transient=False, status=status)


def token_refusal(response: requests.Response, *, org_code: str, redact: Redactor) -> AtHocAuthError:
    """400/401 from the token endpoint: name the cause from `error` (and error_description, redacted)."""
    try:
        payload = decode_json(response.content)
    except ValueError:
        payload = None
    code = str(payload.get("error", "")) if isinstance(payload, dict) else ""
    description = str(payload.get("error_description", "") or "") if isinstance(payload, dict) else ""
    description = redact.quoted(description)
    cause = _TOKEN_ERROR_CAUSES.get(code, "the token request was refused")
    # Only the server's own words count: an echoed form always contains acr_values=tenant%3A...
    if _WRONG_ORG_HINTS.search(_FORM_PAIR.sub(" ", description)):
        # IdentityServer answers a wrong acr_values tenant with invalid_grant + a description.
        cause = f"wrong ATHOC_ORG_CODE {org_code!r} (tenant), or the account does not belong to it"
    elif code == "invalid_client":
        cause += f" (or ATHOC_ORG_CODE {org_code!r} is not the client's organization)"
    label = code or f"HTTP {response.status_code}"
    message = f"AtHoc token request failed: {label}: {cause}"
    if description:
        message += f" (server: {description})"
    return AtHocAuthError(message, status=response.status_code)


def body_text(response: requests.Response, redact: Redactor) -> str:
    """A short, redacted explanation from an error body (JSON message fields, else the text)."""
    try:
        payload = decode_json(response.content)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        for key in _MESSAGE_KEYS:
            value = payload.get(key)
            if value:
                return redact.quoted(str(value))
    text = body_as_text(response) if "html" not in response.headers.get("Content-Type", "") else ""
    return redact.quoted(text)
