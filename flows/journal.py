"""The ingest station's own journal of uploads in flight (SQLite, under the station's data dir).

The vault cannot tell a crashed station's half-finished upload from one another station is still
sending; only the station that started it knows. Each upload is noted before its first byte and
settled once aborted or referenced by a manifest, so a re-run aborts exactly its own leftovers and
reports committed-but-unreferenced objects (a kill between commit and manifest) for the storage admin.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from evidence.errors import EvidenceError
from storage.base import ObjectStore

log = logging.getLogger(__name__)

_SCHEMA = """
create table if not exists uploads (
    key text primary key,
    state text not null check (state in ('open', 'committed', 'settled')),
    started_at text not null,
    updated_at text not null
)
"""


@dataclass(frozen=True)
class Recovery:
    aborted: tuple[str, ...]
    """Keys whose interrupted uploads were aborted (nothing of them remains)."""
    orphaned: tuple[str, ...]
    """Objects committed by an interrupted run but never referenced by a manifest. They hold
    ciphertext whose key was never stored, so they cannot be read; they expire with their lock."""


class IngestJournal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=full")  # the journal must survive the same crash it recovers
        self._db.execute(_SCHEMA)

    @classmethod
    def for_station(cls, journal_dir: Path) -> IngestJournal:
        return cls(journal_dir / "ingest.sqlite")

    def _set(self, key: str, state: str) -> None:
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._db.execute(
                "insert into uploads(key, state, started_at, updated_at) values (?, ?, ?, ?) "
                "on conflict(key) do update set state = excluded.state, updated_at = excluded.updated_at",
                (key, state, now, now),
            )

    def upload_started(self, key: str) -> None:
        self._set(key, "open")

    def upload_committed(self, key: str) -> None:
        self._set(key, "committed")

    def upload_settled(self, key: str) -> None:
        self._set(key, "settled")

    def unsettled(self) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute("select key, state from uploads where state != 'settled' order by key")
            return [(str(k), str(s)) for k, s in rows]

    def recover(self, store: ObjectStore) -> Recovery:
        """Abort this station's interrupted uploads; list its orphaned objects. Safe to repeat."""
        aborted: list[str] = []
        orphaned: list[str] = []
        for key, state in self.unsettled():
            if state == "committed":
                orphaned.append(key)
                continue
            try:
                for upload in store.list_incomplete_uploads(key):
                    if upload.key == key:
                        store.abort_incomplete_upload(upload)
            except EvidenceError as err:
                log.warning("could not clean up interrupted upload %s: %s", key, err)
                continue
            self.upload_settled(key)
            aborted.append(key)
        return Recovery(tuple(aborted), tuple(orphaned))

    def close(self) -> None:
        with self._lock:
            self._db.close()
