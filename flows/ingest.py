"""Ingesting a docked device, as plain functions (the Prefect flow in ``flows.ingest_flow`` calls these).

The order of operations is the safety argument: scan without following links; per file, open it
(refusing links and swapped files), extract metadata and a thumbnail, stream it once through hash and
encryption into the vault, check it did not change while read, verify what was stored, and only then,
if asked, remove it from the device. A file the station stored from the same device before, with the
same size and time, is first read once for its hash alone: if that hash is the stored item's, the
vault's account of the item is verified instead of uploading it again (``flows.redock``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from evidence.access import UserDirectory
from evidence.device import (
    DeviceFile,
    DeviceScan,
    FileChanged,
    ensure_unchanged,
    open_device_file,
    remove_device_file,
)
from evidence.devices import DeviceRegistry, require_identifier
from evidence.errors import EvidenceError, InvalidInput
from evidence.incident import parse_incident_ref
from evidence.media import extract_media_info, make_thumbnail
from evidence.settings import Settings
from flows.linking import link_at_ingest
from flows.records import note_item
from flows.redock import CONFIRMED_LOCALLY, device_memory, recognise_redocked, remember_stored
from storage.catalog import Catalog
from storage.vault import Provenance, StoredItem, Vault, original_name_fields

Status = Literal["ingested", "duplicate", "rejected", "deferred", "failed"]
UNKNOWN_DEVICE = "unknown-device"
UNIDENTIFIED_SERIAL = "unidentified"
"""The serial of a device whose folder name is not a serial and that was given none."""


@dataclass(frozen=True)
class DeviceContext:
    station_id: str
    device_serial: str
    officer_id: str | None
    flags: tuple[str, ...] = ()
    wipe: bool = False
    incidents: tuple[str, ...] = ()
    """Validated incident references every stored file is linked to (``--incident``)."""
    linked_by: str | None = None
    """The person who named the incidents, and their role(s), as the link events record them."""
    linked_by_role: str | None = None


@dataclass(frozen=True)
class FileOutcome:
    source_path: str
    status: Status
    evidence_id: str | None = None
    sha256: str | None = None
    size: int | None = None
    media_type: str | None = None
    reason: str | None = None
    flags: tuple[str, ...] = ()
    wiped: bool = False

    def as_record(self) -> dict[str, object]:
        return {
            "evidence_id": self.evidence_id,
            "source_path": self.source_path,
            "sha256": self.sha256,
            "size": self.size,
            "media_type": self.media_type,
            "flags": list(self.flags),
            "wiped": self.wiped,
        }


ORPHANED_OBJECT = (
    "encrypted upload that no item references, left by a run that was interrupted or that lost the "
    "race to store the same file to another run: unreadable (its key was never stored), and no item "
    "misses it; it is locked like all evidence and may be deleted once its lock expires"
)
RECOVERED_UPLOAD = "upload an interrupted run left unfinished, aborted by this run: nothing of it remains"


@dataclass(frozen=True)
class IngestReport:
    device_serial: str
    outcomes: tuple[FileOutcome, ...]
    recovered_uploads: tuple[str, ...] = ()
    """Keys of uploads interrupted runs on this station left open, aborted by this run's recovery."""
    orphaned_objects: tuple[str, ...] = ()
    """Keys of committed objects no manifest references (see :data:`ORPHANED_OBJECT`), as the
    station's journal knows them: every run reports them until a storage admin deletes them."""
    counts: Mapping[str, int] = field(default_factory=dict)

    def by_status(self, *statuses: Status) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status in statuses]

    def as_json(self) -> dict[str, object]:
        """The ``evidence ingest --json`` document: every device entry lands in exactly one list;
        deferred and failed files are in ``rejected`` (they stayed on the device) with the reason,
        prefixed ``deferred:`` or ``failed:``. A plain reason is a deliberate, final refusal (a link,
        a special file); a failed entry (unreadable, a path too long for the OS, a storage failure)
        makes the run incomplete. ``orphaned_objects`` and ``recovered_uploads`` are about the
        station's vault uploads, not this device's files."""
        return {
            "ingested": [o.as_record() for o in self.by_status("ingested")],
            "duplicates": [o.as_record() for o in self.by_status("duplicate")],
            "rejected": [
                {
                    "source_path": o.source_path,
                    "reason": f"{o.status}: {o.reason}" if o.status != "rejected" else o.reason,
                }
                for o in self.by_status("rejected", "deferred", "failed")
            ],
            "orphaned_objects": [{"key": key, "what": ORPHANED_OBJECT} for key in self.orphaned_objects],
            "recovered_uploads": [{"key": key, "what": RECOVERED_UPLOAD} for key in self.recovered_uploads],
        }

    @property
    def complete(self) -> bool:
        return not self.by_status("failed")


