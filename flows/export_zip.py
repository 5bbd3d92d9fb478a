"""An incident's export as one download: the BagIt bag of ``flows/export.py`` inside a zip, streamed.

The portal cannot hand a browser a folder, and building the bag on the server first would need as
much private disk as the incident's videos, keep decrypted evidence there, and leave the person
waiting minutes for the first byte. So the zip is written as it is sent, in constant memory
(``zipfile`` on a stream it cannot seek: each entry's CRC and sizes follow its data in a data
descriptor; ZIP64 sizes for an entry from 1 GiB). The checks are those of the directory export, in an
order that fits a stream (docs/access.md §3, "Export as a download"):

1. before anything is sent: the role, the purpose, the incident's items from the catalog, and for each
   item its chain (intact, not shorter than the catalog saw, linking it to the incident now) and its
   manifest against its ingest event; any failure refuses the export, and nothing is recorded;
2. then the ``export`` event on every item's chain, naming the purpose and the session: before a
   plaintext byte leaves;
3. then each original, decrypted segment by segment (each authenticated) and hashed as it goes; its
   last piece is sent only after the SHA-256 of the whole matched the one taken at ingest. On a
   mismatch the stream stops with an error: the client holds a zip without its central directory,
   which no tool opens as a complete archive, and the failure is logged;
4. last, each item's custody report (it includes the export event), the tag files, and the zip's
   central directory: a zip that ends is a complete, consistent bag.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from evidence.access import Actor
from evidence.errors import NotFound
from evidence.ids import require_evidence_id
from evidence.incident import IncidentRef
from evidence.manifest import ItemDetails
from flows.custody_report import custody_report
from flows.export import ExportedItem, bag_info, report_files, safe_file_name, tag_files
from flows.retrieval import (
    clean_purpose,
    incident_items,
    naming_errors,
    record_access,
    verify_for_release,
)
from storage.vault import Vault, VerifiedItem

if TYPE_CHECKING:
    from storage.catalog import Catalog

log = logging.getLogger(__name__)

ZIP64_FROM = zipfile.ZIP64_LIMIT // 2
"""Entries from 1 GiB get ZIP64 sizes (``zipfile`` must know before the data; it would decide so near 2 GiB)."""


@dataclass(frozen=True)
class ZipExport:
    bag_name: str
    """The bag's folder inside the zip; the zip is ``<bag_name>.zip``."""
    items: tuple[ExportedItem, ...]
    chunks: Iterator[bytes]
    """The zip, to be sent as it is produced; raises (after logging) if an original fails its check."""


def export_incident_zip(
    vault: Vault,
    catalog: Catalog,
    incident: IncidentRef,
    actor: Actor,
    purpose: str | None,
    *,
    details: Mapping[str, str],
) -> ZipExport:
    """Check every item and record the export (steps 1 and 2 above), and return the zip to stream."""
    actor.require("export")
    stated = clean_purpose(purpose, required=True, name="the purpose field")
    assert stated is not None
    found = incident_items(catalog, incident)
    ids = tuple(dict.fromkeys(require_evidence_id(i) for i in found.evidence_ids))
    if not ids:
        raise NotFound(f"no evidence items to export for incident {incident}")
    started = datetime.now(UTC)
    bag_name = safe_file_name(f"{incident.value}-export-{started:%Y%m%dT%H%M%SZ}".encode())
    checked: list[tuple[VerifiedItem, ItemDetails, ExportedItem]] = []
    for evidence_id in ids:
        with naming_errors(evidence_id):
            item = verify_for_release(
                vault, evidence_id, expected_length=found.custody_lengths.get(evidence_id), incident=incident
            )
            sealed = vault.details(item.manifest)
            name = safe_file_name(base64.b64decode(sealed.original_name_b64))
            entry = ExportedItem(evidence_id, f"data/{evidence_id}/{name}", item.manifest.size, sealed.sha256)
            checked.append((item, sealed, entry))
    recorded = {"incident": incident.value, "purpose": stated, "bag": bag_name, **details}
    for item, _, entry in checked:
        with naming_errors(entry.evidence_id):
            record_access(vault, catalog, item, "export", actor, recorded)
    log.info("export started", extra={"incident": incident.value, "items": len(checked), "bag": bag_name})
    chunks = _bag_zip(vault, incident, actor, stated, bag_name, started, checked)
    return ZipExport(bag_name, tuple(entry for _, _, entry in checked), chunks)


