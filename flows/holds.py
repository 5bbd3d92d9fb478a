"""Legal holds on the evidence of an incident (``evidence hold set`` / ``evidence hold release``).

A hold is two things, and both must agree before anything is disposed of: a ``hold`` event in each
item's custody chain (what the retention policy reads: who held it, for which incident, why) and the
S3 legal hold on every stored version of the item (what the store enforces, even against someone who
bypasses this program). Setting writes storage first and the event second; releasing writes the event
first and clears storage last, and only when no other hold on the item remains in force and the
item's chain records this incident's hold (in force, or released by a run that was cut off). So a crash
at any point leaves an item *more* protected than recorded, never less, and running the same command
again finishes the job: both commands are idempotent.

One hold per incident: its id is ``incident:<reference>``. The hold covers the items linked to the
incident when it is set; items linked later are held by running ``hold set`` again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from evidence.access import Actor
from evidence.custody import CustodyEvent
from evidence.errors import EvidenceError, InvalidInput, NotFound
from evidence.incident import IncidentRef
from evidence.retention import ChainState, facts_from_events, parse_recorded_at
from flows.records import record
from storage import lifecycle
from storage.catalog import Catalog
from storage.vault import Vault

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 500


@dataclass(frozen=True)
class HoldOutcome:
    evidence_id: str
    status: str
    """``held``, ``already held``, ``released``, ``still held``, ``not held`` or ``failed``."""
    versions_changed: int = 0
    note: str = ""


@dataclass
class HoldReport:
    incident: str
    hold_id: str
    action: str
    """``set`` or ``release``."""
    outcomes: list[HoldOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[HoldOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def as_json(self) -> dict[str, object]:
        return {
            "incident": self.incident,
            "hold_id": self.hold_id,
            "action": self.action,
            "items": [
                {
                    "evidence_id": o.evidence_id,
                    "status": o.status,
                    "versions_changed": o.versions_changed,
                    "note": o.note,
                }
                for o in self.outcomes
            ],
        }


def hold_id_for(incident: IncidentRef) -> str:
    return f"incident:{incident.value}"


def clean_reason(reason: str | None) -> str:
    """Why the hold is set or released, as recorded in every item's chain: one printable line."""
    text = (reason or "").strip()
    if not text:
        raise InvalidInput("state why with --reason (for example 'Crown Court trial T20267001, listed 2027')")
    if len(text) > MAX_REASON_LENGTH:
        raise InvalidInput(f"--reason is {len(text)} characters; keep it under {MAX_REASON_LENGTH}")
    if not text.isprintable():
        raise InvalidInput("--reason must be one line of printable text")
    return text


def chain_state(vault: Vault, evidence_id: str) -> ChainState:
    """The item's holds, links and disposal as its own custody chain records them."""
    return chain_with_state(vault, evidence_id)[1]


def chain_with_state(vault: Vault, evidence_id: str) -> tuple[list[CustodyEvent], ChainState]:
    """The item's custody events, and what they say now."""
    manifest = vault.manifest(evidence_id)
    events = vault.custody.events(evidence_id)
    state = facts_from_events(
        evidence_id, manifest.ingested_at, parse_recorded_at(manifest.recorded_at), events
    )
    return events, state


