"""Investigator retrieval: whole and ranged reads of one item, thumbnails, and the checks and custody
records every read shares (the BagIt export is ``flows/export.py``).

Plain functions over the vault; the CLI (``flows/cli_retrieval.py``) parses and renders. Every function
checks the acting user's role itself, so no caller can forget to, and records each access as a custody
event *before* any plaintext is handed over: there is no unrecorded read through this program
(``docs/access.md`` says what only storage credentials can enforce).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from evidence.access import Actor
from evidence.custody import CustodyEvent
from evidence.errors import AlreadyExists, EvidenceError, IntegrityError, InvalidInput, NotFound
from evidence.ids import require_evidence_id
from evidence.incident import IncidentRef
from evidence.manifest import ItemDetails, Manifest, encode_manifest
from storage.vault import Vault

if TYPE_CHECKING:
    from evidence.settings import Settings
    from storage.catalog import Catalog

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


def clean_purpose(purpose: str | None, *, required: bool) -> str | None:
    """The stated reason for an access, as recorded: one printable line a court can read."""
    text = (purpose or "").strip()
    if not text:
        if required:
            raise InvalidInput("state why with --purpose (for example 'CPS disclosure, case file 3')")
        return None
    if len(text) > MAX_PURPOSE_LENGTH:
        raise InvalidInput(f"--purpose is {len(text)} characters; keep it under {MAX_PURPOSE_LENGTH}")
    if not text.isprintable():
        raise InvalidInput("--purpose must be one line of printable text")
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


# -- recording ------------------------------------------------------------------------------------


def record_access(
    vault: Vault,
    catalog: Catalog | None,
    evidence_id: str,
    type: str,
    actor: Actor,
    details: Mapping[str, Any],
) -> CustodyEvent:
    """Append a custody event for this access (catalog noted too). Imported late so a ranged `get`
    does not pay for the catalog's database layer at start-up."""
    from flows.records import record

    return record(vault, catalog, evidence_id, type, actor=actor.user_id, role=actor.role, details=details)


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
    manifest = vault.manifest(evidence_id)
    if out_path.exists():
        raise AlreadyExists(f"{out_path} already exists; choose another --out")
    record_access(vault, catalog, evidence_id, "access", actor, {"action": "get", "purpose": stated})
    vault.export_original(manifest, out_path, on_bytes=on_bytes)
    return manifest


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
    manifest = vault.manifest(evidence_id)
    wanted = parse_byte_range(range_text, manifest.size)
    if isinstance(sink, Path) and sink.exists():
        raise AlreadyExists(f"{sink} already exists; choose another --out")
    record_access(
        vault,
        catalog,
        evidence_id,
        "access",
        actor,
        {"action": "get", "purpose": stated, "range": wanted.label},
    )
    pieces = vault.read_range(manifest, wanted.start, wanted.stop)
    if isinstance(sink, Path):
        write_new_file(sink, pieces)
    else:
        for piece in pieces:
            sink.write(piece)
        sink.flush()
    return wanted


def write_new_file(destination: Path, chunks: Iterable[bytes]) -> None:
    """Write to a hidden temporary file, then link it into place: a failure leaves nothing at
    ``destination`` and an existing file is never replaced."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        with partial.open("xb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(partial, destination)
        except FileExistsError:
            raise AlreadyExists(f"{destination} already exists; choose another --out") from None
    finally:
        partial.unlink(missing_ok=True)


# -- items of an incident -------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentItems:
    incident: IncidentRef
    evidence_ids: tuple[str, ...]
    custody_lengths: Mapping[str, int]
    """Events the catalog has seen per item: a chain found shorter lost events off its end."""


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
    )


@dataclass(frozen=True)
class CheckedItem:
    """An item whose chain verified and links it to the incident, with what the reports need."""

    manifest: Manifest
    details: ItemDetails
    manifest_sha256: str


def check_item(
    vault: Vault, evidence_id: str, incident: IncidentRef, *, expected_length: int | None = None
) -> CheckedItem:
    """Refuse an item the catalog names but the vault does not back up: a broken custody chain, no
    current link to the incident by the chain itself, or a manifest other than the one ingest recorded.
    The catalog is only an index; what goes to court must stand on the vault alone."""
    manifest = vault.manifest(evidence_id)
    chain = vault.custody.verify(evidence_id, expected_length=expected_length)
    chain.raise_if_broken()
    if incident.value not in linked_incidents(chain.events):
        raise IntegrityError(
            f"{evidence_id} is not linked to incident {incident} by its custody chain (links minus "
            "unlinks); the catalog is out of step with the vault: rebuild it, or link the item first"
        )
    ingest = chain.events[0].details
    manifest_sha256 = hashlib.sha256(encode_manifest(manifest)).hexdigest()
    if ingest.get("manifest_sha256") != manifest_sha256 or ingest.get("content_sha256") != (
        manifest.content.sha256
    ):
        raise IntegrityError(
            f"{evidence_id}: the stored manifest is not the one its ingest custody event recorded"
        )
    return CheckedItem(manifest, vault.details(manifest), manifest_sha256)


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
    written: list[tuple[str, Path]] = []
    missing: list[str] = []
    for evidence_id in dict.fromkeys(require_evidence_id(i) for i in evidence_ids):
        with naming_errors(evidence_id):
            item = check_item(
                vault, evidence_id, incident, expected_length=(expected_lengths or {}).get(evidence_id)
            )
            if item.manifest.thumbnail is None:
                missing.append(evidence_id)
                continue
            target = out_dir / f"{evidence_id}.jpg"
            if target.exists():
                raise AlreadyExists(f"{target} already exists; choose another --out")
            record_access(
                vault,
                catalog,
                evidence_id,
                "access",
                actor,
                {"action": "thumbs", "purpose": stated},
            )
            preview = vault.thumbnail(item.manifest)
            assert preview is not None
            write_new_file(target, [preview])
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
