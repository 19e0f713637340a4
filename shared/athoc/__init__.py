"""The one package that talks HTTP to AtHoc: token, bulk duty updates, user paging, retries.

Modules: client (AtHocClient), rows (what a SyncByCommonNames row means), paging (users/search/basic
paging), token, calls (retries), transport (TLS, proxies, one HTTP attempt), redaction, retry, users
(reading user rows), errors.
"""

from shared.athoc.client import AtHocClient, AttributeCheck, ConnectionInfo
from shared.athoc.errors import AtHocAuthError, AtHocError, AtHocProtocolError, AtHocTLSError
from shared.athoc.rows import RowResult, RowStatus, SyncReport, classify_row
from shared.athoc.users import LOGIN_FIELD, JsonObject, field_value

__all__ = [
    "LOGIN_FIELD",
    "AtHocAuthError",
    "AtHocClient",
    "AtHocError",
    "AtHocProtocolError",
    "AtHocTLSError",
    "AttributeCheck",
    "ConnectionInfo",
    "JsonObject",
    "RowResult",
    "RowStatus",
    "SyncReport",
    "classify_row",
    "field_value",
]
