"""Investigator retrieval: export an incident as a BagIt bag, ranged reads, thumbnails.

Plain functions over the vault; the CLI (``flows/cli_retrieval.py``) parses and renders. Every function
checks the acting user's role itself, so no caller can forget to, and records each access as a custody
event *before* any plaintext is handed over: there is no unrecorded read through this program
(``docs/access.md`` says what only storage credentials can enforce).

Bag layout (RFC 8493, BagIt 1.0)::

    <bag>/bagit.txt                          written last: a killed export leaves no complete-looking bag
    <bag>/bag-info.txt                       incident, exporter, time, purpose, item count, Payload-Oxum
    <bag>/manifest-sha256.txt                the SHA-256 of each original taken at ingest
    <bag>/tagmanifest-sha256.txt
    <bag>/data/<evidence-id>/<file name>     the original, decrypted and verified
    <bag>/data/reports/<evidence-id>.json    chain-of-custody report (machine-readable)
    <bag>/data/reports/<evidence-id>.html    the same for people

Reports live apart from the originals so no original name (``custody.json``, say) can collide with them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from evidence.access import Actor
from evidence.custody import ChainVerification, CustodyEvent
from evidence.errors import AlreadyExists, EvidenceError, IntegrityError, InvalidInput, NotFound
from evidence.ids import require_evidence_id
from evidence.incident import IncidentRef
from evidence.manifest import ItemDetails, Manifest, encode_manifest
from storage.vault import Vault

if TYPE_CHECKING:
    import jinja2

    from evidence.settings import Settings
    from storage.catalog import Catalog

log = logging.getLogger(__name__)

REPORT_FORMAT = "evidence-pipeline/custody-report/v1"
BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
REPORTS_DIR = "reports"
MAX_PURPOSE_LENGTH = 500
MAX_NAME_BYTES = 180
"""Room under the common 255-byte limit for the ``.<name>.partial-<pid>`` file written before rename."""
FALLBACK_NAME = "original"

# Characters Windows, macOS or exFAT refuse, path separators, and '%': BagIt 1.0 manifests escape '%',
# and validators disagree on decoding it, so a bag stays portable only without it.
_UNSAFE_CHARACTERS = frozenset('<>:"/\\|?*%')
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{n}" for n in range(10)} | {f"LPT{n}" for n in range(10)}
)
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


def safe_file_name(raw: bytes) -> str:
    """A name for an original that is safe to create on any common filesystem and to list in a BagIt
    manifest. The exact original bytes stay in the custody report; this is only where the file lands.

    Hostile names from a device (``../../x``, ``-rf``, ``.bashrc``, a right-to-left override that makes
    ``gpj.exe`` read as ``exe.jpg``, NUL, newlines) become plain, visible names.
    """
    text = unicodedata.normalize("NFC", raw.decode("utf-8", "replace"))
    text = "".join("_" if _unsafe(char) else char for char in text)
    text = " ".join(text.split())  # newlines and tabs are already gone; runs of spaces fold
    text = text.rstrip(". ")  # Windows drops trailing dots and spaces, so two names could merge
    if not text:
        return FALLBACK_NAME
    if text[0] in ".-":
        text = "_" + text
    if text.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    return _shorten(text, MAX_NAME_BYTES)


def _unsafe(char: str) -> bool:
    category = unicodedata.category(char)
    # C*: control, format (bidi overrides), surrogate, private use, unassigned; Zl/Zp: line breaks
    return char in _UNSAFE_CHARACTERS or category[0] == "C" or category in ("Zl", "Zp")


def _shorten(name: str, limit: int) -> str:
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension.encode("utf-8")) > 16:
        stem, extension = name, ""
    tail = "." + extension if extension else ""
    room = limit - len(tail.encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(". ")
    return (cut or FALLBACK_NAME) + tail


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


def _record(
    vault: Vault,
    catalog: Catalog | None,
    evidence_id: str,
    type: str,
    actor: Actor,
    details: Mapping[str, Any],
) -> CustodyEvent:
    # imported here so a ranged `get` does not pay for the catalog's database layer at start-up
    from flows.records import record

    return record(vault, catalog, evidence_id, type, actor=actor.user_id, role=actor.role, details=details)


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
    _record(vault, catalog, evidence_id, "access", actor, {"action": "get", "purpose": stated})
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
    _record(
        vault,
        catalog,
        evidence_id,
        "access",
        actor,
        {"action": "get", "purpose": stated, "range": wanted.label},
    )
    pieces = vault.read_range(manifest, wanted.start, wanted.stop)
    if isinstance(sink, Path):
        _write_new_file(sink, pieces)
    else:
        for piece in pieces:
            sink.write(piece)
        sink.flush()
    return wanted


def _write_new_file(destination: Path, chunks: Iterable[bytes]) -> None:
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


# -- export ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedItem:
    evidence_id: str
    path: str
    """Where the original is inside the bag (``data/<evidence-id>/<name>``)."""
    size: int
    sha256: str


@dataclass(frozen=True)
class ExportReport:
    bag: Path
    incident: str
    items: tuple[ExportedItem, ...]
    payload_bytes: int
    payload_files: int


def export_incident(
    settings: Settings,
    incident: IncidentRef,
    actor: Actor,
    purpose: str | None,
    out_dir: Path,
    *,
    on_bytes: Callable[[int], None] | None = None,
) -> ExportReport:
    """Everything the catalog links to ``incident``, checked against the vault and bagged."""
    from flows.records import open_catalog

    actor.require("export")
    clean_purpose(purpose, required=True)
    catalog = open_catalog(settings)
    found = incident_items(catalog, incident)
    return export_items(
        Vault.open(settings),
        found.evidence_ids,
        incident,
        actor,
        purpose,
        out_dir,
        catalog=catalog,
        expected_lengths=found.custody_lengths,
        on_bytes=on_bytes,
    )


def export_items(
    vault: Vault,
    evidence_ids: Sequence[str],
    incident: IncidentRef,
    actor: Actor,
    purpose: str | None,
    out_dir: Path,
    *,
    catalog: Catalog | None = None,
    expected_lengths: Mapping[str, int] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write a BagIt bag of these items at ``out_dir``, or nothing.

    The bag is built beside ``out_dir`` under ``<name>.partial-<random>`` and renamed into place only
    once every original matched its ingest SHA-256 and a standard validator (``bagit``) accepted the
    bag. Any failure removes the partial directory and raises, naming the item. Each item gets an
    ``export`` custody event once all of them verified, before its report is written, so the report
    a court reads includes the export that produced it.
    """
    actor.require("export")
    stated = clean_purpose(purpose, required=True)
    assert stated is not None
    ids = tuple(dict.fromkeys(require_evidence_id(i) for i in evidence_ids))
    if not ids:
        raise NotFound(f"no evidence items to export for incident {incident}")
    _refuse_non_empty(out_dir)
    out_dir = out_dir.absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.with_name(f"{out_dir.name}.partial-{secrets.token_hex(6)}")
    partial.mkdir(mode=0o700)  # decrypted evidence: nobody else on this machine reads it
    bag_name = out_dir.name
    started = datetime.now(UTC)
    log.info("export started", extra={"incident": incident.value, "items": len(ids)})
    try:
        checked: list[tuple[CheckedItem, ExportedItem]] = []
        for evidence_id in ids:
            with _naming(evidence_id):
                item = check_item(
                    vault, evidence_id, incident, expected_length=(expected_lengths or {}).get(evidence_id)
                )
                checked.append((item, _write_original(vault, item, partial, on_bytes)))
        payload: dict[str, tuple[str, int]] = {entry.path: (entry.sha256, entry.size) for _, entry in checked}
        details = {"incident": incident.value, "purpose": stated, "bag": bag_name}
        for item, entry in checked:
            with _naming(entry.evidence_id):
                _record(vault, catalog, entry.evidence_id, "export", actor, details)
                report = custody_report(vault, item, incident=incident, exported_as=entry.path)
                payload.update(_write_reports(partial, entry.evidence_id, report))
        total_bytes = sum(size for _, size in payload.values())
        _write_tag_files(
            partial,
            payload,
            bag_info={
                "Source-Organization": f"evidence-pipeline, station {vault.settings.station_id}",
                "External-Identifier": incident.value,
                "External-Description": f"Evidence exported for incident {incident.value}",
                "Bagging-Date": started.date().isoformat(),
                "Bagging-Time": started.isoformat(timespec="seconds"),
                "Contact-Name": actor.user_id,
                "Internal-Sender-Identifier": bag_name,
                "Internal-Sender-Description": stated,
                "Evidence-Item-Count": str(len(checked)),
                "Bag-Software-Agent": "evidence-pipeline",
                "Payload-Oxum": f"{total_bytes}.{len(payload)}",
            },
        )
        validate_bag(partial)
        _publish(partial, out_dir)
    except EvidenceError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise type(error)(f"{error} (export stopped; nothing was written at {out_dir})") from error
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("export finished", extra={"incident": incident.value, "items": len(checked)})
    return ExportReport(out_dir, incident.value, tuple(e for _, e in checked), total_bytes, len(payload))


