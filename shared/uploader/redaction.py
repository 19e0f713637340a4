"""Keep secrets out of everything the uploader prints or logs.

The transport's own messages carry the request URL, SAS token included (urllib3: "Max retries exceeded
with url: /c/a.csv?sv=...&sig=..."), so every text leaving the uploader goes through `redact`: the known
secret values, and any `sig=`, `AccountKey=` or `SharedAccessSignature=` value whatever its origin.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

REDACTED = "REDACTED"
_SECRET_PARAMETERS = re.compile(r"(?i)\b(sig(?:=|%3D)|AccountKey=|SharedAccessSignature=)[^&;\s'\"<>]+")


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first, so a token that contains another secret is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _SECRET_PARAMETERS.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted record, traceback included (a filter would miss exception text).

    Times are UTC (`2026-12-02T14:05:09Z`), never the server's local zone.
    """

    converter = time.gmtime  # type: ignore[assignment]  # builtin: not bound as a method

    def __init__(self, fmt: str, redactor: Redactor):
        super().__init__(fmt, datefmt="%Y-%m-%dT%H:%M:%SZ")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))
