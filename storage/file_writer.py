"""A file written and hashed on a thread of its own: the local store's streaming uploads.

Why a thread: an ingest reads, hashes and encrypts the original on the caller's thread, and meanwhile
this one hashes the ciphertext (the store's own account of what it wrote) and writes it, which is a
copy into the page cache and, when the kernel throttles a writer that outruns the disk, a wait. hashlib
and ``os.write`` release the GIL, so on a station with two cores both halves run at once. A bounded
queue keeps memory constant whatever the file's size: at most ``depth`` chunks wait, and ``write``
blocks while they do. Chunks are written and hashed in the order given (one queue, one consumer).

Why early writeback: the commit's ``fsync`` is the durability point, and if the kernel starts writing
only then, the fsync of a 1 GiB upload waits for the whole gigabyte to reach the disk (about 2 s here).
Every ``writeback_step`` bytes the writer asks the kernel (``posix_fadvise(POSIX_FADV_DONTNEED)``) to
start writing back what it holds and to drop pages already written back, so the disk works while the
rest is produced and the fsync waits only for the tail. It changes no guarantee: nothing counts as
stored before the fsync, which still comes before the version is published. Dropping the written pages
also keeps a vault's ciphertext, which nobody reads soon, from pushing other files out of the page
cache; a read-back verification (``EVIDENCE_VERIFY_READBACK``) then reads the disk, not the cache.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from contextlib import suppress

WRITEBACK_STEP = 8 * 1024 * 1024
QUEUE_DEPTH = 4


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (it may write fewer than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class BackgroundFileWriter:
    """Appends chunks to an open file descriptor on a worker thread, hashing them (SHA-256) as written.

    The caller owns the descriptor and must not close it before :meth:`finish` or :meth:`close`
    returned: until then the thread may still write to it. A write error is raised by the next
    :meth:`write` or by :meth:`finish`; chunks queued after it are discarded, never written.
    """

    def __init__(self, fd: int, *, depth: int = QUEUE_DEPTH, writeback_step: int = WRITEBACK_STEP) -> None:
        self._fd = fd
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._hash = hashlib.sha256()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._writeback_step = writeback_step
        self._written = 0
        self._last_step = 0
        self._advise_from = 0

    @property
    def bytes_written(self) -> int:
        """Bytes the thread has written so far (queued chunks not included)."""
        return self._written

    def write(self, data: bytes) -> None:
        """Queue ``data`` to be written after everything queued before it. ``data`` must not change
        afterwards (pass ``bytes``): the thread reads it later."""
        self._raise_error()
        if self._stopped:
            raise ValueError("this writer is finished or closed")
        if self._thread is None:
            # daemon: a writer whose owner never finished or closed it must not keep the process alive
            self._thread = threading.Thread(target=self._run, name="local-upload-writer", daemon=True)
            self._thread.start()
        self._queue.put(data)

    def sha256(self) -> str:
        """Hex SHA-256 of every byte written so far, once the chunks queued before this call are."""
        if self._thread is not None and not self._stopped:
            self._queue.join()
        return self._hash.hexdigest()

    def finish(self) -> str:
        """Wait until every queued chunk is written; the hex SHA-256 of all of them, in order. Raises
        the error that stopped the writer, if one did."""
        self._stop()
        self._raise_error()
        return self._hash.hexdigest()

    def close(self) -> None:
        """Stop the thread, writing nothing more than it already started; any error is dropped (the
        upload is being abandoned). Safe to call more than once."""
        self._stop()

    def _stop(self) -> None:
        self._stopped = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)  # never blocks for long: the thread drains the queue even after an error
            thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            try:
                if data is None:
                    return
                if self._error is None:
                    try:
                        write_all(self._fd, data)
                        self._hash.update(data)
                        self._written += len(data)
                        self._start_writeback()
                    except BaseException as err:  # handed to the caller's thread, raised there
                        self._error = err
            finally:
                self._queue.task_done()

    def _start_writeback(self) -> None:
        if self._written - self._last_step < self._writeback_step:
            return
        # From the previous step on: the range advised last time (written back by now) is dropped from
        # the page cache, the newest one starts its writeback. Advice only: a refusal changes nothing.
        if hasattr(os, "posix_fadvise"):
            with suppress(OSError):
                os.posix_fadvise(
                    self._fd, self._advise_from, self._written - self._advise_from, os.POSIX_FADV_DONTNEED
                )
        self._advise_from, self._last_step = self._last_step, self._written
