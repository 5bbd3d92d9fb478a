"""One evidence item as the portal's item page shows it: the clear manifest, the sealed details (original
name, device path, original SHA-256, capture metadata with any location) and the custody chain with
its verification result.

The page shows decrypted metadata, so it is a read like any other: the role must be one that may read
evidence, the item is verified first (``flows.retrieval.verify_for_release``), and an ``access`` event
(action ``view``, the purpose, and who, how signed in, which session, from where) is appended to its
chain before anything is decrypted. If that record cannot be written, nothing is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evidence.access import Actor
from evidence.ids import require_evidence_id
from evidence.manifest import ItemDetails, Manifest
from flows.custody_report import custody_report
from flows.retrieval import clean_purpose, known_length, record_access, verify_for_release

if TYPE_CHECKING:
    from storage.catalog import Catalog, CatalogItem
    from storage.vault import Vault


@dataclass(frozen=True)
class ItemView:
    manifest: Manifest
    details: ItemDetails
    custody: Mapping[str, Any]
    """``flows.custody_report.custody_report``: the chain, its verification, links and accesses,
    read after this view was recorded, so the view itself is its last access."""
    catalogued: CatalogItem | None
    """The catalog's facts (holds in force, retention), if the catalog knows the item."""

    @property
    def location(self) -> tuple[float, float] | None:
        """Latitude and longitude the file states, as numbers (never text from the device)."""
        point = self.details.media.get("location")
        if not isinstance(point, Mapping):
            return None
        latitude, longitude = point.get("latitude"), point.get("longitude")
        if isinstance(latitude, int | float) and isinstance(longitude, int | float):
            return float(latitude), float(longitude)
        return None


def view_item(
    vault: Vault,
    catalog: Catalog | None,
    evidence_id: str,
    actor: Actor,
    *,
    purpose: str,
    who: Mapping[str, str],
) -> ItemView:
    """Verify, record the view (with ``purpose`` and ``who``: the portal's details of the person's
    sign-in, session and client), then decrypt the sealed details and report the custody chain."""
    require_evidence_id(evidence_id)
    actor.require("get")
    stated = stated_purpose(purpose)
    item = verify_for_release(vault, evidence_id, expected_length=known_length(catalog, evidence_id))
    record_access(
        vault,
        catalog,
        item,
        "access",
        actor,
        {"action": "view", "purpose": stated, "sealed_details": True, **who},
    )
    details = vault.details(item.manifest)
    report = custody_report(vault, item, details, incident=None, exported_as=None)
    return ItemView(
        item.manifest, details, report, catalog.item(evidence_id) if catalog is not None else None
    )


def stated_purpose(text: str | None) -> str:
    """The reason a person gives in the portal for reading evidence, as recorded with each access
    (``flows.retrieval.clean_purpose``, named as the form names it)."""
    stated = clean_purpose(text, required=True, name="the purpose field")
    assert stated is not None  # required: refused when empty
    return stated
