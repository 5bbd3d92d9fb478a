"""Recording what happens to an item: a custody event in the vault first, then the catalog kept in step.

The vault is the source of truth and the catalog only an index of it, so the order is fixed: the event
is appended (signed, chained, locked) and only then folded into the catalog. A catalog that cannot
be written to (database down, disk full) does not undo or fail what was done: the failure is logged,
and ``evidence catalog rebuild`` brings the index back in step from the vault alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from evidence.custody import CustodyEvent
from evidence.manifest import Manifest
from evidence.settings import Settings
from storage.catalog import Catalog
from storage.vault import Vault

log = logging.getLogger(__name__)

APPEND_WORKERS = 8
"""Chains appended to at once when one action touches many items (a listing records an access on each)."""


def open_catalog(settings: Settings) -> Catalog:
    return Catalog.open(settings)


def record(
    vault: Vault,
    catalog: Catalog | None,
    evidence_id: str,
    type: str,
    *,
    actor: str,
    role: str,
    details: Mapping[str, Any],
    expected_length: int | None = None,
) -> CustodyEvent:
    """Append one custody event to the item's chain, then fold it into the catalog. The chain must
    hold at least as many events as the catalog saw and ``expected_length`` (a verification just
    done) says: see :meth:`storage.custody.CustodyLog.append`."""
    known = known_lengths(catalog, [evidence_id]).get(evidence_id, 0)
    event = vault.custody.append(
        evidence_id,
        type,
        actor=actor,
        role=role,
        details=details,
        expected_length=max(known, expected_length or 0) or None,
    )
    note_events(catalog, [event])
    return event


def known_lengths(catalog: Catalog | None, evidence_ids: Sequence[str]) -> dict[str, int]:
    """Custody events the catalog has seen per item; nothing when there is no catalog or it fails
    (an index that is down does not stop the record being written: the chain's own checks remain)."""
    if catalog is None:
        return {}
    try:
        return catalog.custody_lengths(evidence_ids)
    except Exception:
        log.warning("catalog unavailable: chain lengths not checked against it", exc_info=True)
        return {}


def record_each(
    vault: Vault,
    catalog: Catalog | None,
    evidence_ids: Sequence[str],
    type: str,
    *,
    actor: str,
    role: str,
    details: Mapping[str, Any],
    workers: int = APPEND_WORKERS,
) -> list[CustodyEvent]:
    """The same event on many items: chains appended in parallel (each chain is its own sequence of
    writes), the catalog updated in one transaction. If any append fails, the events that were
    written are still put in the catalog and the first failure is raised."""
    if not evidence_ids:
        return []
    known = known_lengths(catalog, evidence_ids)

    def append(evidence_id: str) -> CustodyEvent | BaseException:
        try:
            return vault.custody.append(
                evidence_id,
                type,
                actor=actor,
                role=role,
                details=details,
                expected_length=known.get(evidence_id),
            )
        except Exception as err:  # raised below, after the successful ones are indexed
            return err

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(evidence_ids)))) as pool:
        results = list(pool.map(append, evidence_ids))
    events = [r for r in results if isinstance(r, CustodyEvent)]
    note_events(catalog, events)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return events


def note_events(catalog: Catalog | None, events: Iterable[CustodyEvent]) -> None:
    """Fold events that are already in the vault into the catalog; never fails the caller."""
    if catalog is None:
        return
    events = list(events)
    try:
        catalog.record_events(events)
    except Exception:
        log.warning(
            "catalog not updated; run `evidence catalog rebuild` to bring it in step",
            extra={"evidence_ids": sorted({e.evidence_id for e in events})[:20]},
            exc_info=True,
        )


def note_item(vault: Vault, catalog: Catalog | None, manifest: Manifest) -> bool:
    """Index a stored item with its whole chain as the vault has it now (catches up anything a
    previous run failed to index). Returns False, having logged why, if the catalog failed."""
    if catalog is None:
        return False
    try:
        events = vault.custody.events(manifest.evidence_id)
        # a duplicate (every file of a re-dock) is usually indexed already, chain and all: asking
        # costs a fraction of writing it again
        if catalog.has_indexed(manifest.evidence_id, len(events)):
            return True
        catalog.record_item(manifest, events)
    except Exception:
        log.warning(
            "item not indexed; run `evidence catalog rebuild` to bring the catalog in step",
            extra={"evidence_id": manifest.evidence_id},
            exc_info=True,
        )
        return False
    return True


def record_listing(
    vault: Vault,
    catalog: Catalog | None,
    evidence_ids: Sequence[str],
    *,
    actor: str,
    role: str,
    purpose: str,
) -> list[CustodyEvent]:
    """A listing is an access: one ``access`` event (action ``list``) on every item shown, written
    before the listing is shown, so nothing is seen that is not recorded."""
    return record_each(
        vault,
        catalog,
        evidence_ids,
        "access",
        actor=actor,
        role=role,
        details={"action": "list", "purpose": purpose},
    )