def set_hold(
    vault: Vault,
    catalog: Catalog,
    incident: IncidentRef,
    reason: str,
    actor: Actor,
    *,
    requested_via: Mapping[str, str] | None = None,
) -> HoldReport:
    """Hold every item linked to ``incident``: legal hold on all its stored versions, then a ``hold``
    event. An item already held for this incident only has its storage holds checked and mended.
    ``requested_via``: where the request came from (the portal's sign-in, session and client),
    recorded with each event."""
    actor.require("hold")
    stated = clean_reason(reason)
    hold_id = hold_id_for(incident)
    items = catalog.items(incident=incident.value)
    if not items:
        raise NotFound(
            f"no evidence is linked to incident {incident} in the catalog: link items first (or rebuild "
            "the catalog if they were linked on another machine)"
        )
    report = HoldReport(incident.value, hold_id, "set")
    for item in items:
        try:
            changed = lifecycle.set_hold(vault, item.evidence_id, True)
            state = chain_state(vault, item.evidence_id)
            if hold_id in state.hold_incidents:
                report.outcomes.append(HoldOutcome(item.evidence_id, "already held", changed))
                continue
            record(
                vault,
                catalog,
                item.evidence_id,
                "hold",
                actor=actor.user_id,
                role=actor.role,
                details={
                    **(requested_via or {}),
                    "hold_id": hold_id,
                    "incident": incident.value,
                    "reason": stated,
                },
            )
            report.outcomes.append(HoldOutcome(item.evidence_id, "held", changed))
        except EvidenceError as err:
            log.warning("hold failed", extra={"evidence_id": item.evidence_id, "error": str(err)})
            report.outcomes.append(HoldOutcome(item.evidence_id, "failed", note=str(err)))
    return report


def release_hold(
    vault: Vault,
    catalog: Catalog,
    incident: IncidentRef,
    reason: str,
    actor: Actor,
    *,
    requested_via: Mapping[str, str] | None = None,
) -> HoldReport:
    """Release the incident's hold on every item that has it (linked to the incident or not any
    more): a ``release`` event, then the storage holds come off unless another hold remains.
    ``requested_via`` as for :func:`set_hold`."""
    actor.require("release")
    stated = clean_reason(reason)
    hold_id = hold_id_for(incident)
    candidates = _unique(
        [item.evidence_id for item in catalog.iter_items() if hold_id in item.holds]
        + [item.evidence_id for item in catalog.items(incident=incident.value)]
    )
    if not candidates:
        raise NotFound(f"no evidence item is held for, or linked to, incident {incident} in the catalog")
    report = HoldReport(incident.value, hold_id, "release")
    for evidence_id in candidates:
        try:
            report.outcomes.append(
                _release_one(
                    vault, catalog, evidence_id, hold_id, incident, stated, actor, requested_via or {}
                )
            )
        except EvidenceError as err:
            log.warning("release failed", extra={"evidence_id": evidence_id, "error": str(err)})
            report.outcomes.append(HoldOutcome(evidence_id, "failed", note=str(err)))
    return report


def _release_one(
    vault: Vault,
    catalog: Catalog,
    evidence_id: str,
    hold_id: str,
    incident: IncidentRef,
    reason: str,
    actor: Actor,
    requested_via: Mapping[str, str],
) -> HoldOutcome:
    events, state = chain_with_state(vault, evidence_id)
    was_held = hold_id in state.hold_incidents
    released_before = any(e.type == "release" and e.details.get("hold_id") == hold_id for e in events)
    if not was_held and not released_before:
        # this incident never held the item (linked after the hold was set, say): whatever holds
        # its objects in storage was put there by something else, and is not this release's to lift
        return HoldOutcome(
            evidence_id,
            "not held",
            note=(
                f"no hold for {incident} was ever recorded on this item; its storage holds are left as they "
                "are (if a 'hold set' for it was interrupted, run it again, then release)"
            ),
        )
    if was_held:
        record(
            vault,
            catalog,
            evidence_id,
            "release",
            actor=actor.user_id,
            role=actor.role,
            details={**requested_via, "hold_id": hold_id, "incident": incident.value, "reason": reason},
        )
    remaining = sorted(h for h in state.hold_incidents if h != hold_id)
    if remaining:
        # one legal-hold flag per version serves every hold: it stays on while any is in force
        return HoldOutcome(
            evidence_id,
            "still held" if was_held else "not held",
            note=f"other hold(s) in force: {', '.join(remaining)}",
        )
    changed = lifecycle.set_hold(vault, evidence_id, False)
    return HoldOutcome(evidence_id, "released" if was_held else "not held", changed)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
