"""The ingest station's own journal of uploads in flight (SQLite, under the station's data dir).

The vault cannot tell a crashed station's half-finished upload from one another station is still
sending; only the station that started it knows. Each upload is noted before its first byte and
settled once aborted or referenced by a manifest, so a re-run aborts exactly its own leftovers and
reports committed-but-unreferenced objects (a kill between commit and manifest) for the storage admin.

It also remembers what the station stored from each device (``device_files``), so a device docked
again without having been wiped is not uploaded again (``flows.redock``). That memory is a hint, never
proof: a file that matches it is still read and hashed before it is called stored.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from evidence.errors import EvidenceError
from storage.base import ObjectStore
from storage.sqlite_files import BUSY_SECONDS, use_write_ahead_log

log = logging.getLogger(__name__)

_SCHEMA = """
create table if not exists uploads (
    key text primary key,
    state text not null check (state in ('open', 'committed', 'settled')),
    started_at text not null,
    updated_at text not null,
    owner text not null default ''
)
"""

_DEVICE_FILES_SCHEMA = """
create table if not exists device_files (
    device_serial text not null,
    source_path text not null,
    size integer not null,
    mtime_ns integer not null,
    inode text not null,
    sha256 text not null,
    evidence_id text not null,
    stored_at text not null,
    primary key (device_serial, source_path)
)
"""


def process_identity(pid: int) -> str | None:
    """pid plus the process's start time, so a recycled pid is not mistaken for the original owner.
    None when the process does not exist."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        return f"{pid}:{fields[19]}"  # field 22 of stat(5): start time in clock ticks since boot
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (not Linux): fall back to whether the pid is alive
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"{pid}:"


def _owner_alive(owner: str) -> bool:
    pid, _, _ = owner.partition(":")
    return bool(pid.isdigit()) and process_identity(int(pid)) == owner


@dataclass(frozen=True)
class Recovery:
    aborted: tuple[str, ...]
    """Keys whose interrupted uploads were aborted (nothing of them remains)."""


@dataclass(frozen=True)
class RememberedFile:
    """A device file as it was when its stored copy was last verified (the scan's view of it)."""

    size: int
    mtime_ns: int
    inode: int
    sha256: str
    evidence_id: str


