"""The uploader's settings, read from the environment and validated in one place (docs/uploader.md).

Standard library only: a bad setting is reported before any Azure package is imported. Every problem is
collected and reported at once; a secret's value (a SAS token, an account key) is never echoed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast
from urllib.parse import parse_qs, urlsplit

from shared.settings_parsers import CONTAINER_NAME, Rejected
from shared.settings_table import SPEC_BY_NAME, STORAGE_CONNECTION

# Declared once, in shared/settings_table.py (scope "uploader", or the app settings the uploader shares).
UPLOAD_URL = "BOBO_UPLOAD_URL"
SETTLE_SECONDS = "BOBO_UPLOAD_SETTLE_SECONDS"
INTERVAL_SECONDS = "BOBO_UPLOAD_INTERVAL_SECONDS"
INCOMING_CONTAINER = "BOBO_INCOMING_CONTAINER"
LOG_LEVEL = "LOG_LEVEL"


class UploaderSettingsError(ValueError):
    """One or more settings are missing or malformed; the message names each of them, never a secret."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid settings: " + "; ".join(problems))


class Auth(StrEnum):
    """How the uploader proves who it is to the storage account."""

    SAS = "sas"  # the token in BOBO_UPLOAD_URL's query
    ENTRA_ID = "entra-id"  # azure-identity's default chain: service principal, managed identity, Azure CLI
    CONNECTION_STRING = "connection-string"  # BOBO_STORAGE as the function app uses it


@dataclass(frozen=True)
class Destination:
    """The incoming container and how to reach it. `shown` is safe to print; `secrets` must never be."""

    auth: Auth
    container: str
    shown: str
    container_url: str | None = field(default=None, repr=False)  # the full URL, SAS included
    account_url: str | None = None
    connection_string: str | None = field(default=None, repr=False)
    client_id: str | None = None  # user-assigned managed identity, from BOBO_STORAGE__clientId
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class UploaderSettings:
    destination: Destination
    settle_seconds: float
    interval_seconds: float
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> UploaderSettings:
        """Raises UploaderSettingsError naming every problem."""
        problems: list[str] = []
        destination = _destination(env, problems)
        settings = cls(
            destination=destination,
            settle_seconds=cast(float, _read(env, SETTLE_SECONDS, problems)),  # the row's parser is a Number
            interval_seconds=cast(float, _read(env, INTERVAL_SECONDS, problems)),
            log_level=str(_read(env, LOG_LEVEL, problems)),
        )
        if problems:
            raise UploaderSettingsError(problems)
        return settings


def _value(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def _read(env: Mapping[str, str], name: str, problems: list[str]) -> object:
    """The setting as its row in the settings table parses it; its default (and the problem noted) if bad."""
    spec = SPEC_BY_NAME[name]
    try:
        return spec.read(env)
    except Rejected as rejected:
        problems.append(str(rejected))
        return spec.parser.parse(name, spec.default or "", {})


def _destination(env: Mapping[str, str], problems: list[str]) -> Destination:
    if _value(env, UPLOAD_URL):
        return _from_url(_value(env, UPLOAD_URL), problems)
    container = str(_read(env, INCOMING_CONTAINER, problems))
    connection_string = _value(env, STORAGE_CONNECTION)
    if connection_string:
        if connection_string != "UseDevelopmentStorage=true" and "=" not in connection_string:
            problems.append(f"{STORAGE_CONNECTION}=<hidden> is not a storage connection string")
        return Destination(
            Auth.CONNECTION_STRING,
            container,
            shown=f"{STORAGE_CONNECTION} (connection string), container {container}",
            connection_string=connection_string,
            secrets=(connection_string, *_connection_string_secrets(connection_string)),
        )
    # Identity-based, read as the Functions host reads BOBO_STORAGE__*: the uploader needs the blob URI only.
    blob_uri = _value(env, f"{STORAGE_CONNECTION}__blobServiceUri").rstrip("/")
    if blob_uri:
        if not blob_uri.startswith("https://"):
            problems.append(f"{STORAGE_CONNECTION}__blobServiceUri={blob_uri!r} is not an https:// URL")
        return Destination(
            Auth.ENTRA_ID,
            container,
            shown=f"{blob_uri}/{container} (Entra ID)",
            account_url=blob_uri,
            client_id=_value(env, f"{STORAGE_CONNECTION}__clientId") or None,
        )
    problems.append(
        f"{UPLOAD_URL} is required (the incoming container's URL, with or without a SAS token),"
        f" or else {STORAGE_CONNECTION} (a connection string, or {STORAGE_CONNECTION}__blobServiceUri)"
    )
    return Destination(Auth.CONNECTION_STRING, container, shown="(none)")


def _from_url(url: str, problems: list[str]) -> Destination:
    parts = urlsplit(url)
    safe = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
    container = _container_of(parts.netloc, parts.path)
    if parts.scheme not in ("https", "http") or not parts.hostname or container is None:
        problems.append(f"{UPLOAD_URL}={safe!r} is not a container URL (https://ACCOUNT.blob.core.windows.net/NAME)")
        container = container or ""
    elif parts.scheme == "http" and not _is_loopback(parts.hostname):
        problems.append(f"{UPLOAD_URL}={safe!r}: http:// is accepted for a local emulator only; use https://")
    query = parse_qs(parts.query)
    if "sig" in query:
        return Destination(
            Auth.SAS,
            container,
            shown=f"{safe} (SAS)",
            container_url=url.rstrip("/"),
            secrets=(parts.query, *query["sig"]),
        )
    if parts.query:
        problems.append(f"{UPLOAD_URL} has a query but no SAS signature (sig=); give a whole SAS token or none")
    return Destination(Auth.ENTRA_ID, container, shown=f"{safe} (Entra ID)", container_url=safe)


def _container_of(host: str, path: str) -> str | None:
    """The container in a container URL; an emulator's URL carries the account first (`/ACCOUNT/NAME`)."""
    segments = [s for s in path.split("/") if s]
    hostname = host.rsplit("@", 1)[-1].split(":", 1)[0]
    wanted = 2 if _is_loopback(hostname) else 1
    if len(segments) != wanted or not CONTAINER_NAME.match(segments[-1]):
        return None
    return segments[-1]


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _connection_string_secrets(connection_string: str) -> list[str]:
    """Values of the parts of a connection string that are secret, so they can be redacted one by one."""
    secret_keys = {"accountkey", "sharedaccesssignature"}
    values = []
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() in secret_keys and value.strip():
            values.append(value.strip())
    return values
