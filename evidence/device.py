"""Reading a docked device safely: what is on it, and what must not be touched.

A device is untrusted input. Symbolic links are never followed (one could point at the station's own
keys or at another officer's device), special files are never opened for reading (a FIFO would block
the dock forever), and a file still being written is deferred rather than stored half-finished. Every
entry ends up in exactly one list, so nothing on a device goes unaccounted for.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from evidence.errors import InvalidInput


@dataclass(frozen=True)
class DeviceFile:
    path: Path
    relative: str
    """Path below the device root in display form (undecodable bytes as \\xNN escapes)."""
    size: int
    mtime_ns: int
    inode: int
    device: int


@dataclass(frozen=True)
class SkippedEntry:
    relative: str
    reason: str


@dataclass(frozen=True)
class DeviceScan:
    root: Path
    files: tuple[DeviceFile, ...]
    rejected: tuple[SkippedEntry, ...]
    """Never ingested: links, special files, unreadable directories."""
    deferred: tuple[SkippedEntry, ...]
    """Not yet: still being written. The next run picks them up."""


def display_path(relative: str) -> str:
    return os.fsencode(relative).decode("utf-8", "backslashreplace")


def scan_device(root: Path, *, settle_seconds: float, now: float | None = None) -> DeviceScan:
    """List a device without following links. Iterative, so deep nesting cannot exhaust the stack."""
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory: give the folder where the device is mounted")
    now = time.time() if now is None else now
    files: list[DeviceFile] = []
    rejected: list[SkippedEntry] = []
    deferred: list[SkippedEntry] = []
    pending = [""]
    while pending:
        relative_dir = pending.pop()
        try:
            with os.scandir(root / relative_dir if relative_dir else root) as entries:
                listing = sorted(entries, key=lambda e: e.name)
        except OSError as err:
            rejected.append(
                SkippedEntry(display_path(relative_dir or "."), f"unreadable directory: {_why(err)}")
            )
            continue
        for entry in listing:
            relative = f"{relative_dir}/{entry.name}" if relative_dir else entry.name
            shown = display_path(relative)
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as err:
                rejected.append(SkippedEntry(shown, f"cannot be examined: {_why(err)}"))
                continue
            mode = info.st_mode
            if stat.S_ISLNK(mode):
                rejected.append(SkippedEntry(shown, "symbolic link: not followed, target not read"))
            elif stat.S_ISDIR(mode):
                pending.append(relative)
            elif stat.S_ISREG(mode):
                age = now - info.st_mtime_ns / 1e9
                if age < settle_seconds:
                    deferred.append(
                        SkippedEntry(shown, f"still being written (modified {max(age, 0):.1f}s ago)")
                    )
                else:
                    files.append(
                        DeviceFile(
                            Path(entry.path), shown, info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev
                        )
                    )
            else:
                rejected.append(
                    SkippedEntry(shown, f"special file ({_kind(mode)}): not a recording, not read")
                )
    files.sort(key=lambda f: f.relative)
    return DeviceScan(root, tuple(files), tuple(rejected), tuple(deferred))


class FileChanged(Exception):
    """The file on the device is not the one scanned, or changed while it was read."""


def open_device_file(item: DeviceFile) -> int:
    """Open without following a link and without blocking, and check it is still the scanned file."""
    try:
        fd = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise FileChanged("became a symbolic link after the scan") from err
        raise
    try:
        ensure_unchanged(item, os.fstat(fd))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_unchanged(item: DeviceFile, now: os.stat_result) -> None:
    if not stat.S_ISREG(now.st_mode) or (now.st_ino, now.st_dev) != (item.inode, item.device):
        raise FileChanged("was replaced after the scan")
    if now.st_size != item.size or now.st_mtime_ns != item.mtime_ns:
        raise FileChanged(f"is still being written (size {item.size} -> {now.st_size})")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device node"
    return "unknown type"


def _why(err: OSError) -> str:
    return err.strerror or str(err)