def resolve_device(
    settings: Settings,
    device_dir: Path,
    *,
    serial: str | None,
    officer: str | None,
    wipe: bool = False,
    incidents: Sequence[str] = (),
    linked_by: str | None = None,
) -> DeviceContext:
    """Serial from the option, else the folder name the dock mounted the device under; officer from
    the option, else the registry. An unregistered device is still ingested, flagged for a person.
    Incidents to link are validated, and the linking person's role checked, before any file is read."""
    refs = tuple(
        dict.fromkeys(parse_incident_ref(raw, settings.incident_ref_pattern).value for raw in incidents)
    )
    actor = None
    if refs:
        actor = UserDirectory.load(settings.users_file).resolve(linked_by or settings.user)
        actor.require("link")
    registry = DeviceRegistry.load(settings.device_registry)
    flags: list[str] = []
    if serial is None:
        serial = device_dir.resolve().name
        try:
            require_identifier(serial, "device serial")
        except InvalidInput:
            serial, flags = UNIDENTIFIED_SERIAL, [UNKNOWN_DEVICE]
    else:
        require_identifier(serial, "device serial")
    record = registry.lookup(serial)
    if record is None and UNKNOWN_DEVICE not in flags:
        flags.append(UNKNOWN_DEVICE)
    if officer is not None:
        require_identifier(officer, "officer id")
    elif record is not None:
        officer = record.officer_id
    return DeviceContext(
        settings.station_id,
        serial,
        officer,
        tuple(flags),
        wipe,
        incidents=refs,
        linked_by=actor.user_id if actor else None,
        linked_by_role=actor.role if actor else None,
    )


def skipped_outcomes(scan: DeviceScan) -> list[FileOutcome]:
    return (
        [FileOutcome(s.relative, "rejected", reason=s.reason) for s in scan.rejected]
        + [
            FileOutcome(s.relative, "deferred", reason=s.reason + "; will be ingested on the next run")
            for s in scan.deferred
        ]
        + [FileOutcome(s.relative, "failed", reason=s.reason + "; left on the device") for s in scan.failed]
    )


def ingest_file(
    vault: Vault, item: DeviceFile, context: DeviceContext, catalog: Catalog | None = None
) -> FileOutcome:
    """Store one device file and verify it; wipe it only after that. Storage errors propagate (the
    caller retries or reports the file failed, and it stays on the device). The catalog is told
    about the item (new or duplicate) but cannot fail its ingest: the vault already holds it, and
    ``evidence catalog rebuild`` indexes what a failing catalog missed. Links to the incidents named
    at ingest are written first; if one cannot be (storage failure), the file is reported failed and
    stays on the device, and the re-run finds it stored and links it then.

    A file the station stored from this device before, unchanged, is confirmed by its local hash and
    not uploaded again (``flows.redock``); every other file is stored as usual."""
    memory = device_memory(vault)
    stored = recognise_redocked(vault, item, context.device_serial, memory) if memory is not None else None
    reason = CONFIRMED_LOCALLY
    if stored is None:
        reason = None
        stored_or_not = _store(vault, item, context)
        if isinstance(stored_or_not, FileOutcome):
            return stored_or_not
        stored = stored_or_not
        if memory is not None:  # a confirmed re-dock is remembered already, exactly so
            remember_stored(memory, context.device_serial, item, stored)
    outcome = FileOutcome(
        source_path=item.relative,
        status="duplicate" if stored.duplicate else "ingested",
        evidence_id=stored.evidence_id,
        sha256=stored.sha256,
        size=stored.size,
        media_type=stored.media_type,
        reason=reason,
        flags=stored.manifest.flags,
    )
    if context.incidents:
        link_at_ingest(
            vault,
            catalog,
            stored.evidence_id,
            context.incidents,
            actor=context.linked_by or context.station_id,
            role=context.linked_by_role or "ingest-station",
        )
    note_item(vault, catalog, stored.manifest)
    if context.wipe:
        outcome = wipe_verified(item, outcome)
        if outcome.wiped and memory is not None:
            memory.forget_file(context.device_serial, item.relative)  # nothing left there to recognise
    return outcome


