"""Chain-of-custody reports for a court bundle: one item's provenance, hashes, capture metadata and
every custody event with its verification, as JSON and as an HTML page (autoescaped, no scripts)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence.custody import ChainVerification, LostRace
from evidence.incident import IncidentRef
from evidence.manifest import ItemDetails
from flows.retrieval import linked_incidents
from storage.vault import Vault, VerifiedItem

if TYPE_CHECKING:
    import jinja2

REPORT_FORMAT = "evidence-pipeline/custody-report/v1"


def custody_report(
    vault: Vault,
    item: VerifiedItem,
    details: ItemDetails,
    *,
    incident: IncidentRef | None,
    exported_as: str | None,
) -> dict[str, Any]:
    """One item's chain of custody as a court bundle needs it: provenance, hashes, capture metadata,
    every event with the verification result and the public keys that signed them. ``incident``: the
    one a bag is exported for (None when the item is looked at on its own, in the portal)."""
    manifest = item.manifest
    chain = vault.custody.verify(manifest.evidence_id)
    keys = vault.custody.public_keys()
    events = [event.to_document() for event in chain.events]
    return {
        "format": REPORT_FORMAT,
        "evidence_id": manifest.evidence_id,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "incident": incident.value if incident is not None else None,
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
        "lost_races": [lost_race_document(race) for race in chain.lost_races],
        "signer_public_keys": {key_id: keys[key_id].to_text() for key_id in chain.signers if key_id in keys},
        "note": (
            "Signers were checked against the keys published in the vault. An independent verifier "
            "should compare these key ids with the force's published public keys."
        ),
    }


def lost_race_document(race: LostRace) -> dict[str, Any]:
    """A later version at a chain position that lost the race for it: not a problem
    (docs/custody.md §5), but part of what the vault holds, so a report shows it."""
    return {
        "position": race.position,
        "in_chain_at": race.in_chain_at,
        "message": race.describe(),
        "event": race.event.to_document(),
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
