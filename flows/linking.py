"""Linking evidence to incidents: by hand, at ingest, and from a records-system feed.

A link is a custody event in the item's chain (``docs/custody.md`` §4: ``incident``, ``category``,
``reason``, ``source``), so who linked what, when and why is itself signed and tamper-evident; an
unlink is another event, never a deletion, so the history stays. Whether an item is linked is decided
from its chain in the vault, the source of truth, not from the catalog: a stale catalog cannot cause a
second link event, nor let an unlink through that the chain does not support.

Every function checks the acting user's role itself and validates everything (references, ids,
items existing and not disposed) before it writes anything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from evidence.access import Actor
from evidence.custody import CustodyEvent
from evidence.errors import EvidenceError, InvalidInput, NotFound
from evidence.feed import (
    MAX_FEED_BYTES,
    AmbiguousItem,
    DatedItem,
    Feed,
    FeedLink,
    RejectedRow,
    match_feed,
    read_feed,
)
from evidence.ids import require_evidence_id
from evidence.incident import IncidentRef
from evidence.retention import ChainFold, fold_chain
from evidence.settings import Settings
from flows.closure import close_from_feed, may_close
from flows.outcomes import FAILED
from flows.records import note_events, record
from storage.catalog import Catalog
from storage.vault import Vault

log = logging.getLogger(__name__)

LinkSource = Literal["ingest", "manual", "feed"]
MAX_REASON_LENGTH = 500
FEED_WRITERS = 8


@dataclass(frozen=True)
class LinkResult:
    incident: str
    changed: tuple[str, ...]
    """Items a link (or unlink) event was written for."""
    unchanged: tuple[str, ...] = ()
    """Items already linked to the incident: nothing written."""


def clean_reason(reason: str | None, *, required: bool, what: str = "reason") -> str | None:
    """A reason as recorded forever in a chain: one printable line a court can read."""
    if reason is None or not reason.strip():
        if required:
            raise InvalidInput(f"give a --{what}: it is recorded in each item's chain of custody")
        return None
    text = reason.strip()
    if len(text) > MAX_REASON_LENGTH:
        raise InvalidInput(f"{what} is {len(text)} characters; keep it under {MAX_REASON_LENGTH}")
    if not text.isprintable():
        raise InvalidInput(f"{what} must be one line of printable text")
    return text


def item_state(vault: Vault, evidence_id: str) -> tuple[list[CustodyEvent], ChainFold]:
    """The item's chain and what it says now; refuses an item that does not exist or was disposed."""
    events = vault.custody.events(require_evidence_id(evidence_id))
    if not events:
        raise NotFound(f"no evidence item {evidence_id} in {vault.store.url}")
    state = fold_chain(events)
    if state.disposed_at is not None:
        raise NotFound(f"{evidence_id} was disposed of on {state.disposed_at:%Y-%m-%d}; it cannot be linked")
    if not vault.has_item(evidence_id):
        raise NotFound(f"no evidence item {evidence_id} in {vault.store.url} (its manifest is missing)")
    return events, state


def known_category(catalog: Catalog | None, incident: IncidentRef) -> str | None:
    """The category already known for an incident (from a feed), so a manual link carries it too."""
    if catalog is None:
        return None
    try:
        return catalog.incident_category(incident.value)
    except EvidenceError:
        log.warning("catalog unavailable; link recorded without the incident's category", exc_info=True)
        return None


