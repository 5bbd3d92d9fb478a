"""The catalog: an index for fast questions over the vault (by incident, officer, device, time, media
type, category), SQLite beside the station by default, PostgreSQL by URL when stations share one.

It is only an index. Every row is a fold over the clear part of manifests and over custody events
(``docs/custody.md`` §4), so it can be lost and rebuilt from the vault alone (:meth:`Catalog.rebuild`);
anything that must stand in court is checked against the vault, never taken from here. Values such
as incident references only ever reach SQL as bound parameters (SQLAlchemy Core).

Times are stored as naive UTC. A recording time a device stated without an offset is taken as UTC:
the same rule the feed matcher applies to naive times in a records-system export, so a force whose
cameras and records system both keep local time still lines the two up.

Events can reach the catalog out of order (two machines append to one chain, each records its own
event), so the state of an item is re-folded from the state-changing events the catalog keeps
(links, unlinks, holds, releases, retention, disposal), never patched incrementally. Access and export
events are also kept, one row each, as the index of who read what (the portal's per-user audit
trail); fixity and ingest events only move the chain length the catalog has seen.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from evidence import layout
from evidence.custody import CustodyEvent, check_recorded_manifest, decode_event
from evidence.errors import ConfigError, EvidenceError, IntegrityError
from evidence.manifest import Manifest
from evidence.retention import ChainFold, LinkFact, fold_chain
from evidence.times import in_utc
from storage.custody import StoredPosition, stored_positions, verify_records
from storage.databases import open_engine, translated_errors

if TYPE_CHECKING:
    from evidence.settings import Settings
    from evidence.signing import VerifyingKey
    from storage.vault import Vault

log = logging.getLogger(__name__)
_Read = TypeVar("_Read")

SCHEMA_VERSION = 1
STATE_EVENT_TYPES = frozenset(
    {"link", "unlink", "closure", "reopen", "review", "hold", "release", "retention", "disposal"}
)
"""Events that change what the catalog answers; the rest only lengthen the chain."""
KEPT_EVENT_TYPES = STATE_EVENT_TYPES | {"ingest"}
"""Kept in the catalog: the state events, and the ingest event, which is what remains of a disposed item."""
ACCESS_EVENT_TYPES = frozenset({"access", "export"})
"""Reads of an item, indexed by who read (``access_events``): a person's trail across every item."""
QUERY_CHUNK = 500
"""Ids per ``IN (...)`` list: well under SQLite's bound-parameter limit."""
REBUILD_BATCH = 500
REBUILD_READERS = 8

metadata = sa.MetaData()

catalog_info = sa.Table(
    "catalog_info",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.String(64), nullable=False),
)

