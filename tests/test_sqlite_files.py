"""Opening a station's SQLite files (catalog, ingest journal) while other processes hold them."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from flows.journal import IngestJournal
from storage.sqlite_files import use_write_ahead_log


def _held_by_a_reader(path: Path, seconds: float) -> threading.Thread:
    """Another opener in the middle of a read: the file cannot change journal mode until it ends."""
    reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    reader.execute("create table if not exists t(x)")
    reader.execute("begin")
    reader.execute("select * from t").fetchall()
    release = threading.Timer(seconds, lambda: (reader.execute("commit"), reader.close()))
    release.start()
    return release


def test_the_switch_to_wal_waits_for_other_openers_instead_of_failing_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite"
    release = _held_by_a_reader(path, seconds=0.5)
    opener = sqlite3.connect(path, isolation_level=None, timeout=0.05)
    try:
        use_write_ahead_log(opener, busy_seconds=10)
        assert opener.execute("pragma journal_mode").fetchone()[0] == "wal"
    finally:
        opener.close()
        release.join()


def test_the_wait_is_bounded_and_ends_in_the_driver_error(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite"
    release = _held_by_a_reader(path, seconds=2)
    opener = sqlite3.connect(path, isolation_level=None, timeout=0.05)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            use_write_ahead_log(opener, busy_seconds=0.2)
    finally:
        opener.close()
        release.join()


def test_a_station_journal_opened_by_many_workers_at_once_on_a_fresh_file(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def open_journal() -> None:
        barrier.wait()
        try:
            IngestJournal.for_station(tmp_path / "station").close()
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=open_journal) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
