"""One pass over the export folder: settled files into incoming exactly once, then into the archive.

Per file, in this order: read it (it must still be settled), send it unless the journal already holds its
confirmation, record the confirmation (fsynced), move it to the archive. A crash between any two steps
is repaired by the next pass: before the upload, the file is simply sent; after the upload but before the
record, the service answers "already there" (same name, same MD5), or, if the pipeline has taken the
blob meanwhile, it is sent once more and the sync finds it not newer; after the record, it is archived
without being sent.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.uploader.config import UploaderSettings
from shared.uploader.folder import FileBusy, LocalFile, archive, pass_lock, read_settled, scan
from shared.uploader.journal import JOURNAL_NAME, Confirmation, Journal, utc_now_text

if TYPE_CHECKING:
    from shared.uploader.folder import Content
    from shared.uploader.transfer import Sent, Uploader

log = logging.getLogger("shared.uploader")

# After this many files in a row failed even with retries, storage is taken to be down for this pass:
# the other files are counted as failed without being tried, so an outage costs seconds, not minutes.
GIVE_UP_AFTER = 2


@dataclass
class PassReport:
    uploaded: int = 0
    already_there: int = 0
    skipped_unsettled: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False
    would_upload: list[str] = field(default_factory=list)
    refused: str | None = None  # the destination refused the credentials: the command exits non-zero

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "uploaded": self.uploaded,
            "already_there": self.already_there,
            "skipped_unsettled": self.skipped_unsettled,
            "failed": self.failed,
            "errors": list(self.errors),
        }
        if self.dry_run:
            result.update(dry_run=True, would_upload=list(self.would_upload))
        return result

    def summary(self) -> str:
        verb = "would upload" if self.dry_run else "uploaded"
        return (
            f"{verb} {self.uploaded}, already there {self.already_there},"
            f" not settled {self.skipped_unsettled}, failed {self.failed}"
        )


def run_pass(
    settings: UploaderSettings,
    folder: Path,
    archive_folder: Path,
    *,
    dry_run: bool = False,
    connect: Callable[[], Uploader] | None = None,
) -> PassReport:
    """One pass. `connect` builds the uploader on first need (never on a dry run or an empty folder)."""
    report = PassReport(dry_run=dry_run)
    with pass_lock(archive_folder) as held:
        if not held:
            report.errors.append("another uploader pass holds this archive folder; this pass did nothing")
            log.warning(report.errors[-1])
            return report
        journal = Journal(archive_folder / JOURNAL_NAME)
        settled, unsettled = scan(folder, settings.settle_seconds)
        report.skipped_unsettled = len(unsettled)
        if not dry_run:
            journal.compact({f.name for f in settled + unsettled}, datetime.now(UTC))
        _send_all(settled, journal, archive_folder, report, _lazy(connect, settings))
    log.info("pass over %s: %s", folder, report.summary(), extra={"uploader": report.to_json()})
    return report


def _lazy(connect: Callable[[], Uploader] | None, settings: UploaderSettings) -> Callable[[], Uploader]:
    built: list[Uploader] = []

    def get() -> Uploader:
        if not built:
            if connect is not None:
                built.append(connect())
            else:
                from shared.uploader.transfer import Uploader, container_client

                built.append(Uploader(container_client(settings.destination)))
        return built[0]

    return get


class _Step(enum.Enum):
    """How one file's turn ended, as far as the rest of the pass cares."""

    DONE = "done"  # confirmed (now or earlier), skipped, or failed for a reason of its own
    STORAGE_FAILING = "storage_failing"  # failed even with retries: network, throttling, 5xx
    REFUSED = "refused"  # the destination refused the credentials: stop the pass


def _send_all(
    files: list[LocalFile],
    journal: Journal,
    archive_folder: Path,
    report: PassReport,
    uploader: Callable[[], Uploader],
) -> None:
    failed_in_a_row = 0
    for index, local in enumerate(files):
        step = _one_file(local, journal, archive_folder, report, uploader)
        left = len(files) - index - 1
        if step is _Step.REFUSED:
            report.failed += left  # not tried: they stay for the next pass
            return
        failed_in_a_row = failed_in_a_row + 1 if step is _Step.STORAGE_FAILING else 0
        if failed_in_a_row >= GIVE_UP_AFTER and left:
            report.failed += left
            report.errors.append(f"storage is failing: {left} more files left for the next pass untried")
            log.warning(report.errors[-1])
            return


def _one_file(
    local: LocalFile, journal: Journal, archive_folder: Path, report: PassReport, uploader: Callable[[], Uploader]
) -> _Step:
    from shared.uploader.transfer import DestinationRefused, FileRefused, Outcome, TransientFailure

    try:
        content = read_settled(local)
    except FileBusy as busy:
        report.skipped_unsettled += 1
        log.info("%s; left for the next pass", busy)
        return _Step.DONE
    except OSError as error:
        _failed(report, f"{local.name}: cannot read it ({error.strerror or error.__class__.__name__})")
        return _Step.DONE
    known = journal.find(local.name, local.size, content.md5)
    if report.dry_run:
        if known is None:
            report.uploaded += 1
            report.would_upload.append(local.name)
        return _Step.DONE
    if known is not None:
        report.already_there += 1
        log.info("%s: confirmed as blob %s at %s; archived, not sent again", local.name, known.blob,
                 known.confirmed_at)  # fmt: skip
        _archive(local, archive_folder, report)
        return _Step.DONE
    try:
        sent = send_file(uploader(), local, content)
    except DestinationRefused as refused:
        report.refused = str(refused)
        _failed(report, f"{local.name}: {refused}")
        return _Step.REFUSED
    except TransientFailure as failure:
        _failed(report, f"{local.name}: {failure}")
        return _Step.STORAGE_FAILING
    except FileRefused as refused:
        _failed(report, f"{local.name}: {refused}")
        return _Step.DONE
    journal.confirm(Confirmation(local.name, local.size, content.md5, sent.blob, sent.outcome.value, utc_now_text()))
    if sent.outcome is Outcome.UPLOADED:
        report.uploaded += 1
    else:
        report.already_there += 1
    log.info("%s: %s as blob %s (%d bytes, MD5 %s)", local.name, sent.outcome.value, sent.blob, local.size,
             content.md5)  # fmt: skip
    _archive(local, archive_folder, report)
    return _Step.DONE


def send_file(uploader: Uploader, local: LocalFile, content: Content) -> Sent:
    """Send one file (a named step: the crash tests stop the process right before or after it)."""
    return uploader.send(local.name, content, datetime.now(UTC))


def _archive(local: LocalFile, archive_folder: Path, report: PassReport) -> None:
    try:
        target = archive(local.path, archive_folder, datetime.now(UTC))
    except OSError as error:
        # Confirmed and recorded: the next pass archives it without sending it again.
        report.errors.append(f"{local.name}: sent, but not archived yet ({error.strerror or error})")
        log.warning(report.errors[-1])
        return
    if target.name != local.name:
        log.info("%s archived as %s (the name was taken)", local.name, target.name)


def _failed(report: PassReport, message: str) -> None:
    report.failed += 1
    report.errors.append(message)
    log.warning(message)
