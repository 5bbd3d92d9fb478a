"""One ingest run per device at a time on a station.

Two runs of one device at once (the dock watcher and a person's ``evidence ingest``, a run started
from the Prefect UI, a device mounted at two paths) each read and upload every file, and for each
file one of them loses the race for the manifest: its upload stays behind as ciphertext no one can
read, locked for the retention period, reported by every later run. So a run holds the device for
its whole length: an exclusive ``flock`` on a lock file per device serial (two mounts of one camera)
and one per device folder (one folder ingested under two serials), under the station's journal
directory. A second run is refused at once, told which run holds the device.

The kernel releases a ``flock`` when its holder's process ends, however it ends (SIGKILL, power
loss), so a killed run never blocks the next and nothing has to judge whether a lock is stale. Lock
files are never deleted: a run waiting on a deleted file and a run creating a new one would both
believe they held the device.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from evidence.errors import ConfigError, DeviceBusy
from flows.ingest import UNIDENTIFIED_SERIAL

LOCKS_FOLDER = "devices"


@contextmanager
def holding_device(journal_dir: Path, serial: str, device_dir: Path) -> Iterator[None]:
    """Hold the device for the ``with`` block, or raise :class:`DeviceBusy` naming the run that
    holds it."""
    held: list[int] = []
    try:
        for lock_file in _lock_files(journal_dir / LOCKS_FOLDER, serial, device_dir):
            held.append(_acquire(lock_file, f"device {serial} ({device_dir})"))
        yield
    finally:
        for fd in reversed(held):
            _release(fd)


def ensure_device_free(journal_dir: Path, serial: str, device_dir: Path) -> None:
    """Refuse now if another run holds the device, before this run starts anything (a flow run, a
    temporary Prefect server); the run itself then holds it with :func:`holding_device`."""
    with holding_device(journal_dir, serial, device_dir):
        pass


def _lock_files(folder: Path, serial: str, device_dir: Path) -> list[Path]:
    # A folder is named by a digest of its resolved path: device folder names come from the device.
    where = hashlib.sha256(os.fsencode(device_dir.resolve())).hexdigest()[:32]
    files = [folder / f"folder-{where}.lock"]
    if serial != UNIDENTIFIED_SERIAL:  # unidentified devices share that name, not their files
        files.insert(0, folder / f"serial-{serial}.lock")  # a serial is a checked identifier
    return files


def _acquire(lock_file: Path, device: str) -> int:
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise ConfigError(
            f"cannot lock {device} for this run: {lock_file}: {err.strerror or err} "
            "(the station's data directory, EVIDENCE_DATA_DIR, must be writable)"
        ) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DeviceBusy(
            f"{device} is being ingested by another run on this station ({holder}): "
            "run again once it has finished"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    this_run = {
        "pid": os.getpid(),
        "host": socket.gethostname(),  # the station's processes may run in containers of their own
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.pwrite(fd, json.dumps(this_run).encode(), 0)
    return fd


def _holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return f"pid {int(holder['pid'])} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "it has not said which yet"  # it took the lock a moment ago and is writing its name


def _release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # so that nobody is told of a holder that has gone
    finally:
        os.close(fd)  # releases the flock
