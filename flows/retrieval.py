"""Investigator retrieval: whole and ranged reads of one item, thumbnails, and the checks and custody
records every read shares (the BagIt export is ``flows/export.py``).

Plain functions over the vault; the CLI (``cli/retrieval.py``) parses and renders. Every function
checks the acting user's role itself, so no caller can forget to, and records each access as a custody
event *before* any plaintext is handed over: there is no unrecorded read through this program
(``docs/access.md`` says what only storage credentials can enforce).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from evidence.access import Actor
from evidence.custody import CustodyEvent
from evidence.errors import AccessDenied, EvidenceError, IntegrityError, InvalidInput, NotFound
from evidence.ids import require_evidence_id
from evidence.incident import IncidentRef
from evidence.manifest import Manifest
from storage.vault import PRIVATE_DIR_MODE, Vault, VerifiedItem, write_new_private_file

if TYPE_CHECKING:
    from evidence.settings import Settings
    from storage.catalog import Catalog, CatalogItem

MAX_PURPOSE_LENGTH = 500
_RANGE = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)


# -- small pure pieces ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ByteRange:
    """Plaintext bytes ``[start, stop)``. People write ranges HTTP-style, last byte included."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def label(self) -> str:
        """The inclusive form people typed (``0-499`` is the first 500 bytes)."""
        return f"{self.start}-{self.stop - 1}"


def parse_byte_range(text: str, size: int) -> ByteRange:
    """``START-END`` (both inclusive, as HTTP ``Range``), ``START-`` (to the end) or ``-N`` (last N
    bytes). An END past the item's end is cut to it; a START at or past the end is refused."""
    match = _RANGE.fullmatch(text.strip())
    if match is None or match.group(0) == "-":
        raise InvalidInput(
            f"byte range {text!r} is not START-END, START- or -N (for example 0-1048575: the first MiB, "
            "both ends included)"
        )
    first, last = match.groups()
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise InvalidInput(f"byte range {text!r} asks for the last 0 bytes")
        start, stop = max(size - suffix, 0), size
    else:
        start = int(first)
        stop = size if not last else min(int(last) + 1, size)
        if last and int(last) < start:
            raise InvalidInput(f"byte range {text!r} ends before it starts")
    if start >= size or start >= stop:
        raise InvalidInput(
            f"byte range {text!r} starts at or past the end: the item has {size} bytes "
            f"(positions 0 to {size - 1})"
            if size
            else f"byte range {text!r} cannot be read: the item is empty"
        )
    return ByteRange(start, stop)


def clean_purpose(purpose: str | None, *, required: bool, name: str = "--purpose") -> str | None:
    """The stated reason for an access, as recorded: one printable line a court can read. ``name``
    is what the person filled in (the CLI's option, the portal's form field)."""
    text = (purpose or "").strip()
    if not text:
        if required:
            raise InvalidInput(f"state why with {name} (for example 'CPS disclosure, case file 3')")
        return None
    if len(text) > MAX_PURPOSE_LENGTH:
        raise InvalidInput(f"{name} is {len(text)} characters; keep it under {MAX_PURPOSE_LENGTH}")
    if not text.isprintable():
        raise InvalidInput(f"{name} must be one line of printable text")
    return text


def linked_incidents(events: Iterable[CustodyEvent]) -> set[str]:
    """Incidents an item is linked to now, by its own chain: every link, minus later unlinks."""
    linked: set[str] = set()
    for event in events:
        incident = event.details.get("incident")
        if event.type == "link" and isinstance(incident, str):
            linked.add(incident)
        elif event.type == "unlink" and isinstance(incident, str):
            linked.discard(incident)
    return linked


# -- verifying and recording ----------------------------------------------------------------------


def verify_for_release(
    vault: Vault,
    evidence_id: str,
    *,
    expected_length: int | None = None,
    incident: IncidentRef | None = None,
) -> VerifiedItem:
    """The one check every read path (``get``, ranged ``get``, ``thumbs``, ``show``, ``export``; the
    investigators' web service is to use it too) makes before it records an access and releases
    anything decrypted: the
    custody chain verifies and is not shorter than anyone saw it (``expected_length``: the catalog's
    count), and the manifest is the one the ingest event recorded (:meth:`Vault.verify_item`). For a
    read on an incident's behalf, the chain itself must link the item to that incident now: the
    catalog is only an index, and what goes to court must stand on the vault alone.

    Content and thumbnails are then authenticated while they are decrypted, against the hashes in
    that manifest; a whole original is also checked against the SHA-256 taken at ingest."""
    item = vault.verify_item(evidence_id, expected_length=expected_length)
    if incident is not None and incident.value not in linked_incidents(item.events):
        raise IntegrityError(
            f"{evidence_id} is not linked to incident {incident} by its custody chain (links minus "
            "unlinks); the catalog is out of step with the vault: rebuild it, or link the item first"
        )
    return item


