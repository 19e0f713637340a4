"""How a setting's text becomes a typed value: one small parser object per kind of setting.

A parser's `parse(name, text, env)` gets the setting's stripped text (its default when unset or blank;
None when a required setting is unset) and returns the value, or raises one of three problems that
`shared.settings` turns into a message: `Missing` ("NAME is required"), `NotValid` ("NAME=<value> is not
<expected>", the value hidden for secrets) or `Rejected` (whole messages, for settings spread over
several keys). Simple parsers override only `convert(text)`; its return annotation is the value's type,
which a test checks against the Settings field the value fills.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_TABLE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,30}$")
# The Functions host's names for identity-based connections (`<connection>__<suffix>`).
IDENTITY_SUFFIXES = ("blobServiceUri", "queueServiceUri", "tableServiceUri", "clientId", "credential")
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
_N = TypeVar("_N", int, float)


class Missing(Exception):
    """A required setting is unset or blank."""


class NotValid(Exception):
    """The text is not what the setting needs; `expected` completes "NAME=<value> is not ..."."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


class Rejected(Exception):
    """Problems worded in full (a setting spread over several keys names the key at fault)."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class Parser:
    """The base of every parser: subclasses override `convert` (one key's text) or `parse` (several keys)."""

    def parse(self, name: str, text: str | None, env: Mapping[str, str]) -> object:
        if text is None:
            raise Missing
        return self.convert(text)

    def convert(self, text: str) -> object:
        raise NotImplementedError


class Text(Parser):
    def convert(self, text: str) -> str:
        return text


class Url(Parser):
    def convert(self, text: str) -> str:
        parsed = urlparse(text)
        if parsed.scheme not in ("https", "http") or not parsed.netloc:
            raise NotValid("an http(s) URL")
        return text.rstrip("/")


@dataclass(frozen=True)
class Bounded(Parser):
    """A number within optional inclusive bounds (None: unbounded on that side)."""

    minimum: float | None = None
    maximum: float | None = None

    def _bounded(self, text: str, number: Callable[[str], _N], expected: str) -> _N:
        try:
            value = number(text)
        except ValueError:
            raise NotValid(expected) from None
        if value != value:  # NaN: every comparison with it is false, so the bounds below would let it through
            raise NotValid(expected)
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise NotValid(f"between {self.minimum} and {self.maximum}")
        return value


@dataclass(frozen=True)
class Integer(Bounded):
    def convert(self, text: str) -> int:
        return self._bounded(text, int, "a whole number")


@dataclass(frozen=True)
class Number(Bounded):
    def convert(self, text: str) -> float:
        return self._bounded(text, float, "a number")


class Boolean(Parser):
    def convert(self, text: str) -> bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise NotValid("true or false")


@dataclass(frozen=True)
class Choice(Parser):
    """One of `options`; `upper` accepts any case and yields the upper-case spelling."""

    options: tuple[str, ...]
    upper: bool = False

    def convert(self, text: str) -> str:
        value = text.upper() if self.upper else text
        if value not in self.options:
            raise NotValid("one of " + ", ".join(self.options))
        return value


class ContainerName(Parser):
    def convert(self, text: str) -> str:
        if not CONTAINER_NAME.match(text):
            raise NotValid("a container name (3-63 lowercase letters, digits, single hyphens)")
        return text


class TablePrefix(Parser):
    def convert(self, text: str) -> str:
        if not _TABLE_PREFIX.match(text):
            raise NotValid("a table-name prefix (a letter, then up to 30 letters or digits)")
        return text


class TimeZoneName(Parser):
    def convert(self, text: str) -> str:
        try:
            ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            raise NotValid("an IANA time zone such as Europe/London") from None
        return text


class DatetimeFormat(Parser):
    def convert(self, text: str) -> str:
        if "%" not in text:
            raise NotValid("a strftime format such as %d/%m/%Y %H:%M:%S")
        return text


class OptionalFile(Parser):
    """A path to an existing file, or empty for none."""

    def convert(self, text: str) -> str | None:
        if not text:
            return None
        if not Path(text).is_file():
            raise NotValid("a readable file")
        return text


@dataclass(frozen=True)
class StorageConnection:
    """Either a connection string or the identity-based service URIs, as the Functions host reads them."""

    connection_string: str | None = field(default=None, repr=False)
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    table_service_uri: str | None = None
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None

    def __repr__(self) -> str:  # the connection string may hold an account key
        if self.connection_string is not None:
            return "StorageConnection(connection_string=<hidden>)"
        return f"StorageConnection(blob_service_uri={self.blob_service_uri!r}, client_id={self.client_id!r})"


class StorageConnectionSetting(Parser):
    """A connection string in NAME, or else the identity-based NAME__* settings the Functions host reads."""

    def parse(self, name: str, text: str | None, env: Mapping[str, str]) -> StorageConnection:
        if text:
            if text != DEVELOPMENT_STORAGE and "=" not in text:
                raise NotValid("a storage connection string")
            return StorageConnection(connection_string=text)
        identity = {suffix: env.get(f"{name}__{suffix}", "").strip() for suffix in IDENTITY_SUFFIXES}
        if identity["blobServiceUri"] or identity["tableServiceUri"]:
            problems = [
                f"{name}__{suffix} is required (https://) with identity-based storage"
                for suffix in ("blobServiceUri", "tableServiceUri")
                if not identity[suffix].startswith("https://")
            ]
            if problems:
                raise Rejected(*problems)
            return StorageConnection(
                blob_service_uri=identity["blobServiceUri"].rstrip("/") or None,
                queue_service_uri=identity["queueServiceUri"].rstrip("/") or None,
                table_service_uri=identity["tableServiceUri"].rstrip("/") or None,
                client_id=identity["clientId"] or None,
            )
        raise Rejected(
            f"{name} is required (a connection string, or {name}__blobServiceUri"
            f" and {name}__tableServiceUri for a managed identity)"
        )
