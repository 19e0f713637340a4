"""Names that never overwrite: `a.csv`, then `a-YYYYMMDDTHHMMSSZ.csv`, then `a-YYYYMMDDTHHMMSSZ-1.csv`...

Pure and dependency-free, so the storage moves of the function app and the exporter's uploader (which
must not import the Functions stack) pick a free name the same way (docs/design.md#containers).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime


def destination_names(name: str, now: datetime) -> Iterator[str]:
    """`name` itself, then up to 100 names with a UTC `-YYYYMMDDTHHMMSSZ[-n]` suffix before the extension."""
    yield name
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    # The suffix goes before the extension (`a.csv` -> `a-<stamp>.csv`, `n.txt` -> `n-<stamp>.txt`); a name
    # without one, or whose only dot starts it or sits in a folder part, gets it at the end.
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or stem.endswith("/") or "/" in ext:
        stem, dot, ext = name, "", ""
    for n in range(100):
        suffix = f"-{stamp}" if n == 0 else f"-{stamp}-{n}"
        yield f"{stem}{suffix}{dot}{ext}"
