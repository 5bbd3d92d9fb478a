"""Investigator export: every item of an incident as a BagIt bag, verified, or nothing.

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
import secrets
import shutil
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence.access import Actor
from evidence.errors import AlreadyExists, EvidenceError, IntegrityError, InvalidInput, NotFound
from evidence.ids import require_evidence_id
from evidence.incident import IncidentRef
from evidence.manifest import ItemDetails
from flows.custody_report import custody_report, render_custody_html
from flows.retrieval import (
    clean_purpose,
    incident_items,
    naming_errors,
    record_access,
    verify_for_release,
)
from storage.vault import PRIVATE_DIR_MODE, Vault, VerifiedItem

if TYPE_CHECKING:
    from evidence.settings import Settings
    from storage.catalog import Catalog

log = logging.getLogger(__name__)

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
REPORTS_DIR = "reports"
MAX_NAME_BYTES = 180
"""Room under the common 255-byte limit for the ``.<name>.partial-<pid>`` file written before rename."""
FALLBACK_NAME = "original"

# Characters Windows, macOS or exFAT refuse, path separators, and '%': BagIt 1.0 manifests escape '%',
# and validators disagree on decoding it, so a bag stays portable only without it.
_UNSAFE_CHARACTERS = frozenset('<>:"/\\|?*%')
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{n}" for n in range(10)} | {f"LPT{n}" for n in range(10)}
)


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
    partial.mkdir(mode=PRIVATE_DIR_MODE)  # decrypted evidence: nobody else on this machine reads it
    bag_name = out_dir.name
    started = datetime.now(UTC)
    log.info("export started", extra={"incident": incident.value, "items": len(ids)})
    recorded: list[str] = []
    try:
        checked: list[tuple[VerifiedItem, ItemDetails, ExportedItem]] = []
        for evidence_id in ids:
            with naming_errors(evidence_id):
                item = verify_for_release(
                    vault,
                    evidence_id,
                    expected_length=(expected_lengths or {}).get(evidence_id),
                    incident=incident,
                )
                sealed = vault.details(item.manifest)
                checked.append((item, sealed, _write_original(vault, item, sealed, partial, on_bytes)))
        payload: dict[str, tuple[str, int]] = {
            entry.path: (entry.sha256, entry.size) for _, _, entry in checked
        }
        details = {"incident": incident.value, "purpose": stated, "bag": bag_name}
        for item, sealed, entry in checked:
            with naming_errors(entry.evidence_id):
                record_access(vault, catalog, item, "export", actor, details)
                recorded.append(entry.evidence_id)
                report = custody_report(vault, item, sealed, incident=incident, exported_as=entry.path)
                payload.update(_write_reports(partial, entry.evidence_id, report))
        total_bytes = sum(size for _, size in payload.values())
        info = bag_info(
            vault, incident, actor, stated, bag_name, started, item_count=len(checked), payload=payload
        )
        for name, body in tag_files(payload, info).items():
            (partial / name).write_bytes(body)  # bagit.txt comes last: a killed export leaves no bag
        validate_bag(partial)
        _publish(partial, out_dir)
    except EvidenceError as error:
        shutil.rmtree(partial, ignore_errors=True)
        attempted = (
            f"; the export events of {len(recorded)} item(s) stay in their chains, as the record of "
            "an export that was attempted and produced no bag"
            if recorded
            else ""
        )
        raise type(error)(f"{error} (export stopped; nothing was written at {out_dir}{attempted})") from error
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("export finished", extra={"incident": incident.value, "items": len(checked)})
    return ExportReport(out_dir, incident.value, tuple(e for _, _, e in checked), total_bytes, len(payload))


def _refuse_non_empty(out_dir: Path) -> None:
    """Bad ``--out`` is the person's to fix (exit 2), found before anything is read or recorded."""
    if out_dir.is_symlink():
        raise InvalidInput(f"{out_dir} is a link; give a new or empty folder as --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInput(f"{out_dir} exists and is not a folder; give a new or empty folder as --out")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise InvalidInput(f"{out_dir} is not empty; give a new or empty folder as --out")


def _write_original(
    vault: Vault,
    item: VerifiedItem,
    details: ItemDetails,
    bag: Path,
    on_bytes: Callable[[int], None] | None,
) -> ExportedItem:
    evidence_id = item.manifest.evidence_id
    name = safe_file_name(base64.b64decode(details.original_name_b64))
    relative = f"data/{evidence_id}/{name}"
    vault.export_original(item.manifest, bag / relative, on_bytes=on_bytes)
    return ExportedItem(evidence_id, relative, item.manifest.size, details.sha256)


def _write_reports(bag: Path, evidence_id: str, report: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    folder = bag / "data" / REPORTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, tuple[str, int]] = {}
    for relative, body in report_files(evidence_id, report).items():
        with (bag / relative).open("xb") as out:
            out.write(body)
        written[relative] = (hashlib.sha256(body).hexdigest(), len(body))
    return written


def report_files(evidence_id: str, report: Mapping[str, Any]) -> dict[str, bytes]:
    """An item's custody report as the bag holds it: ``data/reports/<id>.json`` and ``.html``."""
    return {
        f"data/{REPORTS_DIR}/{evidence_id}.json": (
            json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        ).encode(),
        f"data/{REPORTS_DIR}/{evidence_id}.html": render_custody_html(report).encode("utf-8"),
    }


def bag_info(
    vault: Vault,
    incident: IncidentRef,
    actor: Actor,
    purpose: str,
    bag_name: str,
    started: datetime,
    *,
    item_count: int,
    payload: Mapping[str, tuple[str, int]],
) -> dict[str, str]:
    """``bag-info.txt`` of an export (docs/access.md §3); ``payload``: path -> (SHA-256, size)."""
    return {
        "Source-Organization": f"evidence-pipeline, station {vault.settings.station_id}",
        "External-Identifier": incident.value,
        "External-Description": f"Evidence exported for incident {incident.value}",
        "Bagging-Date": started.date().isoformat(),
        "Bagging-Time": started.isoformat(timespec="seconds"),
        "Contact-Name": actor.user_id,
        "Internal-Sender-Identifier": bag_name,
        "Internal-Sender-Description": purpose,
        "Evidence-Item-Count": str(item_count),
        "Bag-Software-Agent": "evidence-pipeline",
        "Payload-Oxum": f"{sum(size for _, size in payload.values())}.{len(payload)}",
    }


def tag_files(payload: Mapping[str, tuple[str, int]], bag_info: Mapping[str, str]) -> dict[str, bytes]:
    """Tag files per RFC 8493 §2.1-2.2, in the order to write them: ``bagit.txt`` last, since only a
    directory with it is a bag. The payload manifest uses the SHA-256 taken at ingest, which each
    original was proven to match as it was written; hashing the files again here would be a second
    full read of every video (the directory export's validator reads them anyway)."""
    manifest = "".join(f"{digest}  {path}\n" for path, (digest, _) in sorted(payload.items()))
    info = "".join(f"{label}: {_one_line(value)}\n" for label, value in bag_info.items())
    files = {
        "bag-info.txt": info.encode("utf-8"),
        "manifest-sha256.txt": manifest.encode("utf-8"),
    }
    tag_manifest = "".join(
        f"{hashlib.sha256(body).hexdigest()}  {name}\n"
        for name, body in sorted((files | {"bagit.txt": BAGIT_TXT}).items())
    )
    return files | {"tagmanifest-sha256.txt": tag_manifest.encode("utf-8"), "bagit.txt": BAGIT_TXT}


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
