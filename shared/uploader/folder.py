"""The export folder on the BOBO server: which files are settled, reading them safely, archiving them.

Windows facts this module is written for: BOBO may hold a file open while it writes it; `rename` never
replaces an existing file there (POSIX `rename` does); `.CSV` and `.csv` are the same extension.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from shared.blob_names import destination_names

# Windows: another process opened the file in a way that excludes us (BOBO still writing it).
_WINDOWS_SHARING_ERRORS = (32, 33)  # ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION
_CROSS_DEVICE = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
_WINDOWS_NOT_SAME_DEVICE = 17


@dataclass(frozen=True)
class LocalFile:
    path: Path
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Content:
    """A settled file's bytes, read in one go, and their MD5 (hex)."""

    data: bytes
    md5: str


class FileBusy(Exception):
    """The file changed while it was read, or another process holds it open for writing: not settled yet."""


def scan(folder: Path, settle_seconds: float, now: float | None = None) -> tuple[list[LocalFile], list[LocalFile]]:
    """`*.csv` (any case) directly in `folder`, split into (settled, unsettled), oldest first.

    Settled: not modified for `settle_seconds` (a write moves the modification time, so neither size nor
    time changed in that span). A time in the future (clock skew on a share) counts as not settled.
    """
    now = time.time() if now is None else now
    settled: list[LocalFile] = []
    unsettled: list[LocalFile] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.lower().endswith(".csv"):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                # Not entry.stat(): on Windows that is the directory listing's copy, which NTFS may update
                # late while a writer holds the file open; os.stat asks the file itself.
                stat = os.stat(entry.path, follow_symlinks=False)
            except FileNotFoundError:
                continue  # moved away between listing and stat
            local = LocalFile(Path(entry.path), stat.st_size, stat.st_mtime_ns)
            age = now - stat.st_mtime_ns / 1e9
            (settled if age >= max(settle_seconds, 0) else unsettled).append(local)
    # The order BOBO wrote them in: the sync breaks exact ties by blob last-modified time, then name.
    settled.sort(key=lambda f: (f.mtime_ns, f.name))
    return settled, unsettled


def read_settled(local: LocalFile) -> Content:
    """The file's bytes, if nobody writes it now and it is still what `scan` saw; else FileBusy."""
    try:
        with _open_denying_writers(local.path) as handle:
            data = handle.read()
            after = os.fstat(handle.fileno())
    except PermissionError as error:
        if getattr(error, "winerror", None) in _WINDOWS_SHARING_ERRORS:
            raise FileBusy(f"{local.name} is open in another program") from None
        raise
    if len(data) != local.size or after.st_size != local.size or after.st_mtime_ns != local.mtime_ns:
        raise FileBusy(f"{local.name} changed while it was read")
    return Content(data, hashlib.md5(data, usedforsecurity=False).hexdigest())


def _open_denying_writers(path: Path) -> BinaryIO:
    """Open for reading. On Windows, share read access only: fails while any process has it open to write.

    Python's `open` shares everything on Windows, so it cannot tell that BOBO is still writing; CreateFileW
    with FILE_SHARE_READ can. POSIX has no such locks: there the settle time and the re-check decide.
    """
    if os.name != "nt":
        return path.open("rb")
    import ctypes
    import msvcrt
    from ctypes import wintypes

    generic_read, file_share_read, open_existing, normal = 0x80000000, 0x1, 3, 0x80
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.CreateFileW.restype = wintypes.HANDLE
    kernel32.CreateFileW.argtypes = [
        wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID,
        wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE,
    ]  # fmt: skip
    handle = kernel32.CreateFileW(str(path), generic_read, file_share_read, None, open_existing, normal, None)
    if handle is None or handle == wintypes.HANDLE(-1).value:
        raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined]
    return os.fdopen(msvcrt.open_osfhandle(handle, os.O_RDONLY), "rb")  # type: ignore[attr-defined,return-value]


def archive(path: Path, archive_folder: Path, now: datetime) -> Path:
    """Move `path` into `archive_folder` without ever replacing a file there; a clash gets the UTC suffix."""
    for candidate in destination_names(path.name, now):
        target = archive_folder / candidate
        try:
            _move_no_overwrite(path, target)
            return target
        except FileExistsError:
            if _same_file(path, target):  # a move cut short between its link and its unlink (POSIX)
                os.unlink(path)
                return target
            continue
    raise FileExistsError(f"no free name for {path.name} in {archive_folder}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _move_no_overwrite(source: Path, target: Path) -> None:
    try:
        if os.name == "nt":
            os.rename(source, target)  # raises FileExistsError rather than replace
        else:
            os.link(source, target)  # raises FileExistsError; os.rename would silently replace
            os.unlink(source)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in _CROSS_DEVICE and getattr(error, "winerror", None) != _WINDOWS_NOT_SAME_DEVICE:
            raise
        # Another volume, or a file system without hard links: copy (exclusive create), then delete.
        with source.open("rb") as src, target.open("xb") as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.unlink(source)


class PassLock:
    """One pass at a time per archive folder (a scheduled task and a `--watch` may overlap).

    An OS file lock, released by the OS when the holder dies, so a killed pass never blocks the next.
    """

    def __init__(self, archive_folder: Path):
        self.path = archive_folder / "uploader.lock"
        self._handle: BinaryIO | None = None

    def acquire(self) -> bool:
        handle = self.path.open("a+b")
        try:
            if os.name == "nt":
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()  # closing releases the lock on both systems
            self._handle = None


@contextlib.contextmanager
def pass_lock(archive_folder: Path) -> Iterator[bool]:
    lock = PassLock(archive_folder)
    held = lock.acquire()
    try:
        yield held
    finally:
        lock.release()
