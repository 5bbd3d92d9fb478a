"""An incident as the portal shows it: every item linked to it now, with its link history, holds and
retention state from the catalog, and, for a person who may read evidence and has said why, what only
the sealed details hold (a recording's duration) and whether a thumbnail can be shown.

Reading sealed details is a decryption, so for each item it goes as every read does: verified
(``flows.retrieval.verify_for_release``, chain linking it to this incident), then an ``access`` event
recorded (action ``view``, the purpose and the portal's details of who and where), and only then
decrypted. An item that does not verify is shown with the reason, and nothing of it is decrypted.
Clear facts (times, officer, device, flags, links, holds) come from the catalog, which any role that
may list evidence may see.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from evidence.access import Actor
from evidence.errors import EvidenceError
from evidence.incident import IncidentRef
from evidence.retention import Decision, RetentionPolicy, decide, load_policy
from flows.retrieval import incident_items, record_access, verify_for_release

if TYPE_CHECKING:
    from evidence.settings import Settings
    from storage.catalog import Catalog, CatalogItem, IndexedStateEvent
    from storage.vault import Vault

HISTORY_TYPES = ("link", "unlink", "hold", "release")
SEALED_READERS = 8


@dataclass(frozen=True)
class RetentionState:
    """What the retention policy says of an item today (``evidence.retention.decide`` over the
    catalog's facts, as the nightly run decides), and how long its storage lock runs."""

    decision: Decision
    then: Literal["review", "disposal", "kept"]
    """What the policy asks for once ``decision.keep_until`` has passed (``kept``: a hold keeps it)."""
    storage_locked_until: datetime


@dataclass(frozen=True)
class SealedFacts:
    """What an item's sealed details add for a person who may read them (``None`` fields: not known)."""

    duration_seconds: float | None
    has_thumbnail: bool


@dataclass(frozen=True)
class IncidentEntry:
    item: CatalogItem
    link_history: tuple[IndexedStateEvent, ...]
    hold_history: tuple[IndexedStateEvent, ...]
    retention: RetentionState
    sealed: SealedFacts | None
    """None when not read: the role may not read evidence, no purpose was given, or it failed."""
    sealed_problem: str | None = None
    """Why the item's sealed details were not read though they were asked for (it did not verify)."""


@dataclass(frozen=True)
class IncidentOverview:
    incident: IncidentRef
    entries: tuple[IncidentEntry, ...]
    purpose_missing: bool = False
    """Some item has no purpose given in this session: the page asks for one."""


def incident_overview(
    vault: Vault,
    catalog: Catalog,
    settings: Settings,
    incident: IncidentRef,
    actor: Actor,
    *,
    now: datetime,
    purpose_of: Callable[[str], str | None] | None = None,
    who: Mapping[str, str] | None = None,
) -> IncidentOverview:
    """The incident's items with their state. ``purpose_of`` (the purpose given in this session for an
    evidence id, if any) asks for the sealed details too: only for a role that may read evidence, and
    only for items with a purpose; each such read is verified and recorded first (``who``: the
    portal's details of the person's sign-in, session and client, recorded with it)."""
    actor.require("list")
    found = incident_items(catalog, incident)
    history = catalog.state_history(found.evidence_ids, HISTORY_TYPES)
    policy = retention_policy(settings)
    wanted: dict[str, str] = {}
    if purpose_of is not None and actor.may("get"):
        given = {evidence_id: purpose_of(evidence_id) for evidence_id in found.evidence_ids}
        wanted = {evidence_id: purpose for evidence_id, purpose in given.items() if purpose}
    sealed: dict[str, SealedFacts | EvidenceError] = {}
    to_read = [i for i in found.evidence_ids if i in wanted]
    if to_read:

        def read(evidence_id: str) -> SealedFacts | EvidenceError:
            try:
                return _sealed_facts(
                    vault,
                    catalog,
                    evidence_id,
                    incident,
                    actor,
                    purpose=wanted[evidence_id],
                    who=who or {},
                    expected_length=found.custody_lengths.get(evidence_id),
                )
            except EvidenceError as err:
                return err

        with ThreadPoolExecutor(max_workers=min(SEALED_READERS, len(to_read))) as pool:
            sealed = dict(zip(to_read, pool.map(read, to_read), strict=True))
    entries = []
    for item in found.catalogued:
        events = history.get(item.evidence_id, [])
        facts = sealed.get(item.evidence_id)
        entries.append(
            IncidentEntry(
                item=item,
                link_history=tuple(e for e in events if e.type in ("link", "unlink")),
                hold_history=tuple(e for e in events if e.type in ("hold", "release")),
                retention=retention_state(item, settings, policy, now),
                sealed=facts if isinstance(facts, SealedFacts) else None,
                sealed_problem=str(facts) if isinstance(facts, EvidenceError) else None,
            )
        )
    missing = purpose_of is not None and actor.may("get") and len(wanted) < len(found.evidence_ids)
    return IncidentOverview(incident, tuple(entries), purpose_missing=missing)


def retention_policy(settings: Settings) -> RetentionPolicy:
    """The policy the retention run applies (settings name it; the shipped one by default)."""
    from flows.retention import policy_path

    return load_policy(policy_path(settings))


def retention_state(
    item: CatalogItem, settings: Settings, policy: RetentionPolicy, now: datetime
) -> RetentionState:
    """The nightly run's decision for the item today (the same functions it uses), and what the
    policy asks for when that date comes."""
    from flows.retention import catalog_lock, facts_from_catalog

    facts = facts_from_catalog(item)
    decision = decide(facts, policy, now)
    then: Literal["review", "disposal", "kept"] = "kept"
    if not decision.held:
        at_end = decide(facts, policy, max(now, decision.keep_until))
        then = "review" if at_end.action == "review" else "disposal"
    return RetentionState(decision, then, catalog_lock(item, settings))


def _sealed_facts(
    vault: Vault,
    catalog: Catalog,
    evidence_id: str,
    incident: IncidentRef,
    actor: Actor,
    *,
    purpose: str,
    who: Mapping[str, str],
    expected_length: int | None,
) -> SealedFacts:
    item = verify_for_release(vault, evidence_id, expected_length=expected_length, incident=incident)
    record_access(
        vault,
        catalog,
        item,
        "access",
        actor,
        {"action": "view", "purpose": purpose, "incident": incident.value, "sealed_details": True, **who},
    )
    details = vault.details(item.manifest)
    duration = details.media.get("duration_seconds")
    return SealedFacts(
        duration_seconds=float(duration) if isinstance(duration, int | float) else None,
        has_thumbnail=item.manifest.thumbnail is not None,
    )
