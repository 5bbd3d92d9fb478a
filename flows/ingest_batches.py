"""Device files in batches, one Prefect task per batch, with an outcome for every file.

A Prefect task costs more than ingesting a small photo (creating the task run and reporting its
states to the API: about 30 ms of CPU per task, measured in ``bench/results/small_photos.md``), so
the flow groups files and runs a task per group. What one task per file gave stays true per file:
each file gets its own outcome, a file that fails for good fails alone, and a transient storage
failure retries (Prefect's task retries, the one place retries happen) without redoing the files
the batch already finished: those outcomes are kept in an :class:`IngestLedger` the flow run owns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from evidence.device import DeviceFile
from flows.ingest import FileOutcome, failed_outcome


@dataclass(frozen=True)
class IngestBatch:
    """Files ``first`` to ``first + len(files) - 1`` of a scan, in scan order."""

    first: int
    files: tuple[DeviceFile, ...]

    @property
    def last(self) -> int:
        return self.first + len(self.files) - 1

    def numbered(self) -> list[tuple[int, DeviceFile]]:
        return list(enumerate(self.files, start=self.first))


def group_into_batches(
    files: Sequence[DeviceFile], *, max_files: int, max_bytes: int, at_least: int = 1
) -> list[IngestBatch]:
    """Consecutive files in batches of at most ``max_files`` files and ``max_bytes`` bytes; a file
    larger than ``max_bytes`` (a long video) is a batch of its own. A few files are spread over at
    least ``at_least`` batches where there are that many files, so every worker has one: batching
    saves task overhead, it must not leave workers idle."""
    if max_files < 1 or max_bytes < 1:
        raise ValueError("a batch holds at least one file and one byte")
    per_batch = max(1, min(max_files, len(files) // max(1, at_least)))
    batches: list[IngestBatch] = []
    current: list[DeviceFile] = []
    current_bytes = 0
    first = 0
    for position, item in enumerate(files):
        if current and (len(current) >= per_batch or current_bytes + item.size > max_bytes):
            batches.append(IngestBatch(first, tuple(current)))
            current, current_bytes, first = [], 0, position
        current.append(item)
        current_bytes += item.size
    if current:
        batches.append(IngestBatch(first, tuple(current)))
    return batches


class IngestLedger:
    """Outcomes of the files a flow run has finished, by position in the scan, shared by its tasks.

    Deliberately a plain object, not a collection: Prefect passes it to every task (and every retry)
    as the same instance, where a dict or dataclass argument could be rebuilt. It hears every file as
    it finishes, so progress advances per file, not per batch."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[int, FileOutcome] = {}
        self._done = 0
        self._total = total
        self._progress = progress

    def finished(self, position: int) -> bool:
        with self._lock:
            return position in self._outcomes

    def record(self, position: int, outcome: FileOutcome) -> None:
        with self._lock:
            if position in self._outcomes:
                return
            self._outcomes[position] = outcome
            self._done += 1
            if self._progress is not None:
                self._progress(self._done, self._total)

    def outcomes_of(self, batch: IngestBatch) -> list[FileOutcome]:
        with self._lock:
            return [self._outcomes[position] for position, _ in batch.numbered()]

    def take(self, batch: IngestBatch, error: BaseException | None = None) -> list[FileOutcome]:
        """The batch's outcomes, handed over (the ledger forgets them, so a run of many thousand
        files holds each outcome once). With ``error``, the batch gave up: files it had not finished
        are reported failed with it, and stay on the device."""
        if error is not None:
            for position, item in batch.numbered():
                self.record(position, failed_outcome(item, error))
        with self._lock:
            return [self._outcomes.pop(position) for position, _ in batch.numbered()]