def link_items(
    vault: Vault,
    catalog: Catalog | None,
    evidence_ids: Sequence[str],
    incident: IncidentRef,
    actor: Actor,
    *,
    reason: str | None = None,
    source: LinkSource = "manual",
    category: str | None = None,
    requested_via: Mapping[str, str] | None = None,
) -> LinkResult:
    """Link every item to ``incident``. An item already linked to it is left alone (no event).
    Nothing is written unless every item exists and is not disposed. ``requested_via``: where the
    request came from (the portal's sign-in, session and client), recorded with each event."""
    actor.require("link")
    reason = clean_reason(reason, required=False)
    wanted = list(dict.fromkeys(require_evidence_id(e) for e in evidence_ids))
    if not wanted:
        raise InvalidInput("name at least one evidence id to link")
    states = {evidence_id: item_state(vault, evidence_id) for evidence_id in wanted}
    note_events(catalog, (e for events, _ in states.values() for e in events))
    todo = [e for e in wanted if incident.value not in states[e][1].links]
    if todo and category is None:
        category = known_category(catalog, incident)
    details = {
        **(requested_via or {}),
        "incident": incident.value,
        "category": category,
        "reason": reason,
        "source": source,
    }
    for evidence_id in todo:
        record(vault, catalog, evidence_id, "link", actor=actor.user_id, role=actor.role, details=details)
        log.info("linked", extra={"evidence_id": evidence_id, "incident": incident.value, "source": source})
    return LinkResult(incident.value, tuple(todo), tuple(e for e in wanted if e not in todo))


def unlink_items(
    vault: Vault,
    catalog: Catalog | None,
    evidence_ids: Sequence[str],
    incident: IncidentRef,
    actor: Actor,
    *,
    reason: str | None,
    requested_via: Mapping[str, str] | None = None,
) -> LinkResult:
    """Unlink every item from ``incident`` (the link stays in the chain's history). Refused, with
    nothing written, if any item is not linked to it now. ``requested_via`` as for :func:`link_items`."""
    actor.require("unlink")
    reason = clean_reason(reason, required=True)
    wanted = list(dict.fromkeys(require_evidence_id(e) for e in evidence_ids))
    if not wanted:
        raise InvalidInput("name at least one evidence id to unlink")
    states = {evidence_id: item_state(vault, evidence_id) for evidence_id in wanted}
    note_events(catalog, (e for events, _ in states.values() for e in events))
    not_linked = [e for e in wanted if incident.value not in states[e][1].links]
    if not_linked:
        listed = ", ".join(not_linked[:5]) + (
            f" and {len(not_linked) - 5} more" if len(not_linked) > 5 else ""
        )
        raise InvalidInput(f"{listed} is not linked to {incident}; nothing was unlinked")
    details = {**(requested_via or {}), "incident": incident.value, "reason": reason}
    for evidence_id in wanted:
        record(vault, catalog, evidence_id, "unlink", actor=actor.user_id, role=actor.role, details=details)
        log.info("unlinked", extra={"evidence_id": evidence_id, "incident": incident.value})
    return LinkResult(incident.value, tuple(wanted))


# -- at ingest ------------------------------------------------------------------------------------


def link_at_ingest(
    vault: Vault,
    catalog: Catalog | None,
    evidence_id: str,
    incidents: Iterable[str],
    *,
    actor: str,
    role: str,
) -> list[CustodyEvent]:
    """Link a just-stored item (new or duplicate) to the incidents named at ingest, each once.
    References were validated and the role checked before the ingest started (``resolve_device``)."""
    incidents = list(incidents)
    if not incidents:
        return []
    _, state = item_state(vault, evidence_id)
    written = []
    for ref in incidents:
        if ref in state.links:
            continue
        details = {
            "incident": ref,
            "category": known_category(catalog, IncidentRef(ref)),
            "reason": "named when the device was ingested",
            "source": "ingest",
        }
        written.append(record(vault, catalog, evidence_id, "link", actor=actor, role=role, details=details))
    return written


# -- from a records-system feed -------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedLink:
    evidence_id: str
    incident: str
    reason: str


@dataclass(frozen=True)
class FeedClosure:
    evidence_id: str
    incident: str
    closed_at: datetime