def known_length(catalog: Catalog | None, evidence_id: str) -> int | None:
    """Custody events the catalog has seen for the item, if there is a catalog that knows it."""
    if catalog is None:
        return None
    from flows.records import known_lengths

    return known_lengths(catalog, [evidence_id]).get(evidence_id)


def record_access(
    vault: Vault,
    catalog: Catalog | None,
    item: VerifiedItem,
    type: str,
    actor: Actor,
    details: Mapping[str, Any],
) -> CustodyEvent:
    """Append a custody event for this access to a chain just verified (catalog noted too). The
    append refuses a chain that has since become shorter than the verified one. Imported late so a
    ranged `get` does not pay for the catalog's database layer at start-up."""
    from flows.records import record

    return record(
        vault,
        catalog,
        item.manifest.evidence_id,
        type,
        actor=actor.user_id,
        role=actor.role,
        details=details,
        expected_length=len(item.events),
    )


@contextmanager
def naming_errors(evidence_id: str) -> Iterator[None]:
    """Put the item's evidence id in front of any project error, so a failure in a bag of a hundred
    items says which one."""
    try:
        yield
    except EvidenceError as error:
        if evidence_id in str(error):
            raise
        raise type(error)(f"{evidence_id}: {error}") from error


# -- decrypted output on this machine -------------------------------------------------------------


def refuse_existing_output(path: Path) -> None:
    """An output path must be new: never replace a file, and never follow a link (a dangling one
    included) to wherever it points. Checked before anything is recorded or decrypted."""
    if os.path.lexists(path):
        what = "is a link" if path.is_symlink() else "already exists"
        raise InvalidInput(f"{path} {what}; give a new file as --out")


def prepare_output_folder(folder: Path) -> None:
    """A folder for decrypted files: created private if new; never a link, never a file."""
    if folder.is_symlink() or (os.path.lexists(folder) and not folder.is_dir()):
        raise InvalidInput(f"{folder} is a link or a file; give a folder as --out")
    folder.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)


# -- get ------------------------------------------------------------------------------------------


