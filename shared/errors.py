"""What kind of failure happened, and how a command ends, as types.

Health verdicts and alerts branch on the kind, never on message text.

AtHoc and storage errors carry an `ErrorKind`; job status rows store it beside the message, so rewording a
message can never flip the verdict an operator (or an alert rule) sees.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The command line's exit codes (docs/design.md#exit-codes)."""

    OK = 0
    FAILED = 1  # the job could not do its job (AtHoc unreachable for sync or cleanup, a refused sync, a failing check)
    SETTINGS = 2  # bad settings or arguments
    STORAGE = 3  # the storage account could not be reached


class ErrorKind(enum.StrEnum):
    """Why a call or a job failed. Stored by value in Table Storage and in run summaries (`error_kind=`)."""

    AUTH = "auth"  # credentials, organization or role refused: an operator must fix settings
    TLS = "tls"  # no common protocol, or the certificate is not trusted: an operator must fix trust
    NETWORK = "network"  # connection refused, dropped or timed out
    THROTTLED = "throttled"  # 429 after the retries
    SERVER = "server"  # 5xx after the retries
    CLIENT = "client"  # another 4xx: the request was refused as it was
    PROTOCOL = "protocol"  # an answer this client cannot read
    BUDGET = "budget"  # the caller's time budget ran out before the call could finish
    STORAGE = "storage"  # the storage account could not be reached
    MAPPING = "mapping"  # no usable mapping: the first mapping sync failed or was refused
    ROW = "row"  # AtHoc answered a user's row with an error (not "not found", not "denied")
    INTERNAL = "internal"  # an unexpected exception in this app (a bug): the traceback is in the log

    @property
    def needs_settings_fix(self) -> bool:
        """Retrying cannot help: credentials or trust are wrong (feeds the authentication alert)."""
        return self in (ErrorKind.AUTH, ErrorKind.TLS)

    @classmethod
    def parse(cls, value: object) -> ErrorKind | None:
        """The kind stored as text, or None for an empty or unknown value (rows written before kinds existed)."""
        try:
            return cls(str(value)) if value else None
        except ValueError:
            return None


def most_urgent(current: ErrorKind | None, new: ErrorKind | None) -> ErrorKind | None:
    """The kind a run reports when several failures happened: one an operator must fix (auth, TLS) wins,
    otherwise the first one seen."""
    if new is not None and new.needs_settings_fix and (current is None or not current.needs_settings_fix):
        return new
    return current or new
