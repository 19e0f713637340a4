"""The AtHoc client's errors: one base type carrying an `ErrorKind`, and subtypes callers branch on.

Every message names the cause and never contains a secret (server text is redacted before it is quoted).
"""

from __future__ import annotations

from shared.errors import ErrorKind


class AtHocError(Exception):
    """An AtHoc call failed.

    `transient`: worth retrying later (the file waits); `kind`: why it failed; `status`: the HTTP status
    when there was one.
    """

    def __init__(self, message: str, *, kind: ErrorKind, transient: bool, status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.transient = transient
        self.status = status


class AtHocAuthError(AtHocError):
    """Credentials or configuration are wrong (invalid_grant, invalid_client, wrong org, scope, TLS, 403):
    retrying cannot help."""

    def __init__(self, message: str, *, kind: ErrorKind = ErrorKind.AUTH, status: int | None = None):
        super().__init__(message, kind=kind, transient=False, status=status)


class AtHocTLSError(AtHocAuthError):
    """No common TLS version or cipher, an untrusted certificate, or a CA bundle that cannot be loaded."""

    def __init__(self, message: str):
        super().__init__(message, kind=ErrorKind.TLS)


class AtHocProtocolError(AtHocError):
    """An answer this client cannot trust: a failure of the file (retried later), never a silent success."""

    def __init__(self, message: str):
        super().__init__(message, kind=ErrorKind.PROTOCOL, transient=True)