def get_original(
    vault: Vault,
    evidence_id: str,
    actor: Actor,
    out_path: Path,
    *,
    purpose: str | None = None,
    catalog: Catalog | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Manifest:
    """Decrypt one item to ``out_path``; nothing appears there unless the SHA-256 taken at ingest matched."""
    require_evidence_id(evidence_id)
    actor.require("get")
    stated = clean_purpose(purpose, required=False)
    refuse_existing_output(out_path)
    item = verify_for_release(vault, evidence_id, expected_length=known_length(catalog, evidence_id))
    record_access(vault, catalog, item, "access", actor, {"action": "get", "purpose": stated})
    vault.export_original(item.manifest, out_path, on_bytes=on_bytes)
    return item.manifest


def get_range(
    vault: Vault,
    evidence_id: str,
    actor: Actor,
    range_text: str,
    sink: BinaryIO | Path,
    *,
    purpose: str | None = None,
    catalog: Catalog | None = None,
) -> ByteRange:
    """Plaintext bytes of ``range_text`` (see :func:`parse_byte_range`) to a stream or a new file,
    fetching only the segments that hold them. Each segment is authenticated (AES-GCM) before any of
    its bytes are written; the whole-file SHA-256 cannot be checked on part of a file."""
    require_evidence_id(evidence_id)
    actor.require("get")
    stated = clean_purpose(purpose, required=False)
    if isinstance(sink, Path):
        refuse_existing_output(sink)
    item = verify_for_release(vault, evidence_id, expected_length=known_length(catalog, evidence_id))
    wanted = parse_byte_range(range_text, item.manifest.size)
    record_access(
        vault,
        catalog,
        item,
        "access",
        actor,
        {"action": "get", "purpose": stated, "range": wanted.label},
    )
    pieces = vault.read_range(item.manifest, wanted.start, wanted.stop)
    if isinstance(sink, Path):
        write_new_private_file(sink, pieces)
    else:
        for piece in pieces:
            sink.write(piece)
        sink.flush()
    return wanted


# -- show -----------------------------------------------------------------------------------------


def describe_item(
    vault: Vault, evidence_id: str, actor: Actor, *, catalog: Catalog | None = None
) -> dict[str, object]:
    """An item's manifest, and its sealed details (original name, device path, original SHA-256,
    capture metadata with any location) for a person whose role may read evidence, on a machine
    holding a key that opens them. Verified like any read, and recorded before it is returned."""
    require_evidence_id(evidence_id)
    actor.require("show")
    item = verify_for_release(vault, evidence_id, expected_length=known_length(catalog, evidence_id))
    manifest = item.manifest
    doc: dict[str, object] = {
        "evidence_id": manifest.evidence_id,
        "ingested_at": manifest.ingested_at.isoformat(),
        "station": manifest.station_id,
        "device": manifest.device_serial,
        "officer": manifest.officer_id,
        "media_type": manifest.media_type,
        "recorded_at": manifest.recorded_at,
        "size": manifest.size,
        "flags": list(manifest.flags),
        "content_object": manifest.content.key,
        "thumbnail_object": manifest.thumbnail.key if manifest.thumbnail else None,
        "keyrings": [r.get("type") for r in manifest.recipients],
    }
    sealed: dict[str, object] | None = None
    if not actor.may("get"):
        doc["sealed"] = f"sealed: the {actor.role} role may not read evidence details"
    else:
        try:
            details = vault.details(manifest)
        except AccessDenied:
            doc["sealed"] = "sealed: this machine holds no key that can open it"
        else:
            sealed = {
                "original_name": details.original_name,
                "source_path": details.source_path,
                "sha256": details.sha256,
                "metadata": dict(details.media),
            }
    record_access(
        vault, catalog, item, "access", actor, {"action": "show", "sealed_details": sealed is not None}
    )
    return doc | (sealed or {})


# -- items of an incident -------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentItems:
    incident: IncidentRef
    evidence_ids: tuple[str, ...]
    custody_lengths: Mapping[str, int]
    """Events the catalog has seen per item: a chain found shorter lost events off its end."""
    catalogued: tuple[CatalogItem, ...] = ()
    """What the catalog says of each item (clear facts only), in time order."""


def incident_items(catalog: Catalog, incident: IncidentRef) -> IncidentItems:
    items = catalog.items(incident=incident.value)
    if not items:
        raise NotFound(
            f"no evidence is linked to incident {incident} in the catalog (if items were linked on another "
            "machine, rebuild the catalog from the vault)"
        )
    return IncidentItems(
        incident,
        tuple(item.evidence_id for item in items),
        {item.evidence_id: item.custody_length for item in items},
        tuple(items),
    )


# -- thumbnails -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThumbnailReport:
    out_dir: Path
    written: tuple[tuple[str, Path], ...]
    without_thumbnail: tuple[str, ...]


def export_thumbnails(
    vault: Vault,
    evidence_ids: Sequence[str],
    incident: IncidentRef,
    actor: Actor,
    out_dir: Path,
    *,
    purpose: str | None = None,
    catalog: Catalog | None = None,
    expected_lengths: Mapping[str, int] | None = None,
) -> ThumbnailReport:
    """Decrypted previews as ``<out>/<evidence-id>.jpg`` for a quick look. Items are checked as for an
    export (chain intact and linked to the incident); an existing file is never replaced."""
    actor.require("thumbs")
    stated = clean_purpose(purpose, required=False)
    ids = tuple(dict.fromkeys(require_evidence_id(i) for i in evidence_ids))
    prepare_output_folder(out_dir)
    written: list[tuple[str, Path]] = []
    missing: list[str] = []
    for evidence_id in ids:
        with naming_errors(evidence_id):
            item = verify_for_release(
                vault,
                evidence_id,
                expected_length=(expected_lengths or {}).get(evidence_id),
                incident=incident,
            )
            if item.manifest.thumbnail is None:
                missing.append(evidence_id)
                continue
            target = out_dir / f"{evidence_id}.jpg"
            refuse_existing_output(target)
            record_access(vault, catalog, item, "access", actor, {"action": "thumbs", "purpose": stated})
            preview = vault.thumbnail(item.manifest)
            assert preview is not None
            write_new_private_file(target, [preview])
            written.append((evidence_id, target))
    return ThumbnailReport(out_dir, tuple(written), tuple(missing))


def thumbnails_for_incident(
    settings: Settings, incident: IncidentRef, actor: Actor, out_dir: Path, *, purpose: str | None = None
) -> ThumbnailReport:
    from flows.records import open_catalog

    actor.require("thumbs")
    catalog = open_catalog(settings)
    found = incident_items(catalog, incident)
    return export_thumbnails(
        Vault.open(settings),
        found.evidence_ids,
        incident,
        actor,
        out_dir,
        purpose=purpose,
        catalog=catalog,
        expected_lengths=found.custody_lengths,
    )
