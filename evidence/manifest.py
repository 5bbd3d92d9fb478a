"""Item manifests, format v1 (``docs/vault-layout.md`` §4).

A manifest has a clear part, readable by anyone with read access to the vault (storage admins, fixity
checks, retention), and a sealed part, encrypted with the item's data key. The clear part holds only
operational facts: ingest time, station, device serial, officer id, sizes, media type, recording time
(retention counts from it) and flags. The original file name, path, SHA-256 of the original and all
extracted metadata (GPS, camera serials, free text) are sealed. Pure functions; no I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from evidence import stream
from evidence.errors import IntegrityError
from evidence.ids import require_evidence_id

MANIFEST_FORMAT = "evidence-pipeline/manifest/v1"
DETAILS_FORMAT = "evidence-pipeline/details/v1"


@dataclass(frozen=True)
class StoredObject:
    key: str
    version_id: str
    size: int
    """Bytes stored (ciphertext)."""
    sha256: str
    """Hex SHA-256 of the stored bytes, computed while sending them; fixity checks need no key."""
    checksum: str | None
    """The store's own checksum as reported at commit (``storage.base.ObjectInfo.checksum``)."""


@dataclass(frozen=True)
class Manifest:
    evidence_id: str
    ingested_at: datetime
    station_id: str
    device_serial: str
    officer_id: str | None
    media_type: str
    kind: str
    recorded_at: str | None
    """ISO 8601 as the device stated it (with offset when known)."""
    size: int
    """Size of the original in bytes."""
    segment_size: int
    content: StoredObject
    thumbnail: StoredObject | None
    recipients: tuple[Mapping[str, str], ...]
    """The item's data key wrapped for each keyring (``docs/format.md`` §5)."""
    sealed_details: str
    """Base64 of a v1 stream (``docs/format.md`` §3) holding :class:`ItemDetails` as JSON."""
    flags: tuple[str, ...] = ()
    format: str = field(default=MANIFEST_FORMAT)


@dataclass(frozen=True)
class ItemDetails:
    """The sealed part: what only a key holder may see."""

    sha256: str
    size: int
    original_name: str
    """Display form (undecodable bytes shown as \\xNN escapes)."""
    original_name_b64: str
    """The name's exact bytes, so an export can restore a non-UTF-8 name faithfully."""
    source_path: str
    """Path relative to the device root, display form."""
    media: Mapping[str, Any]
    """``evidence.media.MediaInfo.to_dict()``."""
    format: str = field(default=DETAILS_FORMAT)


def encode_manifest(manifest: Manifest) -> bytes:
    """Canonical JSON: sorted keys, no insignificant whitespace, ASCII only."""
    doc = asdict(manifest)
    doc["ingested_at"] = manifest.ingested_at.isoformat()
    doc["recipients"] = [dict(r) for r in manifest.recipients]
    doc["flags"] = list(manifest.flags)
    return _canonical(doc)


def load_record(data: bytes, what: str) -> dict[str, Any]:
    """Parse a stored JSON record strictly: an object, no NaN or Infinity, nesting within reason.
    Anything else is damage (or planted), reported as ``IntegrityError``, never a Python error."""
    try:
        doc = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as err:
        raise IntegrityError(f"{what} is damaged or not JSON: {str(err)[:100]}") from err
    if not isinstance(doc, dict):
        raise IntegrityError(f"{what} is damaged: a JSON {type(doc).__name__}, not an object")
    return doc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a record may hold")


def decode_manifest(data: bytes) -> Manifest:
    doc = load_record(data, "manifest")
    try:
        if doc.get("format") != MANIFEST_FORMAT:
            raise IntegrityError(f"unsupported manifest format {doc.get('format')!r}")
        thumb = doc["thumbnail"]
        return Manifest(
            evidence_id=require_evidence_id(doc["evidence_id"]),
            ingested_at=datetime.fromisoformat(doc["ingested_at"]),
            station_id=str(doc["station_id"]),
            device_serial=str(doc["device_serial"]),
            officer_id=doc["officer_id"],
            media_type=str(doc["media_type"]),
            kind=str(doc["kind"]),
            recorded_at=doc["recorded_at"],
            size=int(doc["size"]),
            segment_size=int(doc["segment_size"]),
            content=StoredObject(**doc["content"]),
            thumbnail=StoredObject(**thumb) if thumb else None,
            recipients=tuple(dict(r) for r in doc["recipients"]),
            sealed_details=str(doc["sealed_details"]),
            flags=tuple(doc["flags"]),
        )
    except IntegrityError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as err:
        raise IntegrityError(f"manifest is damaged or not a manifest: {err}") from err


def seal_details(data_key: bytes, details: ItemDetails) -> str:
    return base64.b64encode(stream.seal(data_key, _canonical(asdict(details)))).decode("ascii")


def open_details(data_key: bytes, manifest: Manifest) -> ItemDetails:
    try:
        sealed = base64.b64decode(manifest.sealed_details, validate=True)
    except ValueError as err:
        raise IntegrityError(f"sealed details of {manifest.evidence_id} are not valid base64") from err
    doc = load_record(stream.open_sealed(data_key, sealed), f"sealed details of {manifest.evidence_id}")
    try:
        if doc.get("format") != DETAILS_FORMAT:
            raise IntegrityError(f"unsupported details format {doc.get('format')!r}")
        return ItemDetails(**doc)
    except (ValueError, TypeError) as err:
        raise IntegrityError(f"sealed details of {manifest.evidence_id} are damaged: {err}") from err


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
