"""Reading a docked device safely: what is on it, and what must not be touched.

A device is untrusted input. Symbolic links are never followed (one could point at the station's own
keys or at another officer's device), special files are never opened for reading (a FIFO would block
the dock forever), and a file still being written is deferred rather than stored half-finished. Every
entry ends up in exactly one list, so nothing on a device goes unaccounted for.

Rejected entries are refused on purpose and for good: they are not recordings, and running again
would refuse them again. An entry the station could not read (permissions, a path longer than the
OS allows, an I/O error, a folder that vanished) is *failed*: it may hold evidence, it stays on the
device, and the run must not look finished.
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
    """Never ingested, on purpose: links, special files, folders swapped for links during the scan."""
    deferred: tuple[SkippedEntry, ...]
    """Not yet: still being written. The next run picks them up."""
    failed: tuple[SkippedEntry, ...] = ()
    """Could not be listed or examined (a folder or file the station cannot read, a path too long
    for the OS, an I/O error, gone meanwhile): left on the device, the run is not complete."""


def display_path(relative: str) -> str:
    """A device path as reports show it: valid UTF-8 as is, every other byte as ``\\xNN``. A backslash
    in the name is shown as ``\\x5c`` too, so two different names never show the same (a device could
    otherwise name one file ``\\xff`` literally and another with the byte 0xff)."""
    return os.fsencode(relative).replace(b"\\", b"\\x5c").decode("utf-8", "backslashreplace")


def scan_device(root: Path, *, settle_seconds: float, now: float | None = None) -> DeviceScan:
    """List a device without following links. Iterative, so deep nesting cannot exhaust the stack.

    Each directory is opened without following a link and must still be the directory its parent's
    listing showed (same device and inode): a directory swapped for a link while the scan runs would
    otherwise have the station list, store and wipe files outside the device."""
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory: give the folder where the device is mounted")
    now = time.time() if now is None else now
    files: list[DeviceFile] = []
    rejected: list[SkippedEntry] = []
    deferred: list[SkippedEntry] = []
    failed: list[SkippedEntry] = []
    top = root.stat()  # the dock's folder for the device: following a link to it is the dock's choice
    pending = [("", top.st_dev, top.st_ino)]
    while pending:
        relative_dir, expected_device, expected_inode = pending.pop()
        try:
            listing = _list_directory(
                root / relative_dir if relative_dir else root, (expected_device, expected_inode)
            )
        except FileChanged as err:
            rejected.append(SkippedEntry(display_path(relative_dir), f"directory {err}: not followed"))
            continue
        except OSError as err:
            failed.append(
                SkippedEntry(display_path(relative_dir or "."), f"unreadable directory: {_why(err)}")
            )
            continue
        for name, info in listing:
            relative = f"{relative_dir}/{name}" if relative_dir else name
            shown = display_path(relative)
            if isinstance(info, OSError):
                failed.append(SkippedEntry(shown, f"cannot be examined: {_why(info)}"))
                continue
            mode = info.st_mode
            if stat.S_ISLNK(mode):
                rejected.append(SkippedEntry(shown, "symbolic link: not followed, target not read"))
            elif stat.S_ISDIR(mode):
                pending.append((relative, info.st_dev, info.st_ino))
            elif stat.S_ISREG(mode):
                age = now - info.st_mtime_ns / 1e9
                if age < settle_seconds:
                    deferred.append(
                        SkippedEntry(shown, f"still being written (modified {max(age, 0):.1f}s ago)")
                    )
                else:
                    files.append(
                        DeviceFile(
                            root / relative, shown, info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev
                        )
                    )
            else:
                rejected.append(
                    SkippedEntry(shown, f"special file ({_kind(mode)}): not a recording, not read")
                )
    files.sort(key=lambda f: f.relative)
    return DeviceScan(root, tuple(files), tuple(rejected), tuple(deferred), tuple(failed))


def _list_directory(path: Path, expected: tuple[int, int]) -> list[tuple[str, os.stat_result | OSError]]:
    """Names in a directory with each entry's own status (links not followed), read through a
    descriptor of the directory that was expected, so nothing in the listing can lie outside it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FileChanged("was replaced while the device was read") from err
        raise
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != expected:
            raise FileChanged("was replaced while the device was read")
        listing: list[tuple[str, os.stat_result | OSError]] = []
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    listing.append((entry.name, entry.stat(follow_symlinks=False)))
                except OSError as err:
                    listing.append((entry.name, err))
    finally:
        os.close(fd)
    return sorted(listing, key=lambda named: named[0])


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


def remove_device_file(item: DeviceFile) -> None:
    """Delete a device file only if it is still exactly the file that was scanned (same inode, size
    and mtime; never a link), removing it through a descriptor of its directory: a directory swapped
    for a link between the check and the removal cannot redirect the removal outside the device.
    Raises ``FileChanged`` (kept) or ``OSError`` (could not be removed)."""
    try:
        folder = os.open(
            item.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        )
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FileChanged("was moved: its folder was replaced after the scan") from err
        raise
    try:
        ensure_unchanged(item, os.stat(item.path.name, dir_fd=folder, follow_symlinks=False))
        os.unlink(item.path.name, dir_fd=folder)
    finally:
        os.close(folder)


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
