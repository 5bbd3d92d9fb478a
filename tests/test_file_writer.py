"""The local store's upload writer (storage/file_writer.py): order, the store's own hash, errors raised on
the caller's thread, no thread left behind, and writeback started as the file grows."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.file_writer import BackgroundFileWriter


def _writer_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "local-upload-writer"}


@pytest.fixture
def other_writers() -> set[threading.Thread]:
    """Writer threads alive before the test: uploads other tests in this process left open on
    purpose (a run 'killed' mid-upload never aborts it). Only the test's own writer must be gone."""
    return _writer_threads()


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    descriptor = os.open(tmp_path / "staged.part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    yield descriptor
    os.close(descriptor)


def test_chunks_are_written_and_hashed_in_the_order_given(
    tmp_path: Path, fd: int, other_writers: set[threading.Thread]
) -> None:
    rng = random.Random(7)
    chunks = [rng.randbytes(rng.randrange(0, 70_000)) for _ in range(200)]
    writer = BackgroundFileWriter(fd, depth=2, writeback_step=64 * 1024)
    for chunk in chunks:
        writer.write(chunk)

    everything = b"".join(chunks)
    assert writer.finish() == hashlib.sha256(everything).hexdigest()
    assert (tmp_path / "staged.part").read_bytes() == everything
    assert writer.bytes_written == len(everything)
    assert _writer_threads() - other_writers == set()


def test_the_hash_so_far_counts_every_chunk_queued_before_asking(fd: int) -> None:
    writer = BackgroundFileWriter(fd, depth=1)
    writer.write(b"a" * 100_000)
    writer.write(b"b" * 100_000)
    assert writer.sha256() == hashlib.sha256(b"a" * 100_000 + b"b" * 100_000).hexdigest()
    writer.write(b"c")
    assert writer.finish() == hashlib.sha256(b"a" * 100_000 + b"b" * 100_000 + b"c").hexdigest()


def test_a_write_error_on_the_writer_thread_is_raised_to_the_caller(
    tmp_path: Path, fd: int, monkeypatch: pytest.MonkeyPatch, other_writers: set[threading.Thread]
) -> None:
    real_write = os.write
    calls = 0

    def fills_up_on_the_third_write(descriptor: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(descriptor, data)

    monkeypatch.setattr(os, "write", fills_up_on_the_third_write)
    writer = BackgroundFileWriter(fd, depth=1)
    with pytest.raises(OSError, match="No space left"):
        for index in range(50):  # raised by a later write once the thread has failed, or by finish
            writer.write(bytes([index]) * 1000)
        writer.finish()

    writer.close()  # what an abort does after the error: no second raise, the thread is gone
    assert _writer_threads() - other_writers == set()
    # nothing queued after the failed chunk was written: the file holds the first two chunks only
    assert (tmp_path / "staged.part").read_bytes() == b"\x00" * 1000 + b"\x01" * 1000


def test_close_stops_the_thread_and_later_writes_are_refused(
    fd: int, other_writers: set[threading.Thread]
) -> None:
    writer = BackgroundFileWriter(fd)
    writer.write(b"x" * 10)
    writer.close()
    writer.close()
    assert _writer_threads() - other_writers == set()
    with pytest.raises(ValueError, match="finished or closed"):
        writer.write(b"y")


def test_writeback_is_asked_for_each_step_and_each_range_twice(
    fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each step starts the newest range's writeback and drops the one before it, written back by then.
    advice: list[tuple[int, int, int]] = []
    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, offset, length, what: advice.append((offset, length, what))
    )
    step = 1000
    writer = BackgroundFileWriter(fd, writeback_step=step)
    for _ in range(4):
        writer.write(b"z" * step)
    writer.write(b"z" * (step // 2))  # a part step: no advice; the commit's fsync covers it
    writer.finish()

    dont_need = os.POSIX_FADV_DONTNEED
    assert advice == [
        (0, step, dont_need),
        (0, 2 * step, dont_need),
        (step, 2 * step, dont_need),
        (2 * step, 2 * step, dont_need),
    ]
