"""`python -m shared.uploader --folder DIR [--archive DIR] [--once | --watch] [--dry-run] [--json]`

Moves BOBO's exports from a local folder into the incoming container, each file exactly once
(docs/uploader.md). Settings come from the environment only (the BOBO server has no local.settings.json).
Exit 0 when the pass ran, files that failed to upload included (they stay for the next pass); 2 for a
missing folder or bad settings; 3 when the destination refuses the credentials; 1 for anything else.
The last stderr line of a non-zero exit names the cause, without a traceback or a secret.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import signal
import sys
import threading
from pathlib import Path

from shared.uploader.config import UploaderSettings, UploaderSettingsError
from shared.uploader.redaction import RedactingFormatter, Redactor

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SETTINGS = 2
EXIT_REFUSED = 3

LOG_NAME = "uploader.log"
LOG_BYTES = 1024 * 1024
LOG_BACKUPS = 5

log = logging.getLogger("shared.uploader")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.uploader",
        description="Upload BOBO's CSV exports from a local folder into the incoming container, each exactly once.",
    )
    parser.add_argument("--folder", required=True, type=Path, help="the folder BOBO writes its exports into")
    parser.add_argument("--archive", type=Path, help="where uploaded files go (default FOLDER/uploaded)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one pass, then exit (the default)")
    mode.add_argument("--watch", action="store_true", help="a pass every BOBO_UPLOAD_INTERVAL_SECONDS until stopped")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded; send and move nothing")
    parser.add_argument("--json", action="store_true", help="end stdout with one JSON object per pass")
    return parser


class Stop(Exception):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        # A Windows console's code page cannot show every file name; a name must never crash the pass.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    redact = Redactor()
    try:
        folder, archive_folder = _folders(args.folder, args.archive)
        try:
            settings = UploaderSettings.from_env(os.environ)
        except UploaderSettingsError as error:
            _setup_logging(archive_folder, redact, "INFO")
            raise Stop(str(error), EXIT_SETTINGS) from None
        redact = Redactor(settings.destination.secrets)
        _setup_logging(archive_folder, redact, settings.log_level)
        log.info("uploader started: %s -> %s, archive %s", folder, settings.destination.shown, archive_folder)
        return _run(settings, folder, archive_folder, args, redact)
    except Stop as stop:
        log.error("%s", stop)
        print(redact(str(stop)), file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as error:  # one line for the operator, the traceback (redacted) in the log file
        log.exception("uploader failed")
        print(redact(f"uploader failed: {error.__class__.__name__}: {error}").splitlines()[0], file=sys.stderr)
        return EXIT_FAILED


def _folders(folder: Path, archive: Path | None) -> tuple[Path, Path]:
    if not folder.is_dir():
        raise Stop(f"--folder {folder} is not a folder", EXIT_SETTINGS)
    archive_folder = archive if archive is not None else folder / "uploaded"
    if archive_folder.resolve() == folder.resolve():
        raise Stop("--archive must be another folder than --folder (archived files would be sent again)", EXIT_SETTINGS)
    try:
        archive_folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Stop(f"--archive {archive_folder} cannot be created ({error.strerror})", EXIT_SETTINGS) from None
    return folder.resolve(), archive_folder.resolve()


def _run(
    settings: UploaderSettings, folder: Path, archive_folder: Path, args: argparse.Namespace, redact: Redactor
) -> int:
    from shared.uploader.passes import run_pass

    stop = threading.Event()
    if args.watch:
        # A service stop or Ctrl+C ends the wait between passes; a pass cut short is repaired by the next one.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while True:
        report = run_pass(settings, folder, archive_folder, dry_run=args.dry_run)
        for name in report.would_upload:
            print(f"would upload {name}")
        for line in report.errors:
            print(redact(line), file=sys.stderr)
        if args.json:
            print(redact(json.dumps(report.to_json())), flush=True)
        else:
            print(report.summary(), flush=True)
        if report.refused is not None:
            raise Stop(report.refused, EXIT_REFUSED)
        if not args.watch or stop.wait(settings.interval_seconds):
            return EXIT_OK


def _setup_logging(archive_folder: Path, redact: Redactor, level: str) -> None:
    """A rotating log file in the archive folder (the BOBO server has no portal); stdout and stderr carry
    only the pass summaries and errors that `_run` prints, so nothing appears twice."""
    formatter = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", redact)
    file_handler = logging.handlers.RotatingFileHandler(
        archive_folder / LOG_NAME, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    file_handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(file_handler)
    root.setLevel(level)
    # The SDK's HTTP logging repeats every request and header at INFO; its warnings are enough here.
    logging.getLogger("azure").setLevel(logging.WARNING)
