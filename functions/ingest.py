"""ingest_csv (blob trigger) and sweep_incoming (timer): thin adapters over shared.pipeline."""

from __future__ import annotations

import logging
import os

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared.settings import STORAGE_CONNECTION
from shared.settings_table import SPEC_BY_NAME

log = logging.getLogger("functions.ingest")
bp = func.Blueprint()


def _trigger_source() -> func.BlobSource:
    # Read when the worker indexes the app: the binding's source cannot change at run time.
    value = os.environ.get("BOBO_BLOB_TRIGGER_SOURCE", SPEC_BY_NAME["BOBO_BLOB_TRIGGER_SOURCE"].default or "").strip()
    if value == "LogsAndContainerScan":
        return func.BlobSource.LOGS_AND_CONTAINER_SCAN
    if value != "EventGrid":
        # Indexing must not fail ("0 functions loaded"); the settings check names it at the first run.
        log.warning("BOBO_BLOB_TRIGGER_SOURCE=%r is neither EventGrid nor LogsAndContainerScan: using EventGrid", value)
    return func.BlobSource.EVENT_GRID


@bp.function_name("ingest_csv")
@bp.blob_trigger(
    arg_name="client",
    path="%BOBO_INCOMING_CONTAINER%/{name}",
    connection=STORAGE_CONNECTION,
    source=_trigger_source(),
)
def ingest_csv(client: blob.BlobClient) -> None:
    """Record the file, then drain incoming as one batch if this invocation gets the batch lock.

    Never raises for an AtHoc outage: a raise would burn the host's quick retries and poison the blob;
    the failure is recorded and the sweep retries the file.
    """
    from shared.pipeline import ingest_blob
    from shared.runtime import process_runtime

    runtime = process_runtime()
    ingest_blob(runtime, blob_name(client, runtime.settings.incoming_container), trigger="ingest_csv")


def blob_name(trigger_input: object, incoming_container: str) -> str:
    """The blob's name inside incoming.

    The host sends an SDK-type `BlobClient` (its `blob_name`); a classic `func.blob.InputStream` (for a
    caller or a host without the SDK-type binding) names the blob `container/path`. Only the pipeline
    reads the blob, from storage, so either input gives the same run.
    """
    name = getattr(trigger_input, "blob_name", None)
    if isinstance(name, str) and name:
        return name
    full = str(getattr(trigger_input, "name", "") or "")
    return full.removeprefix(f"{incoming_container}/")


@bp.function_name("sweep_incoming")
@bp.timer_trigger(arg_name="timer", schedule="%BOBO_SWEEP_SCHEDULE%", run_on_startup=False, use_monitor=True)
def sweep_incoming(timer: func.TimerRequest) -> None:
    """Drain whatever still waits in incoming: retries, missed or late Event Grid events."""
    from shared.pipeline import drain
    from shared.runtime import process_runtime

    if timer.past_due:
        log.info("sweep_incoming is running late (past due); draining now")
    drain(process_runtime(), trigger="sweep_incoming")