class IngestJournal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_SECONDS)
        use_write_ahead_log(self._db)
        self._db.execute("pragma synchronous=full")  # the journal must survive the same crash it recovers
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("pragma table_info(uploads)")}
        if "owner" not in columns:  # journals written before uploads had owners
            try:
                self._db.execute("alter table uploads add column owner text not null default ''")
            except sqlite3.OperationalError as err:
                if "duplicate column" not in str(err):  # another process upgraded it first
                    raise
        self._db.execute(_DEVICE_FILES_SCHEMA)
        self._owner = process_identity(os.getpid()) or f"{os.getpid()}:"
        self._in_flight: set[str] = set()

    @classmethod
    def for_station(cls, journal_dir: Path) -> IngestJournal:
        return cls(journal_dir / "ingest.sqlite")

    def _set(self, key: str, state: str, *, flushed: bool = True) -> None:
        """Record ``state``; unless ``flushed`` is False, on disk before this returns (one fsync of the
        log). An unflushed change survives a crash of this process, not of the machine, until the
        next flushed change or checkpoint syncs the log that holds it (WAL with synchronous=NORMAL
        stays consistent; only its last commits can roll back)."""
        now = datetime.now(UTC).isoformat()
        with self._lock:
            if not flushed:
                self._db.execute("pragma synchronous=normal")
            try:
                self._db.execute(
                    "insert into uploads(key, state, started_at, updated_at, owner) values (?, ?, ?, ?, ?) "
                    "on conflict(key) do update set state = excluded.state, "
                    "updated_at = excluded.updated_at, owner = excluded.owner",
                    (key, state, now, now, self._owner),
                )
            finally:
                if not flushed:
                    self._db.execute("pragma synchronous=full")

    def upload_started(self, key: str) -> None:
        self._set(key, "open")
        with self._lock:
            self._in_flight.add(key)

    def upload_committed(self, key: str) -> None:
        # Not flushed: the store, not this row, is the record of a commit. Lost to a power cut, the
        # row still says 'open', and recovery finds the object exists and marks it committed (see
        # recover). 'open' must be flushed (a lost one would be an upload no one could find), and so
        # must 'settled' (lost, a referenced object would be reported orphaned, for deletion); each
        # such flush also syncs any unflushed 'committed' before it, so this saves one fsync per
        # object without a window recovery cannot close.
        self._set(key, "committed", flushed=False)

    def upload_settled(self, key: str) -> None:
        """Only a change is written: a duplicate's objects are settled every time the item is found
        stored (a re-dock finds every file so), and rewriting the same row cost a flush each time."""
        with self._lock:
            self._db.execute(
                "update uploads set state = 'settled', updated_at = ?, owner = ? "
                "where key = ? and state != 'settled'",
                (datetime.now(UTC).isoformat(), self._owner, key),
            )
            self._in_flight.discard(key)

    def upload_abandoned(self, key: str) -> None:
        with self._lock:
            self._in_flight.discard(key)

    def unsettled(self) -> list[tuple[str, str]]:
        return [(key, state) for key, state, _ in self._unsettled_with_owner()]

    def _unsettled_with_owner(self) -> list[tuple[str, str, str]]:
        with self._lock:
            rows = self._db.execute(
                "select key, state, owner from uploads where state != 'settled' order by key"
            )
            return [(str(k), str(s), str(o)) for k, s, o in rows]

    def recover(self, store: ObjectStore) -> Recovery:
        """Finish what runs that died left behind. Safe to repeat. For each of their uploads still
        open: abort any multipart upload or staged file under its key; then, if the object exists
        after all (the run died after committing, before journaling it), keep it as committed, to be
        reported as orphaned unless a manifest turns out to reference it. Uploads whose owning process
        is alive (this one, or another ingest on the same station, such as several devices docked at
        once) are in flight, not interrupted, and are left alone."""
        aborted: list[str] = []
        for key, state, owner in self._unsettled_with_owner():
            if state != "open" or self._is_live(owner, key):
                continue
            try:
                for upload in store.list_incomplete_uploads(key):
                    if upload.key == key:
                        store.abort_incomplete_upload(upload)
                committed = store.exists(key)
            except EvidenceError as err:
                log.warning("could not clean up interrupted upload %s: %s", key, err)
                continue
            self._set(key, "committed" if committed else "settled")
            if not committed:
                aborted.append(key)
        return Recovery(tuple(aborted))

    def orphans(self) -> tuple[str, ...]:
        """Objects committed by runs that are over but referenced by no manifest: ciphertext whose key
        was never stored, unreadable; they expire with their lock. Call after a run, once duplicates
        have settled the objects their manifests do reference."""
        return tuple(
            key
            for key, state, owner in self._unsettled_with_owner()
            if state == "committed" and not self._is_live(owner, key)
        )

    def _is_live(self, owner: str, key: str) -> bool:
        if owner == self._owner:
            with self._lock:
                return key in self._in_flight
        return _owner_alive(owner)

    # -- what the station stored from each device (flows.redock) ----------------------------------

    def remembered_file(self, device_serial: str, source_path: str) -> RememberedFile | None:
        with self._lock:
            row = self._db.execute(
                "select size, mtime_ns, inode, sha256, evidence_id from device_files "
                "where device_serial = ? and source_path = ?",
                (device_serial, source_path),
            ).fetchone()
        if row is None:
            return None
        size, mtime_ns, inode, sha256, evidence_id = row
        return RememberedFile(int(size), int(mtime_ns), int(inode), str(sha256), str(evidence_id))

    def remember_file(self, device_serial: str, source_path: str, remembered: RememberedFile) -> None:
        """Note a device file whose stored copy was verified; replaces what was known of that path."""
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._db.execute(
                "insert into device_files(device_serial, source_path, size, mtime_ns, inode, sha256, "
                "evidence_id, stored_at) values (?, ?, ?, ?, ?, ?, ?, ?) "
                "on conflict(device_serial, source_path) do update set size = excluded.size, "
                "mtime_ns = excluded.mtime_ns, inode = excluded.inode, sha256 = excluded.sha256, "
                "evidence_id = excluded.evidence_id, stored_at = excluded.stored_at",
                (
                    device_serial,
                    source_path,
                    remembered.size,
                    remembered.mtime_ns,
                    str(remembered.inode),  # text: an inode number may not fit SQLite's signed 64 bits
                    remembered.sha256,
                    remembered.evidence_id,
                    now,
                ),
            )

    def forget_file(self, device_serial: str, source_path: str) -> None:
        with self._lock:
            self._db.execute(
                "delete from device_files where device_serial = ? and source_path = ?",
                (device_serial, source_path),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