def _bag_zip(
    vault: Vault,
    incident: IncidentRef,
    actor: Actor,
    purpose: str,
    bag_name: str,
    started: datetime,
    checked: list[tuple[VerifiedItem, ItemDetails, ExportedItem]],
) -> Iterator[bytes]:
    sink = _Outgoing()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
    try:
        yield from _bag_entries(vault, archive, sink, incident, actor, purpose, bag_name, started, checked)
    except BaseException as failure:
        if isinstance(failure, Exception):
            log.error(
                "export aborted part-way: the zip was cut off",
                extra={"incident": incident.value, "bag": bag_name, "problem": str(failure)},
            )
        # Nothing written from here on leaves: the open entry was closed on the way out, and closing
        # the archive writes the central directory, which would make what was sent look complete.
        # Both went or go only into the abandoned sink, to free them.
        sink.abandon()
        with contextlib.suppress(Exception):
            archive.close()
        raise
    log.info("export finished", extra={"incident": incident.value, "items": len(checked), "bag": bag_name})


def _bag_entries(
    vault: Vault,
    archive: zipfile.ZipFile,
    sink: _Outgoing,
    incident: IncidentRef,
    actor: Actor,
    purpose: str,
    bag_name: str,
    started: datetime,
    checked: list[tuple[VerifiedItem, ItemDetails, ExportedItem]],
) -> Iterator[bytes]:
    stamp = (started.year, started.month, started.day, started.hour, started.minute, started.second)
    payload: dict[str, tuple[str, int]] = {}
    for item, _, entry in checked:
        with naming_errors(entry.evidence_id):
            original = zipfile.ZipInfo(f"{bag_name}/{entry.path}", date_time=stamp)
            original.file_size = entry.size
            with archive.open(original, "w", force_zip64=entry.size >= ZIP64_FROM) as out:
                pending: bytes | None = None
                for piece in vault.read_original(item.manifest):  # raises at its end on a wrong SHA-256
                    if pending is not None:
                        out.write(pending)
                        yield from sink.drain()
                    pending = piece
                if pending is not None:
                    out.write(pending)
            yield from sink.drain()
            payload[entry.path] = (entry.sha256, entry.size)
    reports: dict[str, bytes] = {}
    for item, sealed, entry in checked:
        with naming_errors(entry.evidence_id):
            report = custody_report(vault, item, sealed, incident=incident, exported_as=entry.path)
            reports |= report_files(entry.evidence_id, report)
    for relative, body in reports.items():
        _add(archive, f"{bag_name}/{relative}", body, stamp)
        payload[relative] = (_sha256(body), len(body))
    described = bag_info(
        vault, incident, actor, purpose, bag_name, started, item_count=len(checked), payload=payload
    )
    for name, body in tag_files(payload, described).items():
        _add(archive, f"{bag_name}/{name}", body, stamp)
    archive.close()
    yield from sink.drain()


def _add(
    archive: zipfile.ZipFile, name: str, body: bytes, stamp: tuple[int, int, int, int, int, int]
) -> None:
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_DEFLATED  # reports and tag files are text
    archive.writestr(info, body)


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class _Outgoing(io.RawIOBase):
    """Where ``zipfile`` writes: bytes collected until the next :meth:`drain` hands them on. Not
    seekable, so ``zipfile`` writes data descriptors and never goes back."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._abandoned = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._abandoned:
            self._pieces.append(bytes(data))
        return len(data)

    def drain(self) -> Iterator[bytes]:
        pieces, self._pieces = self._pieces, []
        if pieces:
            yield b"".join(pieces)

    def abandon(self) -> None:
        """Drop what is pending and anything ``zipfile`` writes later (as it is garbage-collected)."""
        self._abandoned = True
        self._pieces = []
