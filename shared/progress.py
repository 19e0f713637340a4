"""A terminal progress line for long commands (paging users, draining a backlog, moving many files).

Silent unless stderr is a terminal and the command is not printing JSON, so logs, pipes and `--json`
output never see carriage returns.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

_quiet_override: bool | None = None


def set_quiet(quiet: bool | None) -> None:
    """The CLI calls this with True under --json; None returns to detection (TTY and argv)."""
    global _quiet_override
    _quiet_override = quiet


@dataclass
class Progress:
    """`update(done, total)` redraws one status line on stderr, at most 10 times a second; `close()` erases it.

    Silent (every call a no-op) unless stderr is a terminal and the command is not printing JSON, so logs,
    pipes and `--json` output never see carriage returns.
    """

    label: str
    enabled: bool
    stream: TextIO
    interval: float = 0.1
    _last: float = field(default=0.0, init=False)
    _shown: bool = field(default=False, init=False)

    def __call__(self, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval and (total is None or done < total):
            return
        self._last = now
        text = f"{self.label}: {done}" + (f" of {total}" if total else "")
        self.stream.write(f"\r{text}\033[K")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(label: str, *, stream: TextIO | None = None, quiet: bool | None = None) -> Progress:
    """A progress line for a long operation (paging users, draining a backlog, moving many files)."""
    stream = stream or sys.stderr
    if quiet is None:
        quiet = _quiet_override if _quiet_override is not None else "--json" in sys.argv[1:]
    enabled = not quiet and bool(getattr(stream, "isatty", lambda: False)())
    return Progress(label, enabled, stream)
