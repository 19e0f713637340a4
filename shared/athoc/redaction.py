"""Keeping secrets (password, client secret, tokens, proxy credentials) out of every text this client emits.

Server text is redacted before it is quoted in an error or a log line; tokens travel only in headers and
form bodies, and no URL, PreparedRequest or token response body is ever logged.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

# Server text quoted in errors is cut to this length (bodies can be whole HTML pages).
MAX_QUOTED_TEXT = 300

_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/=]+", re.IGNORECASE)
_TOKEN_JSON = re.compile(
    r'("(?:access_token|refresh_token|id_token|password|client_secret)"\s*:\s*")(?:[^"\\]|\\.)*(")',
    re.IGNORECASE,
)
# A form echoed back by a server (error descriptions sometimes quote the request).
_FORM_SECRET = re.compile(r"\b(password|client_secret|refresh_token|access_token)=[^&\s]*", re.IGNORECASE)


def shorten(text: str) -> str:
    """Whitespace collapsed and cut to MAX_QUOTED_TEXT, for quoting in one line."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_QUOTED_TEXT else text[: MAX_QUOTED_TEXT - 3] + "..."


def strip_userinfo(url: str) -> str:
    """A URL (a proxy's, a redirect's) without user:password@ (proxy credentials are secrets too)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def secret_forms(secret: str) -> set[str]:
    """The ways a secret can come back in server text: as is, form-encoded (quote_plus, quote) and
    JSON-escaped (with and without escaped slashes)."""
    escaped = json.dumps(secret)[1:-1]
    forms = {secret, quote_plus(secret), quote(secret, safe=""), quote(secret), escaped, escaped.replace("/", "\\/")}
    return {form for form in forms if form}


class Redactor:
    """Removes every secret a client knows from text that came from outside (server bodies, errors)."""

    MAX_TOKENS = 50

    def __init__(self, *credentials: str):
        self._lock = threading.Lock()
        # The credentials stay for the client's life; tokens are bounded to the latest ones.
        self._credentials: set[str] = set().union(*(secret_forms(c) for c in credentials if c))
        self._tokens: list[str] = []

    def add(self, secret: str | None) -> None:
        """Remember a token the server issued, so it is redacted from now on."""
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
                forms |= secret_forms(token)
        for secret in sorted(forms, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def quoted(self, text: str) -> str:
        """Redacted, then shortened and whitespace-collapsed for quoting, then redacted again: cutting
        first could leave a secret's prefix, and collapsing could join a secret split by a line break."""
        return self(shorten(self(text)))