@contextmanager
def _naming(evidence_id: str) -> Iterator[None]:
    """Put the item's evidence id in front of any project error, so a failure in a bag of a hundred
    items says which one."""
    try:
        yield
    except EvidenceError as error:
        if evidence_id in str(error):
            raise
        raise type(error)(f"{evidence_id}: {error}") from error


def _refuse_non_empty(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise AlreadyExists(f"{out_dir} exists and is not a folder; choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise AlreadyExists(f"{out_dir} is not empty; give a new or empty folder as --out")


def _write_original(
    vault: Vault, item: CheckedItem, bag: Path, on_bytes: Callable[[int], None] | None
) -> ExportedItem:
    evidence_id = item.manifest.evidence_id
    name = safe_file_name(base64.b64decode(item.details.original_name_b64))
    relative = f"data/{evidence_id}/{name}"
    vault.export_original(item.manifest, bag / relative, on_bytes=on_bytes)
    return ExportedItem(evidence_id, relative, item.manifest.size, item.details.sha256)


def _write_reports(bag: Path, evidence_id: str, report: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    folder = bag / "data" / REPORTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, tuple[str, int]] = {}
    for suffix, body in (
        ("json", (json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()),
        ("html", render_custody_html(report).encode("utf-8")),
    ):
        relative = f"data/{REPORTS_DIR}/{evidence_id}.{suffix}"
        with (bag / relative).open("xb") as out:
            out.write(body)
        written[relative] = (hashlib.sha256(body).hexdigest(), len(body))
    return written


def _write_tag_files(bag: Path, payload: Mapping[str, tuple[str, int]], bag_info: Mapping[str, str]) -> None:
    """Tag files per RFC 8493 §2.1-2.2. The payload manifest uses the SHA-256 taken at ingest, which
    ``export_original`` has just proven each written file matches; hashing the files again here would
    be a second full read of every video, and the validator that follows reads them anyway."""
    manifest = "".join(f"{digest}  {path}\n" for path, (digest, _) in sorted(payload.items()))
    info = "".join(f"{label}: {_one_line(value)}\n" for label, value in bag_info.items())
    tag_files = {
        "bag-info.txt": info.encode("utf-8"),
        "manifest-sha256.txt": manifest.encode("utf-8"),
    }
    for name, body in tag_files.items():
        (bag / name).write_bytes(body)
    tag_manifest = "".join(
        f"{hashlib.sha256(body).hexdigest()}  {name}\n"
        for name, body in sorted((tag_files | {"bagit.txt": BAGIT_TXT}).items())
    )
    (bag / "tagmanifest-sha256.txt").write_bytes(tag_manifest.encode("utf-8"))
    # last: only a directory with bagit.txt is a bag, so a killed export leaves none
    (bag / "bagit.txt").write_bytes(BAGIT_TXT)


def _one_line(value: str) -> str:
    return " ".join(value.split())


def validate_bag(bag: Path) -> None:
    """Full validation by the Library of Congress' ``bagit``: structure, Payload-Oxum, every file's
    SHA-256 re-read from disk. Raises ``IntegrityError`` naming the files that fail."""
    import bagit  # type: ignore[import-untyped]

    try:
        bagit.Bag(str(bag)).validate(processes=1)
    except bagit.BagValidationError as err:
        problems = "; ".join(str(detail) for detail in (err.details or [])[:5]) or str(err)
        raise IntegrityError(f"the bag failed BagIt validation: {problems}") from err
    except bagit.BagError as err:
        raise IntegrityError(f"the bag is not valid BagIt: {err}") from err


def _publish(partial: Path, out_dir: Path) -> None:
    try:
        # POSIX rename replaces an empty directory and fails on a non-empty one: never merges
        partial.rename(out_dir)
    except OSError as err:
        raise AlreadyExists(f"{out_dir} appeared while exporting and is not empty: {err}") from err


# -- custody reports ------------------------------------------------------------------------------


def custody_report(
    vault: Vault, item: CheckedItem, *, incident: IncidentRef, exported_as: str | None
) -> dict[str, Any]:
    """One item's chain of custody as a court bundle needs it: provenance, hashes, capture metadata,
    every event with the verification result and the public keys that signed them."""
    manifest, details = item.manifest, item.details
    chain = vault.custody.verify(manifest.evidence_id)
    keys = vault.custody.public_keys()
    events = [event.to_document() for event in chain.events]
    return {
        "format": REPORT_FORMAT,
        "evidence_id": manifest.evidence_id,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "incident": incident.value,
        "exported_as": exported_as,
        "original": {
            "name": details.original_name,
            "name_b64": details.original_name_b64,
            "source_path": details.source_path,
            "size": details.size,
            "sha256": details.sha256,
            "sha256_verified": exported_as is not None,
        },
        "ingest": {
            "ingested_at": manifest.ingested_at.isoformat(),
            "station": manifest.station_id,
            "device": manifest.device_serial,
            "officer": manifest.officer_id,
            "recorded_at": manifest.recorded_at,
            "media_type": manifest.media_type,
            "kind": manifest.kind,
            "flags": list(manifest.flags),
            "manifest_sha256": item.manifest_sha256,
        },
        "stored_objects": {
            name: None
            if ref is None
            else {"key": ref.key, "version_id": ref.version_id, "size": ref.size, "sha256": ref.sha256}
            for name, ref in (("content", manifest.content), ("thumbnail", manifest.thumbnail))
        },
        "capture_metadata": dict(details.media),
        "custody": _chain_summary(chain, keys),
        "events": events,
        "links": {
            "current": sorted(linked_incidents(chain.events)),
            "history": [e for e in events if e["type"] in ("link", "unlink")],
        },
        "accesses": [e for e in events if e["type"] in ("access", "export")],
    }


def _chain_summary(chain: ChainVerification, keys: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "intact": chain.intact,
        "length": len(chain.events),
        "problems": [{"position": p.position, "message": p.message} for p in chain.problems],
        "signers": list(chain.signers),
        "signer_public_keys": {key_id: keys[key_id].to_text() for key_id in chain.signers if key_id in keys},
        "note": (
            "Signers were checked against the keys published in the vault. An independent verifier "
            "should compare these key ids with the force's published public keys."
        ),
    }


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        # every value in a report may come from a device or a person: escape all of it
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_custody_html(report: Mapping[str, Any]) -> str:
    return _templates().get_template("custody_report.html").render(report=report, fmt=_display)


def _display(value: Any) -> str:
    """Plain text for a table cell (the template escapes it)."""
    if value is None:
        return "—"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_display(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_display(v) for v in value) or "—"
    return str(value)


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
        with _naming(evidence_id):
            item = check_item(
                vault, evidence_id, incident, expected_length=(expected_lengths or {}).get(evidence_id)
            )
            if item.manifest.thumbnail is None:
                missing.append(evidence_id)
                continue
            target = out_dir / f"{evidence_id}.jpg"
            if target.exists():
                raise AlreadyExists(f"{target} already exists; choose another --out")
            _record(
                vault,
                catalog,
                evidence_id,
                "access",
                actor,
                {"action": "thumbs", "purpose": stated},
            )
            preview = vault.thumbnail(item.manifest)
            assert preview is not None
            _write_new_file(target, [preview])
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
