"""The uploader's local record of what the service confirmed: JSON lines, fsynced, compacted.

Why it exists: once the pipeline has moved a blob out of incoming, the container can no longer say
whether a local file was sent. A file whose (name, size, MD5) is in the journal was confirmed; it is
archived, never sent again. One line per confirmation, appended and fsynced before the file is moved,
so a crash leaves either no line (the file is sent again: the service then answers "already there" or,
if the pipeline took it meanwhile, the sync finds it not newer) or a whole line. A torn last line from a
crash mid-write is skipped. Compaction drops confirmations older than `KEEP` whose file has left the
folder, so the journal stays about one `KEEP` of exports long.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

JOURNAL_NAME = "uploader-journal.jsonl"
# Long enough to recognise a file BOBO writes again with the same name and content (then it is archived,
# not sent twice); short enough that the file stays small (1,440 exports a day, ~200 bytes a line).
KEEP = timedelta(days=3)


@dataclass(frozen=True)
class Confirmation:
    """The service confirmed the file `name` (`size` bytes, `md5` hex) as blob `blob` in incoming."""

    name: str
    size: int
    md5: str
    blob: str
    outcome: str  # "uploaded" or "already_there"
    confirmed_at: str  # ISO 8601, UTC

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.name, self.size, self.md5)


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self._entries: dict[tuple[str, int, str], Confirmation] = {}
        self._lines = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                self._lines += 1
                try:
                    entry = Confirmation(**json.loads(line))
                except (ValueError, TypeError):
                    log.warning("journal %s line %d is unreadable (torn by a crash?); skipped", self.path, number)
                    continue
                self._entries[entry.key] = entry

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, name: str, size: int, md5: str) -> Confirmation | None:
        return self._entries.get((name, size, md5))

    def confirm(self, entry: Confirmation) -> None:
        """Append `entry` and force it to disk before returning: the file may be moved after this."""
        line = json.dumps(asdict(entry), separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())
        self._entries[entry.key] = entry
        self._lines += 1

    def compact(self, names_in_folder: set[str], now: datetime) -> int:
        """Drop confirmations older than KEEP whose file is no longer in the folder; returns how many."""
        cutoff = now - KEEP
        stale = [
            key
            for key, entry in self._entries.items()
            if entry.name not in names_in_folder and datetime.fromisoformat(entry.confirmed_at) < cutoff
        ]
        for key in stale:
            del self._entries[key]
        if stale or self._lines > len(self._entries):
            self._rewrite()
        return len(stale)

    def _rewrite(self) -> None:
        # Write aside, fsync, then replace: a crash leaves the old journal or the new one, never half of one.
        partial = self.path.with_name(self.path.name + ".partial")
        with partial.open("w", encoding="utf-8") as out:
            for entry in self._entries.values():
                out.write(json.dumps(asdict(entry), separators=(",", ":")) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.path)
        _fsync_folder(self.path.parent)
        self._lines = len(self._entries)


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable on POSIX; Windows has no directory handles to fsync (NTFS journals renames)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