@dataclass(frozen=True)
class FeedReport:
    incidents: int
    """Feed rows accepted."""
    rejected: tuple[RejectedRow, ...]
    linked: tuple[FeedLink, ...]
    already_linked: int
    ambiguous: tuple[AmbiguousItem, ...]
    kept_unlinked: tuple[tuple[str, str], ...]
    undated: tuple[str, ...]
    skipped: tuple[SkippedLink, ...] = ()
    """Matches the vault refused (item gone or disposed since it was catalogued)."""
    dry_run: bool = False
    failed: tuple[SkippedLink, ...] = field(default=())
    """Links (and closures) that could not be written (storage failure); re-running the feed writes them."""
    closed: tuple[FeedClosure, ...] = ()
    """Case closures the feed gave, recorded on linked items (or, in a dry run, to be recorded)."""
    closures_already: int = 0
    closures_refused: str | None = None
    """Why the feed's closures were not recorded (the user may not record closures)."""

    def as_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "incidents": self.incidents,
            "linked": [
                {"evidence_id": x.evidence_id, "incident": x.incident, "category": x.category, "row": x.row}
                for x in self.linked
            ],
            "already_linked": self.already_linked,
            "ambiguous": [
                {"evidence_id": a.evidence_id, "incidents": list(a.incidents)} for a in self.ambiguous
            ],
            "kept_unlinked": [{"evidence_id": e, "incident": i} for e, i in self.kept_unlinked],
            "undated": list(self.undated),
            "rejected_rows": [{"row": r.row, "reason": r.reason} for r in self.rejected],
            "skipped": [
                {"evidence_id": s.evidence_id, "incident": s.incident, "reason": s.reason}
                for s in self.skipped
            ],
            "failed": [
                {"evidence_id": s.evidence_id, "incident": s.incident, "reason": s.reason}
                for s in self.failed
            ],
            "closures": {
                "recorded": [
                    {
                        "evidence_id": c.evidence_id,
                        "incident": c.incident,
                        "closed_at": c.closed_at.isoformat(),
                    }
                    for c in self.closed
                ],
                "already": self.closures_already,
                "refused": self.closures_refused,
            },
        }


def read_feed_file(path: Path, settings: Settings) -> Feed:
    """Read and parse a feed export a piece at a time (``evidence.feed.read_feed``: the file's text is
    never held whole); bad rows come back as rejected, an unusable file is refused."""
    try:
        size = path.stat().st_size
        if size > MAX_FEED_BYTES:
            raise InvalidInput(f"{path} is {size} bytes; a feed may be at most {MAX_FEED_BYTES} bytes")
        with path.open("rb") as stream:
            return read_feed(stream, name=path.name, pattern=settings.incident_ref_pattern)
    except FileNotFoundError:
        raise InvalidInput(f"{path} does not exist: give the records-system export to link from") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder: give the export file itself") from None
    except OSError as err:
        raise InvalidInput(f"{path} cannot be read: {err.strerror or err}") from None


def feed_candidates(catalog: Catalog, feed: Feed, tolerance: timedelta) -> list[DatedItem]:
    """Catalogued items of the feed's officers from the opening of each officer's first window on, one
    query per officer. No upper bound: items without a recording time sort by their (later) ingest
    time, and they must be seen to be reported as undated."""
    opens: dict[str, datetime] = {}
    for incident in feed.incidents:
        opens[incident.officer_id] = min(opens.get(incident.officer_id, incident.start), incident.start)
    found = []
    for officer, first in sorted(opens.items()):
        found.extend(catalog.items(officer=officer, since=first - tolerance))
    unlinked = catalog.unlinked(item.evidence_id for item in found)
    refused: dict[str, set[str]] = {}
    for evidence_id, ref in unlinked:
        refused.setdefault(evidence_id, set()).add(ref)
    return [
        DatedItem(
            item.evidence_id,
            item.officer_id,
            item.recorded_at,
            frozenset(item.incidents),
            frozenset(refused.get(item.evidence_id, ())),
        )
        for item in found
    ]