def _store(vault: Vault, item: DeviceFile, context: DeviceContext) -> StoredItem | FileOutcome:
    """The usual path: metadata, thumbnail, and one read through hash and encryption into the vault.
    A file that cannot be read now is its ``deferred`` or ``failed`` outcome."""
    try:
        fd = open_device_file(item)
    except FileChanged as err:
        return FileOutcome(item.relative, "deferred", reason=f"{err}; will be ingested on the next run")
    except OSError as err:
        return FileOutcome(item.relative, "failed", reason=f"cannot be read: {err.strerror or err}")
    with os.fdopen(fd, "rb", buffering=0) as source:
        # parsers read through the already-open descriptor, so a path swapped after open is not followed
        by_descriptor = Path(f"/proc/self/fd/{fd}") if sys.platform == "linux" else item.path
        media = extract_media_info(by_descriptor)
        thumbnail = make_thumbnail(by_descriptor, media)
        source.seek(0)
        original_name, original_name_b64 = original_name_fields(item.path.name)
        provenance = Provenance(
            station_id=context.station_id,
            device_serial=context.device_serial,
            officer_id=context.officer_id,
            source_path=item.relative,
            original_name=original_name,
            original_name_b64=original_name_b64,
            flags=context.flags,
        )
        try:
            return vault.store_stream(
                source,
                media=media,
                thumbnail=thumbnail,
                provenance=provenance,
                before_commit=lambda: ensure_unchanged(item, os.fstat(fd)),
            )
        except FileChanged as err:
            return FileOutcome(item.relative, "deferred", reason=f"{err}; will be ingested on the next run")


def wipe_verified(item: DeviceFile, outcome: FileOutcome) -> FileOutcome:
    """Remove a device file whose stored copy was verified: only if it is still exactly the file
    that was read (same inode, size and mtime), never through a link."""
    try:
        remove_device_file(item)
    except FileChanged as err:
        return _with(outcome, reason=f"kept on device: it {err} after it was stored")
    except OSError as err:
        return _with(outcome, reason=f"stored and verified, but could not be wiped: {err.strerror or err}")
    return _with(outcome, wiped=True)


def failed_outcome(item: DeviceFile, error: BaseException) -> FileOutcome:
    message = str(error) if isinstance(error, EvidenceError) else f"{type(error).__name__}: {error}"
    return FileOutcome(item.relative, "failed", reason=f"{message}; left on the device")


def build_report(
    context: DeviceContext, outcomes: Iterable[FileOutcome], **extra: tuple[str, ...]
) -> IngestReport:
    ordered = tuple(sorted(outcomes, key=lambda o: o.source_path))
    counts: dict[str, int] = {}
    for o in ordered:
        counts[o.status] = counts.get(o.status, 0) + 1
    return IngestReport(context.device_serial, ordered, counts=counts, **extra)


def _with(outcome: FileOutcome, **changes: object) -> FileOutcome:
    return FileOutcome(**(asdict(outcome) | changes))  # type: ignore[arg-type]
