"""Prefect flow ``ingest-device``: one task per batch of device files (``flows.ingest_batches``),
retried on transient storage errors without redoing the files a batch already finished.

Tasks receive small descriptions of files and return small outcomes (never file bytes: Prefect keeps
task inputs and results, prefect#12668); each worker thread builds its vault from settings, because a
boto3 client cannot be a task argument (prefect#15861). Task names carry a file's position, not its
name: names can identify victims and Prefect's database is not encrypted (a batch's task is named
by its first and last position).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from evidence.device import scan_device
from evidence.errors import StorageUnavailable
from evidence.settings import Settings, load_settings
from flows.device_lock import holding_device
from flows.ingest import (
    DeviceContext,
    FileOutcome,
    IngestReport,
    build_report,
    failed_outcome,
    ingest_file,
    resolve_device,
    skipped_outcomes,
)
from flows.ingest_batches import IngestBatch, IngestLedger, group_into_batches
from flows.journal import IngestJournal
from flows.plain_flow import plain_flow
from storage.catalog import Catalog
from storage.vault import Vault

ingest_progress: ContextVar[Callable[[int, int], None] | None] = ContextVar("ingest_progress", default=None)
"""Set by an interactive caller to hear ``(files done, files in total)`` as the flow goes."""


_open_lock = threading.Lock()
_stations: dict[Settings, tuple[Vault, IngestJournal]] = {}
_catalogs: dict[Settings, Catalog] = {}


def _station(settings: Settings) -> tuple[Vault, IngestJournal]:
    # one vault and journal per process and settings, however many worker threads ask at once
    with _open_lock:
        if settings not in _stations:
            journal = IngestJournal.for_station(settings.journal_dir)
            _stations[settings] = (Vault.open(settings, journal=journal), journal)
        return _stations[settings]


def _catalog(settings: Settings) -> Catalog | None:
    """The station's catalog, or None if it cannot be opened now: an index failing must not stop an
    ingest (``evidence catalog rebuild`` catches up). A failure is not remembered, so a long-running
    dock watcher picks the catalog up again once it is reachable."""
    with _open_lock:
        if settings not in _catalogs:
            try:
                _catalogs[settings] = Catalog.open(settings)
            except Exception:
                logging.getLogger(__name__).warning(
                    "catalog cannot be opened; items are stored but not indexed: run `evidence catalog rebuild`",
                    exc_info=True,
                )
                return None
        return _catalogs[settings]


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: throttling, 5xx, timeouts, resets."""
    try:
        state.result()
    except StorageUnavailable:
        return True
    except Exception:
        return False
    return False


@task(
    retries=4,
    retry_delay_seconds=[1, 4, 15, 30],
    retry_condition_fn=_transient,
    cache_policy=NO_CACHE,
    task_run_name="ingest-files-{first}-{last}",
    persist_result=False,
)
def ingest_files_task(
    batch: IngestBatch,
    context: DeviceContext,
    settings: Settings,
    ledger: IngestLedger,
    first: int,
    last: int,
) -> list[FileOutcome]:
    """Ingest a batch file by file. A file that fails for good is that file's ``failed`` outcome and
    the batch goes on; a transient storage failure raises, so Prefect retries the batch, and the retry
    skips every file the ledger already holds an outcome for: it redoes only the file that failed,
    as a task per file did (which the vault finds stored, a duplicate, if it got that far)."""
    vault, _ = _station(settings)
    catalog = _catalog(settings)
    for position, item in batch.numbered():
        if ledger.finished(position):
            continue
        try:
            outcome = ingest_file(vault, item, context, catalog)
        except StorageUnavailable:
            raise
        except Exception as err:  # reported per file; the rest of the batch goes on
            outcome = failed_outcome(item, err)
        ledger.record(position, outcome)
    return ledger.outcomes_of(batch)


@plain_flow(name="ingest-device", persist_result=False, log_prints=False)
def ingest_device(
    device_dir: str,
    device_serial: str | None = None,
    officer_id: str | None = None,
    wipe: bool = False,
    settings_overrides: dict[str, Any] | None = None,
    incidents: list[str] | None = None,
    linked_by: str | None = None,
) -> IngestReport:
    """Ingest a device; with ``incidents``, link every stored file to each (as ``linked_by``, who needs
    the officer or investigator role). Refused with ``DeviceBusy`` while another run on this station
    holds the device (``flows.device_lock``)."""
    settings = load_settings(**(settings_overrides or {}))
    root = Path(device_dir)
    context = resolve_device(
        settings,
        root,
        serial=device_serial,
        officer=officer_id,
        wipe=wipe,
        incidents=incidents or (),
        linked_by=linked_by,
    )
    with holding_device(settings.journal_dir, context.device_serial, root):
        return _ingest_held_device(settings, context, root)


def _ingest_held_device(settings: Settings, context: DeviceContext, root: Path) -> IngestReport:
    logger = get_run_logger()
    vault, journal = _station(settings)
    recovery = journal.recover(vault.store)
    if recovery.aborted:
        logger.info("aborted %d interrupted upload(s) from an earlier run", len(recovery.aborted))
    scan = scan_device(root, settle_seconds=settings.settle_seconds)
    logger.info(
        "device %s: %d file(s) to ingest, %d rejected, %d deferred, %d unreadable",
        context.device_serial,
        len(scan.files),
        len(scan.rejected),
        len(scan.deferred),
        len(scan.failed),
    )
    outcomes = skipped_outcomes(scan)
    ledger = IngestLedger(len(scan.files), ingest_progress.get())
    batches = group_into_batches(
        scan.files,
        max_files=settings.ingest_batch_files,
        max_bytes=settings.ingest_batch_bytes,
        at_least=settings.ingest_workers,
    )
    with ThreadPoolTaskRunner(max_workers=settings.ingest_workers) as runner:
        futures = {
            runner.submit(
                ingest_files_task,
                {
                    "batch": batch,
                    "context": context,
                    "settings": settings,
                    "ledger": ledger,
                    "first": batch.first,
                    "last": batch.last,
                },
            ): batch
            for batch in batches
        }
        for future in as_completed(list(futures)):
            try:
                future.result()
            except Exception as err:  # retries exhausted: the files the batch did not finish fail
                outcomes.extend(ledger.take(futures[future], err))
            else:
                outcomes.extend(ledger.take(futures[future]))
    report = build_report(
        context, outcomes, recovered_uploads=recovery.aborted, orphaned_objects=journal.orphans()
    )
    create_table_artifact(
        key="ingest-summary",
        table=[{"status": status, "files": count} for status, count in sorted(report.counts.items())]
        + [{"status": "device", "files": context.device_serial}],
        description=f"Ingest of device {context.device_serial} at station {settings.station_id}",
    )
    logger.info("device %s done: %s", context.device_serial, dict(report.counts))
    return report