def link_feed(
    vault: Vault,
    catalog: Catalog,
    feed: Feed,
    actor: Actor,
    *,
    tolerance: timedelta,
    dry_run: bool = False,
) -> FeedReport:
    """Link every unambiguous match of the feed (rules in ``evidence.feed``). Re-running the same
    feed writes nothing: matches already linked are left alone, checked against each item's chain."""
    actor.require("link")
    plan = match_feed(feed, feed_candidates(catalog, feed, tolerance), tolerance)
    linked: list[FeedLink] = []
    skipped: list[SkippedLink] = []
    failed: list[SkippedLink] = []
    already = len(plan.already_linked)
    if dry_run:
        linked = list(plan.to_link)
    else:
        with ThreadPoolExecutor(max_workers=FEED_WRITERS) as pool:
            outcomes = list(pool.map(lambda link: _feed_link(vault, catalog, link, actor), plan.to_link))
        for link, outcome in zip(plan.to_link, outcomes, strict=True):
            if outcome == "linked":
                linked.append(link)
            elif outcome == "already":
                already += 1
            elif isinstance(outcome, NotFound):
                skipped.append(SkippedLink(link.evidence_id, link.incident, str(outcome)))
            else:
                failed.append(SkippedLink(link.evidence_id, link.incident, str(outcome)))
    closed, closures_already, closures_refused = _feed_closures(vault, catalog, feed, actor, dry_run, failed)
    report = FeedReport(
        incidents=len(feed.incidents),
        rejected=feed.rejected,
        linked=tuple(linked),
        already_linked=already,
        ambiguous=plan.ambiguous,
        kept_unlinked=plan.kept_unlinked,
        undated=plan.undated,
        skipped=tuple(skipped),
        dry_run=dry_run,
        failed=tuple(failed),
        closed=tuple(closed),
        closures_already=closures_already,
        closures_refused=closures_refused,
    )
    log.info(
        "feed linked",
        extra={
            "linked": len(report.linked),
            "already": report.already_linked,
            "ambiguous": len(report.ambiguous),
            "rejected_rows": len(report.rejected),
            "dry_run": dry_run,
        },
    )
    return report


def _feed_closures(
    vault: Vault, catalog: Catalog, feed: Feed, actor: Actor, dry_run: bool, failed: list[SkippedLink]
) -> tuple[list[FeedClosure], int, str | None]:
    """Closures the feed gives, recorded after its links (so newly linked items are covered)."""
    given = feed.closures()
    if not given:
        return [], 0, None
    if not may_close(actor):
        return (
            [],
            0,
            f"the feed gives {len(given)} case closure(s), but {actor.user_id} ({actor.role}) may not record "
            "closures: run the feed as an investigator or storage admin to record them",
        )
    recorded: list[FeedClosure] = []
    already = 0
    if dry_run:
        for ref, (closed_at, _) in sorted(given.items()):
            for item in catalog.items(incident=ref):
                if dict(item.closures).get(ref) == closed_at:
                    already += 1
                else:
                    recorded.append(FeedClosure(item.evidence_id, ref, closed_at))
        return recorded, already, None
    for report in close_from_feed(vault, catalog, feed, actor):
        for outcome in report.outcomes:
            if outcome.status in ("closed", "date corrected") and report.closed_at is not None:
                recorded.append(FeedClosure(outcome.evidence_id, report.incident, report.closed_at))
            elif outcome.status == "already closed":
                already += 1
            elif outcome.status == FAILED:
                failed.append(
                    SkippedLink(outcome.evidence_id, report.incident, f"closure not recorded: {outcome.note}")
                )
    return recorded, already, None


def _feed_link(
    vault: Vault, catalog: Catalog, link: FeedLink, actor: Actor
) -> Literal["linked", "already"] | EvidenceError:
    try:
        events, state = item_state(vault, link.evidence_id)
        if link.incident in state.links:
            note_events(catalog, events)  # the catalog had missed it; now it has not
            return "already"
        details = {
            "incident": link.incident,
            "category": link.category or known_category(catalog, IncidentRef(link.incident)),
            "reason": f"matched by officer and recording time to the records-system feed (row {link.row})",
            "source": "feed",
        }
        record(
            vault, catalog, link.evidence_id, "link", actor=actor.user_id, role=actor.role, details=details
        )
    except EvidenceError as err:
        return err
    return "linked"
