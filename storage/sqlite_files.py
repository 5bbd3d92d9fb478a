"""SQLite files that several processes open at once: the station's catalog and its ingest journal.

Both use write-ahead logging, so readers never wait for a writer. WAL is a property of the file,
set once by whichever opener comes first; the switch needs the file to itself, and SQLite answers
"database is locked" at once, without waiting out the busy timeout, while other openers of a fresh
file hold it. Two docks starting together on a new station hit exactly that.
"""

from __future__ import annotations

import sqlite3
import time

BUSY_SECONDS = 60.0
"""How long an opener waits for another (an ingest, a rebuild) before giving up."""


def use_write_ahead_log(connection: sqlite3.Connection, busy_seconds: float = BUSY_SECONDS) -> None:
    """Put the file in WAL mode unless it already is, waiting (bounded) while other openers hold it."""
    deadline = time.monotonic() + busy_seconds
    pause = 0.005
    while True:
        mode = str(connection.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode in ("wal", "memory"):  # an in-memory database has no log to write ahead
            return
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
