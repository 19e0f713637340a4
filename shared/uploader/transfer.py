"""Putting one file into the incoming container exactly once: no overwrite, MD5 checked, errors as types.

The only module of the uploader that imports the Azure SDK (azure-storage-blob, and azure-identity when a
URL comes without a SAS): the command can show its help and report bad settings without them.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, ContainerClient, ContentSettings, ExponentialRetry

from shared.blob_names import destination_names
from shared.uploader.config import Auth, Destination
from shared.uploader.folder import Content

log = logging.getLogger(__name__)

# Backoff within a pass, per request: up to 3 retries of a network error, 408, 429 or 5xx after waits of
# about 0.3, 1.9 and 2.9 s (the SDK's ExponentialRetry: initial + base**n, +-0.2 s jitter). A file that
# still fails waits for the next pass; the pass itself stops trying after `passes.GIVE_UP_AFTER` such files.
RETRY: dict[str, Any] = {"initial_backoff": 0.3, "increment_base": 1.6, "retry_total": 3, "random_jitter_range": 0.2}
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60
SINGLE_PUT_LIMIT = 64 * 2**20  # up to this size one Put Blob carries the file, and its reply the stored MD5


class Outcome(enum.StrEnum):
    UPLOADED = "uploaded"
    ALREADY_THERE = "already_there"  # a blob of that name with the same MD5 was there


@dataclass(frozen=True)
class Sent:
    blob: str
    outcome: Outcome


class UploadError(Exception):
    """A file could not be put into incoming; the message is one line, redacted by the caller."""


class DestinationRefused(UploadError):
    """401/403, no usable Entra ID credential, or a missing container that cannot be created: stop the pass."""


class TransientFailure(UploadError):
    """Network, timeout, throttling or 5xx after the retries: the file stays for the next pass."""


class FileRefused(UploadError):
    """The service refused this file as it is (another 4xx): the file stays, the others go on."""


def container_client(destination: Destination) -> ContainerClient:
    options: dict[str, Any] = {
        "retry_policy": ExponentialRetry(**RETRY, retry_to_secondary=False),
        "connection_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "max_single_put_size": SINGLE_PUT_LIMIT,
    }
    if destination.auth is Auth.SAS:
        assert destination.container_url is not None  # validated by config
        return ContainerClient.from_container_url(destination.container_url, **options)
    if destination.auth is Auth.CONNECTION_STRING:
        assert destination.connection_string is not None
        return ContainerClient.from_connection_string(destination.connection_string, destination.container, **options)
    from azure.identity import DefaultAzureCredential

    # Service principal (AZURE_CLIENT_ID + AZURE_TENANT_ID + AZURE_CLIENT_CERTIFICATE_PATH), managed identity
    # (Azure Arc included), then the Azure CLI; never an interactive browser on a server.
    credential = DefaultAzureCredential(managed_identity_client_id=destination.client_id)
    if destination.container_url is not None:
        return ContainerClient.from_container_url(destination.container_url, credential=credential, **options)
    assert destination.account_url is not None
    return ContainerClient(destination.account_url, destination.container, credential=credential, **options)


class Uploader:
    """Sends files to one container; creates the container once if it is missing and the credential may."""

    def __init__(self, container: ContainerClient):
        self.container = container
        self._created_container = False

    def send(self, name: str, content: Content, now: datetime) -> Sent:
        try:
            return self._send(name, content, now)
        except ResourceNotFoundError as error:
            if getattr(error, "error_code", None) != "ContainerNotFound" or self._created_container:
                raise _classified(error) from None
        self._create_container()
        return self.send(name, content, now)

    def _create_container(self) -> None:
        self._created_container = True
        try:
            self.container.create_container()
            log.info("created the missing container %s", self.container.container_name)
        except ResourceExistsError:
            pass
        except AzureError as error:
            cause = _classified(error)
            if isinstance(cause, DestinationRefused):
                raise DestinationRefused(
                    f"container {self.container.container_name} does not exist and these credentials cannot create it"
                ) from None
            raise cause from None

    def _send(self, name: str, content: Content, now: datetime) -> Sent:
        """Put `content` under `name`, or the first free suffixed name; never overwrite a blob."""
        md5 = bytes.fromhex(content.md5)
        try:
            for candidate in destination_names(name, now):
                blob = self.container.get_blob_client(candidate)
                try:
                    # overwrite=False sends If-None-Match: *; validate_content adds the request's Content-MD5,
                    # which the service checks on arrival; the blob keeps the file's MD5 as its Content-MD5.
                    reply = blob.upload_blob(
                        content.data,
                        overwrite=False,
                        validate_content=True,
                        content_settings=ContentSettings(content_type="text/csv", content_md5=bytearray(md5)),
                    )
                except ResourceExistsError:
                    if _holds(blob, content):
                        return Sent(candidate, Outcome.ALREADY_THERE)
                    continue
                _verify(blob, reply, content)
                return Sent(candidate, Outcome.UPLOADED)
        except ResourceNotFoundError:
            raise  # handled by `send` (a missing container)
        except AzureError as error:
            raise _classified(error) from None
        raise FileRefused(f"no free blob name for {name}: 100 suffixed names are taken")


def _holds(blob: BlobClient, content: Content) -> bool:
    """Does the existing `blob` hold exactly `content`? By Content-MD5, or by hashing it when it has none."""
    properties = blob.get_blob_properties()
    if properties.size != len(content.data):
        return False
    stored = properties.content_settings.content_md5
    if stored:
        return bytes(stored).hex() == content.md5
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in blob.download_blob().chunks():
        digest.update(chunk)
    return digest.hexdigest() == content.md5


def _verify(blob: BlobClient, reply: dict, content: Content) -> None:  # type: ignore[type-arg]
    """The service's MD5 of what it stored must be the file's; else the blob is removed and the file retried."""
    stored = reply.get("content_md5")
    if stored is None:  # a multi-block upload answers no whole-blob MD5: compare size and the stored property
        properties = blob.get_blob_properties()
        stored = properties.content_settings.content_md5 if properties.size == len(content.data) else None
    if stored is not None and bytes(stored).hex() == content.md5:
        return
    blob.delete_blob(etag=reply.get("etag"), match_condition=MatchConditions.IfNotModified)
    shown = base64.b64encode(bytes(stored)).decode() if stored else "none"
    raise TransientFailure(f"the service's MD5 of {blob.blob_name} ({shown}) is not the file's; removed it")


def _classified(error: AzureError) -> UploadError:
    """The one place that maps the SDK's exceptions to what the pass does next."""
    status = getattr(error, "status_code", None)
    code = getattr(error, "error_code", None)
    first_line = (str(error.message) if error.message else error.__class__.__name__).splitlines()[0][:300]
    if isinstance(error, ClientAuthenticationError) or status in (401, 403):
        return DestinationRefused(
            f"storage refused the credentials ({code or status or 'no credential'}): {first_line}"
        )
    if isinstance(error, HttpResponseError) and status is not None and status < 500 and status not in (408, 429):
        return FileRefused(f"storage refused the file ({code or status}): {first_line}")
    return TransientFailure(
        f"storage unreachable or failing ({code or status or error.__class__.__name__}): {first_line}"
    )