items_table = sa.Table(
    "items",
    metadata,
    sa.Column("evidence_id", sa.String(32), primary_key=True),
    sa.Column("ingested_at", sa.DateTime, nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=True),
    sa.Column("seen_at", sa.DateTime, nullable=False),
    # recorded_at, else ingested_at: the one time range queries filter and sort on
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("device_serial", sa.String(64), nullable=False),
    sa.Column("officer_id", sa.String(64), nullable=True),
    sa.Column("media_type", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("flags", sa.Text, nullable=False),
    sa.Index("items_by_officer", "officer_id", "seen_at"),
    sa.Index("items_by_device", "device_serial", "seen_at"),
    sa.Index("items_by_time", "seen_at"),
    sa.Index("items_by_media_type", "media_type", "seen_at"),
)

chains_table = sa.Table(
    "chains",
    metadata,
    sa.Column("evidence_id", sa.String(32), primary_key=True),
    sa.Column("length", sa.Integer, nullable=False),
    sa.Column("retain_until", sa.DateTime, nullable=True),
    sa.Column("retention_category", sa.String(64), nullable=True),
    sa.Column("linked_at", sa.DateTime, nullable=True),
    sa.Column("disposed_at", sa.DateTime, nullable=True),
)

state_events_table = sa.Table(
    "state_events",
    metadata,
    sa.Column("evidence_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("incident", sa.String(64), nullable=True),
    sa.Column("category", sa.String(64), nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Index("state_events_by_incident", "incident", "type"),
)

links_table = sa.Table(
    "links",
    metadata,
    sa.Column("incident", sa.String(64), primary_key=True),
    sa.Column("evidence_id", sa.String(32), primary_key=True),
    sa.Column("category", sa.String(64), nullable=True),
    sa.Column("linked_at", sa.DateTime, nullable=False),
    sa.Index("links_by_item", "evidence_id"),
    sa.Index("links_by_category", "category"),
)

closures_table = sa.Table(
    # a table of its own (not a column of links) so catalogs made before closures gain it on open
    "closures",
    metadata,
    sa.Column("evidence_id", sa.String(32), primary_key=True),
    sa.Column("incident", sa.String(64), primary_key=True),
    sa.Column("closed_at", sa.DateTime, nullable=False),
)

reviews_table = sa.Table(
    # people's review decisions, folded (evidence.retention.fold_review); a table of its own for the
    # same reason as closures
    "reviews",
    metadata,
    sa.Column("evidence_id", sa.String(32), primary_key=True),
    sa.Column("keep_until", sa.DateTime, nullable=True),
    sa.Column("dispose_at", sa.DateTime, nullable=True),
)

disposals_finished_table = sa.Table(
    # items whose disposal was seen complete in the vault (nothing of them left but the chain), so the
    # retention run stops re-checking them; a table of its own for the same reason as closures. An
    # item disposed of but not in here is checked again every run until it is.
    "disposals_finished",
    metadata,
    sa.Column("evidence_id", sa.String(32), primary_key=True),
    sa.Column("confirmed_at", sa.DateTime, nullable=False),
)

holds_table = sa.Table(
    "holds",
    metadata,
    sa.Column("evidence_id", sa.String(32), primary_key=True),
    sa.Column("hold_id", sa.String(128), primary_key=True),
    sa.Column("incident", sa.String(64), nullable=True),
)

access_events_table = sa.Table(
    # every access and export event, so "what did this person read, when, from where and why" is one
    # indexed query rather than a read of every chain in the vault; a table of its own for the same
    # reason as closures (a catalog made before it gains it on open, and a rebuild fills it)
    "access_events",
    metadata,
    sa.Column("evidence_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Index("access_events_by_actor", "actor", "at"),
)

ACCESS_INDEX_NOTE = "access_index_from"
"""``catalog_info`` row present while the access index misses events older than its value: the catalog
was made before it had one, and has not been rebuilt since."""


@dataclass(frozen=True)
class CatalogItem:
    evidence_id: str
    ingested_at: datetime
    """UTC."""
    recorded_at: datetime | None
    """UTC-normalised capture time (a device time without offset is taken as UTC)."""
    station_id: str
    device_serial: str
    officer_id: str | None
    media_type: str
    kind: str
    size: int
    flags: tuple[str, ...]
    holds: tuple[str, ...]
    """Hold ids in force (holds minus releases)."""
    retain_until: datetime | None
    """From the latest ``retention`` event; None while retention was never extended."""
    retention_category: str | None
    linked_at: datetime | None
    """Time of the earliest link still in force."""
    disposed_at: datetime | None
    custody_length: int
    """Events the catalog has seen for the item: a chain found shorter lost events off its end."""
    reviewed_keep_until: datetime | None = None
    """The latest date a review kept the item until."""
    reviewed_dispose_at: datetime | None = None
    """The latest review date a review settled as a disposal."""
    links: tuple[LinkFact, ...] = ()
    """Each link in force with its own time, category and case closure: what retention counts from."""
    disposal_finished: bool = False
    """The disposal was seen complete in the vault; False for an item never disposed of."""

    @property
    def incidents(self) -> tuple[str, ...]:
        """Incident references currently linked (links minus unlinks)."""
        return tuple(sorted(link.incident for link in self.links))

    @property
    def categories(self) -> tuple[str, ...]:
        """Categories the item's current links named (e.g. ``domestic-abuse``)."""
        return tuple(sorted({link.category for link in self.links if link.category}))

    @property
    def closures(self) -> tuple[tuple[str, datetime], ...]:
        """(incident, when its case closed) for linked incidents whose closure is in force."""
        return tuple(sorted((link.incident, link.closed_at) for link in self.links if link.closed_at))

    def operational(self) -> dict[str, Any]:
        """Clear, operational facts only (nothing sealed exists here to leak), for ``--json``."""
        return {
            "evidence_id": self.evidence_id,
            "recorded_at": _iso(self.recorded_at),
            "ingested_at": _iso(self.ingested_at),
            "officer_id": self.officer_id,
            "device_serial": self.device_serial,
            "station_id": self.station_id,
            "media_type": self.media_type,
            "kind": self.kind,
            "size": self.size,
            "flags": list(self.flags),
            "incidents": list(self.incidents),
            "categories": list(self.categories),
            "holds": list(self.holds),
            "retain_until": _iso(self.retain_until),
            "retention_category": self.retention_category,
            "linked_at": _iso(self.linked_at),
            "disposed_at": _iso(self.disposed_at),
            "closed": {incident: _iso(at) for incident, at in self.closures},
            "reviewed_keep_until": _iso(self.reviewed_keep_until),
            "reviewed_dispose_at": _iso(self.reviewed_dispose_at),
        }


@dataclass(frozen=True)
class RebuildReport:
    items: int
    """Items indexed (with a manifest, or known only from the chain of a disposed item)."""
    events: int
    seconds: float
    problems: tuple[str, ...] = ()
    """Records that could not be read (damaged manifests or custody records)."""
    refused: tuple[tuple[str, str], ...] = ()
    """(evidence id, why) of every item not indexed because what the vault holds of it does not
    verify."""


@dataclass(frozen=True)
class IndexedAccess:
    """One access or export event, as the catalog indexed it (the chain holds the signed original)."""

    evidence_id: str
    seq: int
    type: str
    at: datetime
    """UTC."""
    actor: str
    role: str
    details: Mapping[str, Any]


@dataclass(frozen=True)
class IndexedStateEvent:
    """A state-changing event (link, unlink, hold, release, ...) as the catalog keeps it."""

    evidence_id: str
    seq: int
    type: str
    at: datetime
    """UTC."""
    actor: str
    details: Mapping[str, Any]


# -- the fold: pure ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateEvent:
    """What the fold needs from one custody event."""

    seq: int
    type: str
    at: datetime
    details: Mapping[str, Any]
    actor: str = ""

    @classmethod
    def of(cls, event: CustodyEvent) -> StateEvent:
        return cls(event.seq, event.type, event.at, event.details, event.actor)


def fold_events(events: Iterable[StateEvent]) -> ChainFold:
    """An item's state from the events the catalog keeps, in chain order whatever order they came in:
    the chain's own fold (``evidence.retention.fold_chain``), so the catalog answers what the chain says."""
    in_chain_order: list[StateEvent] = sorted(events, key=lambda e: e.seq)
    return fold_chain(in_chain_order)


# -- the catalog --------------------------------------------------------------------------------


class Catalog:
    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = open_engine(url, "catalog_url")
        self._shown_url = sa.engine.make_url(url).render_as_string(hide_password=True)
        with self._translated_errors():
            access_index_was_missing = not sa.inspect(self._engine).has_table(access_events_table.name)
            for attempt in range(len(metadata.tables) + 1):
                try:
                    metadata.create_all(self._engine)
                    break
                except sa.exc.OperationalError as err:
                    # another opener created a table between our check and our CREATE: it exists
                    # now, so look again (each retry finds at least one more table in place)
                    if "already exists" not in str(err) or attempt == len(metadata.tables):
                        raise
            self._check_schema()
            if access_index_was_missing:
                self._note_access_index_gap()

    @classmethod
    def open(cls, settings: Settings) -> Catalog:
        return cls(settings.catalog_url)

    def close(self) -> None:
        self._engine.dispose()

    # -- recording ------------------------------------------------------------------------------

    def record_manifest(self, manifest: Manifest) -> None:
        """Index an item's manifest (clear part only). Idempotent."""
        with self._translated_errors(), self._engine.begin() as conn:
            self._upsert_items(conn, [_item_row(manifest)])

    def record_manifests(self, manifests: Iterable[Manifest]) -> None:
        """Many manifests in one transaction (an import, a benchmark)."""
        with self._translated_errors(), self._engine.begin() as conn:
            for batch in _chunks(manifests, REBUILD_BATCH):
                self._upsert_items(conn, [_item_row(m) for m in batch])

    def record_event(self, event: CustodyEvent) -> None:
        self.record_events([event])

    def record_events(self, events: Iterable[CustodyEvent]) -> None:
        """Fold custody events in, in one transaction. Idempotent on (evidence id, position)."""
        events = list(events)
        if not events:
            return
        with self._translated_errors(), self._engine.begin() as conn:
            self._apply_events(conn, events)

    def record_item(self, manifest: Manifest | None, events: Sequence[CustodyEvent]) -> None:
        """A manifest and its chain (or what the chain alone says, for a disposed item), together."""
        with self._translated_errors(), self._engine.begin() as conn:
            row = _item_row(manifest) if manifest is not None else _item_row_from_chain(events)
            if row is not None:
                self._upsert_items(conn, [row])
            self._apply_events(conn, events)

    # -- questions ------------------------------------------------------------------------------

    def has_indexed(self, evidence_id: str, chain_length: int) -> bool:
        """Whether the item's row is here and its chain as far as ``chain_length`` events: then
        recording it again would change nothing."""
        stmt = (
            sa.select(chains_table.c.length)
            .join(items_table, items_table.c.evidence_id == chains_table.c.evidence_id)
            .where(chains_table.c.evidence_id == evidence_id)
        )
        with self._translated_errors(), self._engine.connect() as conn:
            length = conn.execute(stmt).scalar()
        return length is not None and int(length) == chain_length

    def custody_lengths(self, evidence_ids: Iterable[str]) -> dict[str, int]:
        """How many custody events the catalog has seen per item: a chain found shorter than this
        lost events off its end (``docs/custody.md`` §5). Items the catalog never saw are absent."""
        lengths: dict[str, int] = {}
        with self._translated_errors(), self._engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(evidence_ids)), QUERY_CHUNK):
                stmt = sa.select(chains_table.c.evidence_id, chains_table.c.length).where(
                    chains_table.c.evidence_id.in_(chunk)
                )
                lengths.update((row[0], int(row[1])) for row in conn.execute(stmt))
        return lengths

    def item(self, evidence_id: str) -> CatalogItem | None:
        found = self._select([items_table.c.evidence_id == evidence_id], include_disposed=True)
        return found[0] if found else None

    def items(
        self,
        *,
        incident: str | None = None,
        officer: str | None = None,
        device: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        media_type: str | None = None,
        category: str | None = None,
        include_disposed: bool = False,
    ) -> list[CatalogItem]:
        """Items matching every filter given, in time order. ``since``/``until`` bound the recording
        time (the ingest time for items with none) as ``since <= t < until``."""
        where = _item_filters(
            incident=incident,
            officer=officer,
            device=device,
            since=since,
            until=until,
            media_type=media_type,
            category=category,
        )
        return self._select(where, include_disposed=include_disposed)

    def search(
        self,
        *,
        incident: str | None = None,
        officer: str | None = None,
        device: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        kinds: Sequence[str] | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[CatalogItem], int]:
        """One page of the items matching every filter given (``kinds``: any of these media kinds), in
        time order then evidence id (a stable order, so pages neither skip nor repeat an item while
        nothing is added), and how many items match in all. Disposed items are left out."""
        where = _item_filters(incident=incident, officer=officer, device=device, since=since, until=until)
        if kinds is not None:
            where.append(items_table.c.kind.in_(list(kinds)))
        page = self._select(where, include_disposed=False, limit=limit, offset=offset)
        counted = sa.select(sa.func.count()).select_from(
            items_table.outerjoin(chains_table, chains_table.c.evidence_id == items_table.c.evidence_id)
        )
        counted = counted.where(chains_table.c.disposed_at.is_(None), *where)
        with self._translated_errors(), self._engine.connect() as conn:
            total = int(conn.execute(counted).scalar_one())
        return page, total

    def state_history(
        self, evidence_ids: Iterable[str], types: Iterable[str]
    ) -> dict[str, list[IndexedStateEvent]]:
        """The kept state events of these types per item (links and unlinks, holds and releases), in
        chain order: who did what, when and why, as the chains said when they were indexed."""
        wanted = sorted(set(types))
        found: dict[str, list[IndexedStateEvent]] = {}
        with self._translated_errors(), self._engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(evidence_ids)), QUERY_CHUNK):
                stmt = (
                    sa.select(state_events_table)
                    .where(state_events_table.c.evidence_id.in_(chunk), state_events_table.c.type.in_(wanted))
                    .order_by(state_events_table.c.evidence_id, state_events_table.c.seq)
                )
                for row in conn.execute(stmt):
                    found.setdefault(row.evidence_id, []).append(
                        IndexedStateEvent(
                            row.evidence_id,
                            int(row.seq),
                            row.type,
                            _from_db(row.at),
                            row.actor,
                            json.loads(row.details),
                        )
                    )
        return found

    def accesses_by(self, actor: str, *, batch_size: int = 1000) -> Iterator[IndexedAccess]:
        """Every access and export event ``actor`` made, across all items, oldest first, a batch at a
        time (constant memory however long the trail)."""
        after: tuple[datetime, str, int] | None = None
        table = access_events_table
        while True:
            stmt = sa.select(table).where(table.c.actor == actor)
            if after is not None:
                at, evidence_id, seq = after
                stmt = stmt.where(
                    sa.or_(
                        table.c.at > at,
                        sa.and_(table.c.at == at, table.c.evidence_id > evidence_id),
                        sa.and_(table.c.at == at, table.c.evidence_id == evidence_id, table.c.seq > seq),
                    )
                )
            stmt = stmt.order_by(table.c.at, table.c.evidence_id, table.c.seq).limit(batch_size)
            with self._translated_errors(), self._engine.connect() as conn:
                rows = list(conn.execute(stmt))
            for row in rows:
                yield IndexedAccess(
                    row.evidence_id,
                    int(row.seq),
                    row.type,
                    _from_db(row.at),
                    row.actor,
                    row.role,
                    json.loads(row.details),
                )
            if len(rows) < batch_size:
                return
            last = rows[-1]
            after = (last.at, last.evidence_id, int(last.seq))

    def access_index_gap(self) -> datetime | None:
        """When the access index began, if it misses earlier events (the catalog predates it and was not
        rebuilt since: ``evidence catalog rebuild`` fills it); None when it is complete."""
        stmt = sa.select(catalog_info.c.value).where(catalog_info.c.name == ACCESS_INDEX_NOTE)
        with self._translated_errors(), self._engine.connect() as conn:
            noted = conn.execute(stmt).scalar_one_or_none()
        return None if noted is None else datetime.fromisoformat(noted)

    def iter_items(self, *, include_disposed: bool = False, batch_size: int = 2000) -> Iterator[CatalogItem]:
        """Every item, in evidence id order, a batch at a time (constant memory over any catalog)."""
        after = ""
        while True:
            batch = self._select(
                [items_table.c.evidence_id > after],
                include_disposed=include_disposed,
                order_by_id=True,
                limit=batch_size,
            )
            yield from batch
            if len(batch) < batch_size:
                return
            after = batch[-1].evidence_id

    def note_disposal_finished(self, evidence_id: str) -> None:
        """Record that nothing of a disposed item is left in the vault but its custody chain."""
        with self._translated_errors(), self._engine.begin() as conn:
            self._note_disposals_finished(conn, [evidence_id])

    def incident_category(self, incident: str) -> str | None:
        """The category the latest link event naming one gave this incident, if any did."""
        stmt = (
            sa.select(state_events_table.c.category)
            .where(
                state_events_table.c.incident == str(incident),
                state_events_table.c.type == "link",
                state_events_table.c.category.is_not(None),
            )
            .order_by(state_events_table.c.at.desc())
            .limit(1)
        )
        with self._translated_errors(), self._engine.connect() as conn:
            return conn.execute(stmt).scalar_one_or_none()

    def unlinked(self, evidence_ids: Iterable[str]) -> set[tuple[str, str]]:
        """(evidence id, incident) pairs a person has ever unlinked: a feed must not undo that."""
        found: set[tuple[str, str]] = set()
        with self._translated_errors(), self._engine.connect() as conn:
            for chunk in _chunks(list(evidence_ids), QUERY_CHUNK):
                stmt = sa.select(state_events_table.c.evidence_id, state_events_table.c.incident).where(
                    state_events_table.c.evidence_id.in_(chunk), state_events_table.c.type == "unlink"
                )
                found.update((row[0], row[1]) for row in conn.execute(stmt) if row[1])
        return found

    def count(self) -> int:
        with self._translated_errors(), self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(items_table)).scalar_one())

    # -- rebuilding -------------------------------------------------------------------------------

    def rebuild(self, vault: Vault, *, readers: int = REBUILD_READERS) -> RebuildReport:
        """Forget everything and index the vault again from its manifests and custody chains alone.
        One transaction: until it commits, readers keep getting the previous answers.

        Only what verifies is indexed (``docs/custody.md`` §6): a chain whose signatures, order or
        links fail, that has a record overwritten, or that is shorter than the catalog saw before;
        a manifest other than the one its ingest event recorded; a manifest with no chain. Such an
        item is refused, not indexed (an edited ``recorded_at`` would otherwise move its retention
        date), and named in the report; the vault keeps it untouched for a person to look into."""
        started = time.monotonic()
        problems: list[str] = []
        refused: dict[str, str] = {}
        item_count = event_count = 0
        recorded: dict[str, tuple[str, str]] = {}  # manifest and content SHA-256 per item
        listed: set[str] = set()  # with a manifest in the vault, readable or not
        with (
            self._translated_errors(),
            ThreadPoolExecutor(max_workers=readers) as pool,
            self._engine.begin() as conn,
        ):
            seen_before = {
                row[0]: int(row[1])
                for row in conn.execute(sa.select(chains_table.c.evidence_id, chains_table.c.length))
            }
            for table in (
                links_table,
                closures_table,
                reviews_table,
                holds_table,
                disposals_finished_table,
                state_events_table,
                access_events_table,
                chains_table,
                items_table,
            ):
                conn.execute(sa.delete(table))
            # every verified chain is read in full below: the access index is complete from now on
            conn.execute(sa.delete(catalog_info).where(catalog_info.c.name == ACCESS_INDEX_NOTE))
            public_keys = vault.custody.public_keys()
            for batch in _chunks(vault.list_items(), REBUILD_BATCH):
                listed.update(batch)
                rows = []
                for evidence_id, stored in zip(
                    batch, pool.map(_reader(vault.stored_manifest), batch), strict=True
                ):
                    if isinstance(stored, Exception):
                        problems.append(f"{evidence_id}: manifest unreadable: {stored}")
                        refused[evidence_id] = f"manifest unreadable: {stored}"
                        continue
                    manifest, manifest_sha256 = stored
                    rows.append(_item_row(manifest))
                    recorded[evidence_id] = (manifest_sha256, manifest.content.sha256)
                self._upsert_items(conn, rows)
            chained: set[str] = set()

            def check(
                chain: tuple[str, dict[int, StoredPosition]],
            ) -> tuple[list[CustodyEvent], list[str], str | None]:
                return _verified_chain(
                    vault, chain, public_keys, seen_before.get(chain[0]), recorded.get(chain[0])
                )

            for chain_batch in _chunks(_chains_listed(vault), REBUILD_BATCH):
                events: list[CustodyEvent] = []
                orphan_rows = []
                for evidence_id, (chain, damaged, refusal) in zip(
                    (c[0] for c in chain_batch), pool.map(check, chain_batch), strict=True
                ):
                    chained.add(evidence_id)
                    problems.extend(damaged)
                    if refusal is not None:
                        refused[evidence_id] = refusal
                        continue
                    events.extend(chain)
                    if evidence_id not in recorded:
                        row = _item_row_from_chain(chain)
                        if row is not None:
                            orphan_rows.append(row)
                self._upsert_items(conn, orphan_rows)
                self._apply_events(conn, events)
                event_count += len(events)
            for evidence_id in recorded.keys() - chained:
                refused[evidence_id] = (
                    "manifest with no custody chain (an ingest stopped before its first event: "
                    "ingesting the device again writes it)"
                )
            for chunk in _chunks(sorted(refused), QUERY_CHUNK):
                conn.execute(sa.delete(items_table).where(items_table.c.evidence_id.in_(chunk)))
            item_count = int(conn.execute(sa.select(sa.func.count()).select_from(items_table)).scalar_one())
            # a disposal deletes the manifest last: a disposed item with no manifest left is finished
            disposed = conn.execute(
                sa.select(chains_table.c.evidence_id).where(chains_table.c.disposed_at.is_not(None))
            )
            self._note_disposals_finished(
                conn, [r.evidence_id for r in disposed if r.evidence_id not in listed]
            )
        report = RebuildReport(
            item_count,
            event_count,
            time.monotonic() - started,
            tuple(problems),
            tuple(sorted(refused.items())),
        )
        log.info(
            "catalog rebuilt",
            extra={
                "items": report.items,
                "events": report.events,
                "problems": len(report.problems),
                "refused": len(report.refused),
            },
        )
        return report

    # -- internals --------------------------------------------------------------------------------

    def _check_schema(self) -> None:
        with self._engine.begin() as conn:
            # first opener records the version; a concurrent first opener's row is as good as ours
            conn.execute(
                self._insert(catalog_info)
                .values(name="schema_version", value=str(SCHEMA_VERSION))
                .on_conflict_do_nothing()
            )
            stored = conn.execute(
                sa.select(catalog_info.c.value).where(catalog_info.c.name == "schema_version")
            ).scalar_one()
            if stored != str(SCHEMA_VERSION):
                raise ConfigError(
                    f"catalog at {self._shown_url} has schema version {stored}, this program expects "
                    f"{SCHEMA_VERSION}: point catalog_url at a new database and run `evidence catalog rebuild`"
                )

    def _note_access_index_gap(self) -> None:
        """A catalog that already indexed chains before it had an access index misses their earlier
        accesses: say so (until a rebuild) rather than show a person's trail as if it were whole."""
        with self._engine.begin() as conn:
            if conn.execute(sa.select(chains_table.c.evidence_id).limit(1)).first() is None:
                return
            conn.execute(
                self._insert(catalog_info)
                .values(name=ACCESS_INDEX_NOTE, value=datetime.now(UTC).isoformat())
                .on_conflict_do_nothing()
            )

    def _translated_errors(self) -> AbstractContextManager[None]:
        return translated_errors(
            f"catalog at {self._shown_url}",
            fix="check catalog_url, or point it at a new database and run `evidence catalog rebuild`",
        )

    def _insert(self, table: sa.Table) -> Any:
        if self._engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        if self._engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table)
        raise ConfigError(f"catalog_url {self._shown_url}: only SQLite and PostgreSQL are supported")

    def _upsert_items(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        stmt = self._insert(items_table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[items_table.c.evidence_id],
            set_={c.name: stmt.excluded[c.name] for c in items_table.c if c.name != "evidence_id"},
        )
        conn.execute(stmt, list(rows))

    def _apply_events(self, conn: Connection, events: Sequence[CustodyEvent]) -> None:
        if not events:
            return
        lengths: dict[str, int] = {}
        state_rows = []
        access_rows = []
        for event in events:
            lengths[event.evidence_id] = max(lengths.get(event.evidence_id, 0), event.seq + 1)
            if event.type in KEPT_EVENT_TYPES:
                state_rows.append(_state_row(event))
            elif event.type in ACCESS_EVENT_TYPES:
                access_rows.append(_access_row(event))
        chains = self._insert(chains_table)
        chains = chains.on_conflict_do_update(
            index_elements=[chains_table.c.evidence_id],
            set_={
                "length": sa.case(
                    (chains_table.c.length > chains.excluded.length, chains_table.c.length),
                    else_=chains.excluded.length,
                )
            },
        )
        # The chains row is written first and is the item's lock: on PostgreSQL a second station folding
        # the same item waits here, then (read committed) sees the first one's events in its fold.
        # Rows go in id order so two batches touching the same items cannot deadlock.
        conn.execute(chains, [{"evidence_id": key, "length": lengths[key]} for key in sorted(lengths)])
        if access_rows:
            conn.execute(
                self._insert(access_events_table).on_conflict_do_nothing(
                    index_elements=[access_events_table.c.evidence_id, access_events_table.c.seq]
                ),
                access_rows,
            )
        if not state_rows:
            return
        conn.execute(
            self._insert(state_events_table).on_conflict_do_nothing(
                index_elements=[state_events_table.c.evidence_id, state_events_table.c.seq]
            ),
            state_rows,
        )
        self._refold(
            conn, sorted({row["evidence_id"] for row in state_rows if row["type"] in STATE_EVENT_TYPES})
        )

    def _refold(self, conn: Connection, evidence_ids: Sequence[str]) -> None:
        if not evidence_ids:
            return
        stored: dict[str, list[StateEvent]] = {key: [] for key in evidence_ids}
        for chunk in _chunks(evidence_ids, QUERY_CHUNK):
            rows = conn.execute(
                sa.select(
                    state_events_table.c.evidence_id,
                    state_events_table.c.seq,
                    state_events_table.c.type,
                    state_events_table.c.at,
                    state_events_table.c.details,
                    state_events_table.c.actor,
                ).where(state_events_table.c.evidence_id.in_(chunk))
            )
            for row in rows:
                stored[row.evidence_id].append(
                    StateEvent(row.seq, row.type, _from_db(row.at), json.loads(row.details), row.actor)
                )
            for table in (links_table, closures_table, reviews_table, holds_table):
                conn.execute(sa.delete(table).where(table.c.evidence_id.in_(chunk)))
        link_rows: list[dict[str, Any]] = []
        closure_rows: list[dict[str, Any]] = []
        review_rows: list[dict[str, Any]] = []
        hold_rows: list[dict[str, Any]] = []
        chain_updates: list[dict[str, Any]] = []
        remains: list[dict[str, Any]] = []
        for evidence_id, events in stored.items():
            state = fold_events(events)
            if state.disposed_at is not None:
                # what a rebuild can know of a disposed item is what its chain says: index only that
                remains.extend(row for row in [_item_row_from_ingest(evidence_id, events)] if row is not None)
            link_rows.extend(
                {
                    "incident": ref,
                    "evidence_id": evidence_id,
                    "category": link.category,
                    "linked_at": _to_db(link.linked_at),
                }
                for ref, link in state.links.items()
            )
            closure_rows.extend(
                {"evidence_id": evidence_id, "incident": ref, "closed_at": _to_db(link.closed_at)}
                for ref, link in state.links.items()
                if link.closed_at is not None
            )
            if state.reviewed_keep_until is not None or state.reviewed_dispose_at is not None:
                review_rows.append(
                    {
                        "evidence_id": evidence_id,
                        "keep_until": _to_db_or_none(state.reviewed_keep_until),
                        "dispose_at": _to_db_or_none(state.reviewed_dispose_at),
                    }
                )
            hold_rows.extend(
                {"evidence_id": evidence_id, "hold_id": hold_id, "incident": ref}
                for hold_id, ref in state.holds.items()
            )
            chain_updates.append(
                {
                    "key": evidence_id,
                    "retain_until": _to_db_or_none(state.retain_until),
                    "retention_category": state.retention_category,
                    "linked_at": _to_db_or_none(state.linked_at),
                    "disposed_at": _to_db_or_none(state.disposed_at),
                }
            )
        self._upsert_items(conn, remains)
        if link_rows:
            conn.execute(sa.insert(links_table), link_rows)
        if closure_rows:
            conn.execute(sa.insert(closures_table), closure_rows)
        if review_rows:
            conn.execute(sa.insert(reviews_table), review_rows)
        if hold_rows:
            conn.execute(sa.insert(holds_table), hold_rows)
        conn.execute(
            sa.update(chains_table)
            .where(chains_table.c.evidence_id == sa.bindparam("key"))
            .values(
                retain_until=sa.bindparam("retain_until"),
                retention_category=sa.bindparam("retention_category"),
                linked_at=sa.bindparam("linked_at"),
                disposed_at=sa.bindparam("disposed_at"),
            ),
            chain_updates,
        )

    def _note_disposals_finished(self, conn: Connection, evidence_ids: Sequence[str]) -> None:
        if not evidence_ids:
            return
        now = _to_db(datetime.now(UTC))
        conn.execute(  # the first confirmation stands; another station's at the same moment is as good
            self._insert(disposals_finished_table).on_conflict_do_nothing(
                index_elements=[disposals_finished_table.c.evidence_id]
            ),
            [{"evidence_id": e, "confirmed_at": now} for e in dict.fromkeys(evidence_ids)],
        )

    def _select(
        self,
        where: Sequence[sa.ColumnElement[bool]],
        *,
        include_disposed: bool,
        order_by_id: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[CatalogItem]:
        joined = items_table.outerjoin(
            chains_table, chains_table.c.evidence_id == items_table.c.evidence_id
        ).outerjoin(
            disposals_finished_table, disposals_finished_table.c.evidence_id == items_table.c.evidence_id
        )
        stmt = sa.select(
            items_table,
            chains_table.c.length,
            chains_table.c.retain_until,
            chains_table.c.retention_category,
            chains_table.c.linked_at,
            chains_table.c.disposed_at,
            disposals_finished_table.c.confirmed_at.label("disposal_confirmed_at"),
        ).select_from(joined)
        for clause in where:
            stmt = stmt.where(clause)
        if not include_disposed:
            stmt = stmt.where(chains_table.c.disposed_at.is_(None))
        if order_by_id:
            stmt = stmt.order_by(items_table.c.evidence_id)
        else:
            stmt = stmt.order_by(items_table.c.seen_at, items_table.c.evidence_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        with self._translated_errors(), self._engine.connect() as conn:
            rows = list(conn.execute(stmt))
            links: dict[str, list[tuple[str, str | None, datetime]]] = {}
            holds: dict[str, list[str]] = {}
            closures: dict[str, list[tuple[str, datetime]]] = {}
            reviews: dict[str, tuple[datetime | None, datetime | None]] = {}
            for chunk in _chunks([row.evidence_id for row in rows], QUERY_CHUNK):
                for link in conn.execute(
                    sa.select(
                        links_table.c.evidence_id,
                        links_table.c.incident,
                        links_table.c.category,
                        links_table.c.linked_at,
                    ).where(links_table.c.evidence_id.in_(chunk))
                ):
                    links.setdefault(link.evidence_id, []).append(
                        (link.incident, link.category, _from_db(link.linked_at))
                    )
                for hold in conn.execute(
                    sa.select(holds_table.c.evidence_id, holds_table.c.hold_id).where(
                        holds_table.c.evidence_id.in_(chunk)
                    )
                ):
                    holds.setdefault(hold.evidence_id, []).append(hold.hold_id)
                for closure in conn.execute(
                    sa.select(
                        closures_table.c.evidence_id, closures_table.c.incident, closures_table.c.closed_at
                    ).where(closures_table.c.evidence_id.in_(chunk))
                ):
                    closures.setdefault(closure.evidence_id, []).append(
                        (closure.incident, _from_db(closure.closed_at))
                    )
                for review in conn.execute(
                    sa.select(reviews_table).where(reviews_table.c.evidence_id.in_(chunk))
                ):
                    reviews[review.evidence_id] = (
                        _from_db_or_none(review.keep_until),
                        _from_db_or_none(review.dispose_at),
                    )
        return [
            _catalog_item(
                row,
                links.get(row.evidence_id, []),
                holds.get(row.evidence_id, []),
                closures.get(row.evidence_id, []),
                reviews.get(row.evidence_id, (None, None)),
            )
            for row in rows
        ]


# -- helpers ----------------------------------------------------------------------------------------


def _item_row(manifest: Manifest) -> dict[str, Any]:
    ingested_at = _to_db(manifest.ingested_at)
    recorded_at = _parse_time(manifest.recorded_at)
    return {
        "evidence_id": manifest.evidence_id,
        "ingested_at": ingested_at,
        "recorded_at": _to_db_or_none(recorded_at),
        "seen_at": _to_db(recorded_at) if recorded_at is not None else ingested_at,
        "station_id": manifest.station_id,
        "device_serial": manifest.device_serial,
        "officer_id": manifest.officer_id,
        "media_type": manifest.media_type,
        "kind": manifest.kind,
        "size": manifest.size,
        "flags": json.dumps(list(manifest.flags)),
    }


def _item_row_from_chain(events: Sequence[CustodyEvent]) -> dict[str, Any] | None:
    if not events:
        return None
    return _item_row_from_ingest(events[0].evidence_id, [StateEvent.of(e) for e in events])


def _item_row_from_ingest(evidence_id: str, events: Iterable[StateEvent]) -> dict[str, Any] | None:
    """A disposed item's manifest is gone; its chain still says when, from which device and officer."""
    ingest = next((e for e in events if e.seq == 0 and e.type == "ingest"), None)
    if ingest is None:
        return None
    details = ingest.details
    at = _to_db(ingest.at)
    return {
        "evidence_id": evidence_id,
        "ingested_at": at,
        "recorded_at": None,
        "seen_at": at,
        "station_id": ingest.actor,
        "device_serial": _text(details.get("device")) or "",
        "officer_id": _text(details.get("officer")),
        "media_type": "",
        "kind": "",
        "size": int(details.get("size") or 0),
        "flags": "[]",
    }


def _item_filters(
    *,
    incident: str | None = None,
    officer: str | None = None,
    device: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    media_type: str | None = None,
    category: str | None = None,
) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if incident is not None:
        linked = sa.select(links_table.c.evidence_id).where(links_table.c.incident == str(incident))
        where.append(items_table.c.evidence_id.in_(linked))
    if category is not None:
        of_category = sa.select(links_table.c.evidence_id).where(links_table.c.category == category)
        where.append(items_table.c.evidence_id.in_(of_category))
    if officer is not None:
        where.append(items_table.c.officer_id == officer)
    if device is not None:
        where.append(items_table.c.device_serial == device)
    if media_type is not None:
        where.append(items_table.c.media_type == media_type)
    if since is not None:
        where.append(items_table.c.seen_at >= _to_db(since))
    if until is not None:
        where.append(items_table.c.seen_at < _to_db(until))
    return where


def _access_row(event: CustodyEvent) -> dict[str, Any]:
    return {
        "evidence_id": event.evidence_id,
        "seq": event.seq,
        "type": event.type,
        "at": _to_db(event.at),
        "actor": event.actor,
        "role": event.role,
        "details": json.dumps(dict(event.details), sort_keys=True),
    }


def _state_row(event: CustodyEvent) -> dict[str, Any]:
    return {
        "evidence_id": event.evidence_id,
        "seq": event.seq,
        "type": event.type,
        "at": _to_db(event.at),
        "actor": event.actor,
        "incident": _text(event.details.get("incident")),
        "category": _text(event.details.get("category")),
        "details": json.dumps(dict(event.details), sort_keys=True),
    }


def _catalog_item(
    row: Any,
    links: list[tuple[str, str | None, datetime]],
    holds: list[str],
    closures: list[tuple[str, datetime]],
    review: tuple[datetime | None, datetime | None],
) -> CatalogItem:
    closed = dict(closures)
    return CatalogItem(
        evidence_id=row.evidence_id,
        ingested_at=_from_db(row.ingested_at),
        recorded_at=_from_db_or_none(row.recorded_at),
        station_id=row.station_id,
        device_serial=row.device_serial,
        officer_id=row.officer_id,
        media_type=row.media_type,
        kind=row.kind,
        size=int(row.size),
        flags=tuple(json.loads(row.flags)),
        holds=tuple(sorted(holds)),
        retain_until=_from_db_or_none(row.retain_until),
        retention_category=row.retention_category,
        linked_at=_from_db_or_none(row.linked_at),
        disposed_at=_from_db_or_none(row.disposed_at),
        custody_length=int(row.length or 0),
        reviewed_keep_until=review[0],
        reviewed_dispose_at=review[1],
        links=tuple(LinkFact(ref, category, at, closed.get(ref)) for ref, category, at in sorted(links)),
        disposal_finished=row.disposal_confirmed_at is not None,
    )


def _chains_listed(vault: Vault) -> Iterator[tuple[str, dict[int, StoredPosition]]]:
    """(evidence id, its chain's positions) for every chain, from one listing of every version under
    custody/ (what ``CustodyLog.verify`` lists per chain)."""
    listed = vault.store.list_versions(layout.CUSTODY_PREFIX)
    for evidence_id, infos in itertools.groupby(listed, key=lambda info: info.key.split("/")[1]):
        yield evidence_id, stored_positions(infos)


def _verified_chain(
    vault: Vault,
    chain: tuple[str, dict[int, StoredPosition]],
    public_keys: Mapping[str, VerifyingKey],
    seen_before: int | None,
    recorded: tuple[str, str] | None,
) -> tuple[list[CustodyEvent], list[str], str | None]:
    """One chain read and verified as a read path would (``storage.vault.Vault.verify_item``):
    (its events, records that could not be read, why the item is refused or None)."""
    evidence_id, positions = chain
    stored = vault.custody.read_records(positions)
    damaged: list[str] = []
    for position, data in stored:
        try:
            decode_event(data)
        except EvidenceError as err:
            damaged.append(f"{layout.custody_key(evidence_id, position)}: {err}")
    later = vault.custody.later_versions(positions)
    verification = verify_records(evidence_id, stored, later, public_keys, expected_length=seen_before)
    if not verification.intact:
        listed = "; ".join(f"event {p.position}: {p.message}" for p in verification.problems[:5])
        return [], damaged, f"custody chain does not verify: {listed}"
    if recorded is not None:
        manifest_sha256, content_sha256 = recorded
        try:
            check_recorded_manifest(
                evidence_id,
                verification.events[0],
                manifest_sha256=manifest_sha256,
                content_sha256=content_sha256,
            )
        except IntegrityError as err:
            return [], damaged, str(err)
    return list(verification.events), damaged, None


def _reader(read: Callable[[str], _Read]) -> Callable[[str], _Read | Exception]:
    def guarded(evidence_id: str) -> _Read | Exception:
        try:
            return read(evidence_id)
        except EvidenceError as err:
            return err

    return guarded


def _chunks(values: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(values)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _to_db(value: datetime) -> datetime:
    # in_utc: a device's 9999-12-31T23:59:59-14:00 is indexed at the calendar's end, not an overflow
    return in_utc(value).replace(tzinfo=None)


def _to_db_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _to_db(value)


def _from_db(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _from_db_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _from_db(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
