"""Case closure (``evidence incident close`` / ``evidence incident reopen``): when the case behind an
incident closed, for retention rules that count from closure (``docs/retention.md`` §2).

A closure is a ``closure`` event in the custody chain of every item linked to the incident (the
incident, the date the case closed, who recorded it and why); a reopening is a ``reopen`` event.
The chain is what retention reads, so the date is signed, attributable and kept with the evidence.
Until a closure is recorded, a rule counted from closure treats the case as open: its items come up
for review a period after their link, never for disposal.

Like holds, a closure covers the items linked to the incident when it is recorded; running the
command again covers items linked since, and is otherwise a no-op. Recording a different date for a
closed case corrects it: the new event stands, the old one stays in the chain.

A records-system feed with a ``closed_at`` column records closures too, on every run of
``link-feed``, so rules counted from closure work without anyone typing a command. A feed never
reopens a case: an export that does not mention a closure may simply be partial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from evidence.access import Actor
from evidence.errors import AccessDenied, InvalidInput, NotFound
from evidence.feed import Feed
from evidence.incident import IncidentRef
from evidence.retention import LinkFact
from evidence.times import require_plausible
from flows.holds import chain_state, clean_reason
from flows.outcomes import FAILED, ItemOutcome, failures, for_each_item
from flows.records import record
from storage.catalog import Catalog
from storage.vault import Vault


@dataclass
class ClosureReport:
    incident: str
    action: str
    """``close`` or ``reopen``."""
    closed_at: datetime | None
    outcomes: list[ItemOutcome] = field(default_factory=list)
    """Statuses: ``closed``, ``already closed``, ``date corrected``, ``reopened``, ``not closed``,
    ``not linked`` (the catalog is behind the chain) or ``failed``."""

    @property
    def failed(self) -> list[ItemOutcome]:
        return failures(self.outcomes)

    def as_json(self) -> dict[str, object]:
        return {
            "incident": self.incident,
            "action": self.action,
            "closed_at": None if self.closed_at is None else self.closed_at.isoformat(),
            "items": [outcome.as_json() for outcome in self.outcomes],
        }


def close_incident(
    vault: Vault,
    catalog: Catalog,
    incident: IncidentRef,
    closed_at: datetime,
    reason: str,
    actor: Actor,
    *,
    now: datetime | None = None,
) -> ClosureReport:
    """Record that the incident's case closed at ``closed_at`` on every item linked to it. A date
    before the device era or in the future is refused before anything is written
    (``evidence.times.require_plausible``): retention counts from it, and a chain keeps it for good."""
    actor.require("close")
    stated = clean_reason(reason)
    closed = require_plausible(closed_at, "closure time", now=now)
    return _close_items(vault, catalog, incident, _linked(catalog, incident), closed, stated, actor, "manual")


def close_from_feed(vault: Vault, catalog: Catalog, feed: Feed, actor: Actor) -> list[ClosureReport]:
    """Record every closure the feed gives on the items linked to its incident (after the feed's own
    links are written, so they are covered too). Items already closed on that date are left alone."""
    closures = feed.closures()
    if not closures:
        return []
    actor.require("close")
    reports = []
    for ref, (closed_at, row) in sorted(closures.items()):
        incident = IncidentRef(ref)
        linked = catalog.items(incident=ref)
        try:  # judged again: a Feed built by code, not read from an export, was never judged
            closed = require_plausible(closed_at, "closure time")
        except InvalidInput as err:
            failed = [ItemOutcome(item.evidence_id, FAILED, str(err)) for item in linked]
            reports.append(ClosureReport(ref, "close", closed_at, failed))
            continue
        # An hourly feed repeats every closed case it knows: items the catalog already shows closed on
        # that date are not read again (the catalog is only ever behind the chains, never ahead).
        done = {item.evidence_id for item in linked if dict(item.closures).get(ref) == closed}
        pending = [item.evidence_id for item in linked if item.evidence_id not in done]
        reason = f"closed per the records-system feed (row {row})"
        report = _close_items(vault, catalog, incident, pending, closed, reason, actor, "feed")
        report.outcomes.extend(ItemOutcome(evidence_id, "already closed") for evidence_id in sorted(done))
        reports.append(report)
    return reports


def may_close(actor: Actor) -> bool:
    try:
        actor.require("close")
    except AccessDenied:
        return False
    return True


def _close_items(
    vault: Vault,
    catalog: Catalog,
    incident: IncidentRef,
    evidence_ids: list[str],
    closed: datetime,
    reason: str,
    actor: Actor,
    source: str,
) -> ClosureReport:
    outcomes = for_each_item(
        evidence_ids,
        lambda evidence_id: _close_one(vault, catalog, evidence_id, incident, closed, reason, actor, source),
        doing="closure",
    )
    return ClosureReport(incident.value, "close", closed, outcomes)


def reopen_incident(
    vault: Vault, catalog: Catalog, incident: IncidentRef, reason: str, actor: Actor
) -> ClosureReport:
    """Record that the incident's case is open again on every linked item recorded as closed."""
    actor.require("reopen")
    stated = clean_reason(reason)
    outcomes = for_each_item(
        _linked(catalog, incident),
        lambda evidence_id: _reopen_one(vault, catalog, evidence_id, incident, stated, actor),
        doing="reopen",
    )
    return ClosureReport(incident.value, "reopen", None, outcomes)


def _reopen_one(
    vault: Vault, catalog: Catalog, evidence_id: str, incident: IncidentRef, reason: str, actor: Actor
) -> ItemOutcome:
    link = _link_in_chain(vault, evidence_id, incident)
    if link is None or link.closed_at is None:
        return ItemOutcome(evidence_id, "not linked" if link is None else "not closed")
    record(
        vault,
        catalog,
        evidence_id,
        "reopen",
        actor=actor.user_id,
        role=actor.role,
        details={"incident": incident.value, "reason": reason},
    )
    return ItemOutcome(evidence_id, "reopened", f"was closed {_shown(link.closed_at)}")


def _close_one(
    vault: Vault,
    catalog: Catalog,
    evidence_id: str,
    incident: IncidentRef,
    closed: datetime,
    reason: str,
    actor: Actor,
    source: str,
) -> ItemOutcome:
    link = _link_in_chain(vault, evidence_id, incident)
    if link is None:
        return ItemOutcome(evidence_id, "not linked", "the catalog lists a link the chain no longer has")
    if link.closed_at == closed:
        return ItemOutcome(evidence_id, "already closed")
    record(
        vault,
        catalog,
        evidence_id,
        "closure",
        actor=actor.user_id,
        role=actor.role,
        details={
            "incident": incident.value,
            "closed_at": closed.isoformat(),
            "reason": reason,
            "source": source,
        },
    )
    if link.closed_at is None:
        return ItemOutcome(evidence_id, "closed")
    return ItemOutcome(evidence_id, "date corrected", f"was {_shown(link.closed_at)}")


def _linked(catalog: Catalog, incident: IncidentRef) -> list[str]:
    items = catalog.items(incident=incident.value)
    if not items:
        raise NotFound(
            f"no evidence is linked to incident {incident} in the catalog: link items first (or rebuild "
            "the catalog if they were linked on another machine)"
        )
    return [item.evidence_id for item in items]


def _link_in_chain(vault: Vault, evidence_id: str, incident: IncidentRef) -> LinkFact | None:
    """The item's link to the incident as its own chain records it (the catalog may lag behind)."""
    links = chain_state(vault, evidence_id).facts.links
    return next((link for link in links if link.incident == incident.value), None)


def _shown(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")
