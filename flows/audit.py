"""Audit trails for the people who answer for the store's use (role ``audit``): who viewed, played,
downloaded, exported or searched what, when, from where and why.

Two views. An item's trail is its custody chain, read from the vault and verified (the signed record
of everything that happened to it). A person's trail spans every item, so it is read from indexes: the
catalog's access index (every ``access`` and ``export`` event, folded from the chains and rebuilt with
the catalog) and the portal's audit log of searches (``storage.audit_log``), with sign-ins where the
accounts store gives them; all merged in time order and yielded one entry at a time, so a trail of any
length streams (CSV) in constant memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from evidence.access import Actor
from evidence.custody import ChainVerification, CustodyEvent
from evidence.devices import require_identifier
from evidence.errors import NotFound
from evidence.ids import require_evidence_id

if TYPE_CHECKING:
    from storage.accounts import Accounts, SignInRecord
    from storage.audit_log import AuditLog, SearchRecord
    from storage.catalog import Catalog, IndexedAccess
    from storage.vault import Vault

SIGN_IN_LIMIT = 10_000
"""Sign-in records in a person's trail: the most recent (the accounts store lists them newest first)."""
PORTAL_FIELDS = ("via", "sign_in", "session", "client")
"""What the portal records with every access about where it came from (``web.people.Person``)."""
TRAIL_COLUMNS = (
    "at",
    "user",
    "role",
    "event",
    "action",
    "evidence_id",
    "incident",
    "purpose",
    "via",
    "sign_in",
    "session",
    "client",
    "details",
)


@dataclass(frozen=True)
class TrailEntry:
    """One thing a person did, as an audit trail lists it."""

    at: datetime
    user: str
    role: str
    event: str
    """``access``, ``export``, ``search``, ``sign-in`` ... or any custody event type (an item's trail)."""
    action: str = ""
    """For an access: ``view``, ``play``, ``download``, ``get``, ``thumbs``, ``show``, ``list``."""
    evidence_id: str = ""
    incident: str = ""
    purpose: str = ""
    via: str = ""
    """``portal``, or empty for the command line."""
    sign_in: str = ""
    session: str = ""
    client: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Everything else the record says (a range, a bag's name, a search's criteria, a reason)."""

    def row(self) -> dict[str, str]:
        """The entry as text cells (``TRAIL_COLUMNS``), for a table or a CSV file."""
        values = {name: getattr(self, name) for name in TRAIL_COLUMNS if name not in ("at", "details")}
        details = "; ".join(f"{key}={_text(value)}" for key, value in sorted(self.details.items()))
        return {"at": self.at.isoformat(), **{k: _text(v) for k, v in values.items()}, "details": details}


@dataclass(frozen=True)
class ItemTrail:
    evidence_id: str
    verification: ChainVerification
    entries: tuple[TrailEntry, ...]


@dataclass(frozen=True)
class UserTrail:
    user_id: str
    entries: Iterator[TrailEntry]
    """In time order; read once."""
    accesses_indexed_from: datetime | None
    """The catalog's access index misses accesses before this (rebuild the catalog); None: complete."""
    sign_ins_from: datetime | None = None
    """Only sign-in records from this time on are included (the most recent ``SIGN_IN_LIMIT``)."""


def item_trail(vault: Vault, evidence_id: str, actor: Actor) -> ItemTrail:
    """Every custody event of the item, verified (a disposed item's chain remains and is shown too)."""
    require_evidence_id(evidence_id)
    actor.require("audit")
    chain = vault.custody.verify(evidence_id)
    if not chain.events and not chain.problems:
        raise NotFound(f"no custody chain for {evidence_id} in {vault.store.url}")
    return ItemTrail(evidence_id, chain, tuple(entry_of_event(e) for e in chain.events))


def user_trail(
    catalog: Catalog,
    audit_log: AuditLog,
    accounts: Accounts,
    user_id: str,
    actor: Actor,
) -> UserTrail:
    """The person's accesses and exports across every item, their searches and their sign-in records
    (sign-ins, failures, lock-outs, sign-outs, expiries), merged in time order."""
    actor.require("audit")
    require_identifier(user_id, "user id")
    accesses = (entry_of_access(a) for a in catalog.accesses_by(user_id))
    searches = (entry_of_search(s) for s in audit_log.searches_by(user_id))
    newest_first = accounts.sign_ins(user_id, limit=SIGN_IN_LIMIT + 1)
    cut_at = newest_first[SIGN_IN_LIMIT - 1].at if len(newest_first) > SIGN_IN_LIMIT else None
    sign_ins = [entry_of_sign_in(record) for record in reversed(newest_first[:SIGN_IN_LIMIT])]
    merged = heapq.merge(accesses, searches, sign_ins, key=lambda entry: entry.at)
    return UserTrail(user_id, iter(merged), catalog.access_index_gap(), cut_at)


def entry_of_event(event: CustodyEvent) -> TrailEntry:
    return _entry(event.at, event.actor, event.role, event.type, event.evidence_id, event.details)


def entry_of_access(access: IndexedAccess) -> TrailEntry:
    return _entry(access.at, access.actor, access.role, access.type, access.evidence_id, access.details)


def entry_of_search(search: SearchRecord) -> TrailEntry:
    return TrailEntry(
        at=search.at,
        user=search.user_id,
        role=search.role,
        event="search",
        via="portal",
        sign_in=search.sign_in,
        session=search.session,
        client=search.client,
        details={**search.criteria, "results": search.result_count},
        incident=search.criteria.get("incident", ""),
    )


def entry_of_sign_in(record: SignInRecord) -> TrailEntry:
    return TrailEntry(
        at=record.at,
        user=record.user_id or "",
        role="",
        event=record.event,
        via="portal",
        sign_in=record.method or "",
        session=record.session_id or "",
        client=record.client_address or "",
        details={"detail": record.detail} if record.detail else {},
    )


def _entry(
    at: datetime, user: str, role: str, event: str, evidence_id: str, details: Mapping[str, Any]
) -> TrailEntry:
    rest = {
        key: value
        for key, value in details.items()
        if key not in ("action", "incident", "purpose", *PORTAL_FIELDS) and value is not None
    }
    return TrailEntry(
        at=at,
        user=user,
        role=role,
        event=event,
        action=_text(details.get("action")),
        evidence_id=evidence_id,
        incident=_text(details.get("incident")),
        purpose=_text(details.get("purpose")),
        via=_text(details.get("via")),
        sign_in=_text(details.get("sign_in")),
        session=_text(details.get("session")),
        client=_text(details.get("client")),
        details=rest,
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
