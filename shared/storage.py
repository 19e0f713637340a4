"""Blob Storage: service clients, the four containers, the batcher's lease lock and safe moves.

Only this module and `state.py` know the Azure Storage SDKs. Clients are created lazily, once per
process and connection, so importing the function app never touches the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlparse

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline import PipelineRequest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobClient, BlobLeaseClient, BlobServiceClient, ContainerClient, ExponentialRetry

from shared.blob_names import destination_names
from shared.settings import Settings, StorageConnection

log = logging.getLogger(__name__)

# The batch lock is a lease on the incoming container itself: no lock blob appears in any container
# (processed holds only processed files), and a container lease blocks nothing but deleting the container.
DOWNLOAD_CHUNK = 4 * 1024 * 1024
METADATA_VALUE_LIMIT = 1024
# How often a caller waiting for the batch lock asks again.
LOCK_POLL_SECONDS = 0.5


class StorageUnavailable(RuntimeError):
    """Storage could not be reached or refused the credentials; the message names the cause, never a key."""


# Storage requests of this process by kind ("blob GET", "table POST $batch", ...): benchmarks and logs
# report them; counting costs a dict increment per request.
REQUEST_COUNTS: Counter[str] = Counter()
_counts_lock = threading.Lock()


def _counter(service: str):  # type: ignore[no-untyped-def]
    """A raw_request_hook (both SDKs call it once per request, retries included)."""

    def count(request: PipelineRequest) -> None:  # type: ignore[type-arg]
        http = request.http_request
        url = urlparse(http.url)
        comp = parse_qs(url.query).get("comp", [""])[0]
        kind = (
            f"{service} {http.method}"
            + (f" {comp}" if comp else "")
            + (" $batch" if url.path.endswith("$batch") else "")
        )
        with _counts_lock:
            REQUEST_COUNTS[kind] += 1

    return count


@lru_cache(maxsize=8)
def _clients(connection: StorageConnection) -> tuple[BlobServiceClient, TableServiceClient]:
    # The SDKs' default retries wait minutes before giving up on an unreachable account (15 s, 18 s, 24 s...);
    # a few quick retries ride out a blip and let a command or a timer tick fail fast with the cause.
    blob_policy = {
        "raw_request_hook": _counter("blob"),
        # The SDK annotates initial_backoff as int but computes with floats: half a second is what we mean.
        "retry_policy": ExponentialRetry(initial_backoff=0.5, increment_base=2, retry_total=3),  # type: ignore[arg-type]
    }
    table_policy = {
        "raw_request_hook": _counter("table"),
        "retry_total": 3,
        "retry_backoff_factor": 0.5,
        "retry_backoff_max": 8,
    }
    if connection.connection_string is not None:
        return (
            BlobServiceClient.from_connection_string(connection.connection_string, **blob_policy),
            TableServiceClient.from_connection_string(connection.connection_string, **table_policy),
        )
    # Identity-based settings, read the way the Functions host reads BOBO_STORAGE__*.
    from azure.identity import ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=connection.client_id)
    assert connection.blob_service_uri and connection.table_service_uri  # validated by Settings
    return (
        BlobServiceClient(connection.blob_service_uri, credential=credential, **blob_policy),
        TableServiceClient(connection.table_service_uri, credential=credential, **table_policy),
    )


def blob_service(settings: Settings) -> BlobServiceClient:
    return _clients(settings.storage)[0]


def table_service(settings: Settings) -> TableServiceClient:
    return _clients(settings.storage)[1]


@dataclass(frozen=True)
class IncomingBlob:
    name: str
    etag: str
    size: int
    last_modified: datetime

    @property
    def order(self) -> tuple[datetime, str]:
        """File order within a batch: last-modified time, then name (docs/design.md#latest-wins)."""
        return (self.last_modified, self.name)


@dataclass(frozen=True)
class MoveResult:
    destination_container: str
    destination_name: str
    source_deleted: bool
    already_there: bool = False


class Storage:
    """The BOBO containers of one storage account."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.service = blob_service(settings)

    def container(self, name: str) -> ContainerClient:
        return self.service.get_container_client(name)

    @property
    def incoming(self) -> ContainerClient:
        return self.container(self.settings.incoming_container)

    def ensure_containers(self) -> list[str]:
        """Create any missing container; returns the names created."""
        created = []
        for name in self.settings.containers:
            try:
                self.container(name).create_container()
                created.append(name)
            except ResourceExistsError:
                pass
            except HttpResponseError as error:
                raise StorageUnavailable(f"cannot create container {name}: {_reason(error)}") from None
        return created

    def list_incoming(self, limit: int | None = None) -> list[IncomingBlob]:
        """Files waiting, oldest first (file order, docs/design.md#latest-wins); paged by the SDK, 5,000 a page."""
        blobs = [IncomingBlob(b.name, b.etag, b.size, b.last_modified) for b in self.incoming.list_blobs()]
        blobs.sort(key=lambda blob: blob.order)
        return blobs[:limit] if limit is not None else blobs

    def get_incoming(self, name: str) -> IncomingBlob | None:
        try:
            props = self.incoming.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return IncomingBlob(name, props.etag, props.size, props.last_modified)

    def read_chunks(self, container: str, name: str, etag: str | None = None) -> Iterator[bytes]:
        """Stream a blob in chunks; with `etag`, fail with ResourceModifiedError if it changed since listing."""
        blob = self.container(container).get_blob_client(name)
        downloader = blob.download_blob(etag=etag, match_condition=_unchanged_since_listing(etag))
        yield from downloader.chunks()

    def read_bytes(self, container: str, name: str, etag: str | None = None) -> bytes:
        """A small blob in one request; with `etag`, ResourceModifiedError if it changed since listing."""
        blob = self.container(container).get_blob_client(name)
        return blob.download_blob(etag=etag, match_condition=_unchanged_since_listing(etag)).readall()

    def write_blob(self, container: str, name: str, data: bytes, *, overwrite: bool = True) -> None:
        self.container(container).upload_blob(name, data, overwrite=overwrite)

    def move(
        self,
        blob: IncomingBlob,
        destination: str,
        metadata: dict[str, object],
        *,
        now: datetime | None = None,
        content: bytes | None = None,
        source_container: str | None = None,
        preferred_name: str | None = None,
        before_delete: Callable[[str], None] | None = None,
    ) -> MoveResult:
        """Copy `blob` from its container (default: incoming) to `destination`, check the copy, delete the source.

        Never overwrites: an existing name gets a `-YYYYMMDDTHHMMSSZ` suffix, unless the existing blob is a
        copy of this very source (same source ETag in its metadata: a move interrupted after the copy), in
        which case only the delete is left to do. The source is deleted only if its ETag is still the one
        processed; if the exporter replaced it meanwhile, the new version stays where it is.
        `content`, when the caller already holds the blob's bytes (small files), saves a second download;
        `preferred_name` names the copy (default: the source's name). `before_delete(copy_name)` runs once the
        copy is complete and before the source goes (the rejects report is written there, named after the
        copy), so a crash in between repeats it on the next run.
        """
        source_container = source_container or self.settings.incoming_container
        source = self.container(source_container).get_blob_client(blob.name)
        target_container = self.container(destination)
        meta = {key: _metadata_value(value) for key, value in metadata.items()}
        meta["source_etag"] = _metadata_value(blob.etag)
        already = False
        for candidate in destination_names(preferred_name or blob.name, now or datetime.now(UTC)):
            target = target_container.get_blob_client(candidate)
            try:
                self._copy(source, target, blob, meta, content)
                break
            except ResourceExistsError:
                existing = _properties_or_none(target)
                copied_before = existing is not None and existing.metadata.get("source_etag") == meta["source_etag"]
                if copied_before and existing.size == blob.size:
                    already = True
                    break
        else:
            raise StorageUnavailable(f"no free destination name for {blob.name} in {destination}")
        if before_delete is not None:
            before_delete(candidate)
        deleted = self.delete_if_unchanged(blob, source_container)
        return MoveResult(destination, candidate, deleted, already)

    def _copy(
        self,
        source: BlobClient,
        target: BlobClient,
        blob: IncomingBlob,
        metadata: dict[str, str],
        content: bytes | None,
    ) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        if content is not None:
            digest.update(content)
            data: bytes | Iterator[bytes] = content
        else:
            downloader = source.download_blob(etag=blob.etag, match_condition=MatchConditions.IfNotModified)

            def stream() -> Iterator[bytes]:
                for chunk in downloader.chunks():
                    digest.update(chunk)
                    yield chunk

            data = stream()
        # overwrite=False sends If-None-Match: *, so a concurrent writer of the same name is never clobbered.
        response = target.upload_blob(data, length=blob.size, overwrite=False, metadata=metadata)
        # A single Put Blob answers the MD5 of what the service stored: proof of a complete copy at no cost.
        stored_md5 = response.get("content_md5")
        if stored_md5 is not None and bytes(stored_md5) == digest.digest():
            return
        copied = target.get_blob_properties()
        if copied.size != blob.size:
            target.delete_blob()
            raise StorageUnavailable(f"copy of {blob.name} is incomplete ({copied.size} of {blob.size} bytes)")

    def delete_if_unchanged(self, blob: IncomingBlob, container: str | None = None) -> bool:
        """Delete `blob` (default container: incoming) only if its ETag is still `blob.etag`."""
        name = container or self.settings.incoming_container
        try:
            self.container(name).delete_blob(blob.name, etag=blob.etag, match_condition=MatchConditions.IfNotModified)
            return True
        except ResourceModifiedError:
            log.warning("file %s changed while it was moved; the new version stays in %s", blob.name, name)
            return False
        except ResourceNotFoundError:
            return True

    def batch_lock(self) -> BatchLock:
        return BatchLock(self.incoming, self.settings.lock_lease_seconds)


class BatchLock:
    """A container lease held by one batcher at a time, across processes and instances, renewed while held.

    `acquire()` returns False at once when another batcher holds it. A renewal thread keeps the lease;
    if renewal fails (storage outage, lease stolen after expiry), `lost` turns true and the holder stops
    before its next step.
    """

    def __init__(self, container: ContainerClient, lease_seconds: int = 60):
        self.container = container
        self.lease_seconds = lease_seconds
        self.lease: BlobLeaseClient | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire_within(self, seconds: float) -> bool:
        """Wait up to `seconds` for the lock (0: one try); False when another batcher still holds it."""
        give_up = time.monotonic() + seconds
        while not self.acquire():
            if time.monotonic() >= give_up:
                return False
            time.sleep(LOCK_POLL_SECONDS)
        return True

    def acquire(self) -> bool:
        try:
            self.lease = self.container.acquire_lease(lease_duration=self.lease_seconds)
        except HttpResponseError as error:
            if getattr(error, "status_code", None) == 409:
                return False
            raise
        self.lost.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name="batch-lock-renewal", daemon=True)
        self._thread.start()
        return True

    def _renew(self) -> None:
        renewed_at = time.monotonic()
        lease = self.lease
        assert lease is not None, "renewal starts only after the lease was taken"
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                lease.renew()
                renewed_at = time.monotonic()
            except HttpResponseError:
                # The service refused: the lease expired and someone else may hold it now.
                log.warning("batch lock lost (renewal refused); this batcher stops before its next step")
                self.lost.set()
                return
            except AzureError:
                # Storage unreachable: keep trying while the lease may still be ours, then give it up.
                if time.monotonic() - renewed_at >= self.lease_seconds * 0.75:
                    log.warning("batch lock lost (storage unreachable); this batcher stops before its next step")
                    self.lost.set()
                    return

    def confirm(self) -> bool:
        """Renew the lease now: True only if this batcher certainly still holds it.

        Called right before AtHoc is told, so a holder whose lease lapsed unnoticed (a long pause, or
        Azurite forgetting leases when it restarts) never sends alongside the batcher that took over.
        """
        if self.lost.is_set() or self.lease is None:
            return False
        try:
            self.lease.renew()
            return True
        except HttpResponseError:
            log.warning("batch lock lost (renewal refused); this batcher sends nothing")
            self.lost.set()
            return False
        except AzureError:
            return False  # cannot tell: do not send; the files wait for the next run

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lease is not None:
            with contextlib.suppress(HttpResponseError):
                self.lease.release()
        self.lease = None

    def __enter__(self) -> BatchLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _unchanged_since_listing(etag: str | None) -> MatchConditions | None:
    return MatchConditions.IfNotModified if etag else None


def _properties_or_none(blob: BlobClient):  # type: ignore[no-untyped-def]
    try:
        return blob.get_blob_properties()
    except ResourceNotFoundError:
        return None


def _metadata_value(value: object) -> str:
    """Blob metadata values must be ASCII and small; keep the gist of long or non-ASCII error texts."""
    text = str(value).encode("ascii", "backslashreplace").decode("ascii")
    text = " ".join(text.split())
    return text[:METADATA_VALUE_LIMIT]


def _reason(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None) or getattr(error, "status_code", None) or "error"
    return f"{code}"


# The SDKs' default retries take over a minute to give up on an unreachable account; a probe without
# retries lets `status` and `check` name the cause at once (a blip: ask again).
PROBE_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 15}


def probe_storage(settings: Settings) -> tuple[str, str]:
    """One cheap request to each of the blob and table services; raises their error. Returns both URLs."""
    blobs, tables = blob_service(settings), table_service(settings)
    next(iter(blobs.list_containers(results_per_page=1, **PROBE_OPTIONS).by_page()), None)
    next(iter(tables.list_tables(results_per_page=1, **PROBE_OPTIONS).by_page()), None)
    return blobs.url, tables.url
