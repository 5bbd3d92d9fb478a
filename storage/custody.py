"""Custody chains kept in the vault (``docs/custody.md``): append, read back, verify.

Appending is optimistic: read the chain's end, sign the next event, write it create-only at the next
position. Two writers racing for one position cannot both win, and the loser re-reads and appends
its event again at the next one, so the chain never forks. A position's record is its first version:
on a server that ignores If-None-Match the loser's version stays there too, after the record, and
verification accepts it only as the lost race it provably is (``evidence.custody.judge_later_versions``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from evidence import layout
from evidence.custody import (
    ChainVerification,
    CustodyEvent,
    decode_event,
    encode_event,
    judge_later_versions,
    new_event,
    verify_chain,
)
from evidence.errors import AlreadyExists, ConfigError, IntegrityError, NotFound, StorageUnavailable
from evidence.settings import Settings
from evidence.signing import SigningKey, VerifyingKey
from storage.base import LockMode, ObjectInfo, ObjectStore, Retention
from storage.open import open_store

log = logging.getLogger(__name__)
APPEND_ATTEMPTS = 16


@dataclass(frozen=True)
class _LastRecord:
    position: int
    data: bytes
    retention: Retention | None


@dataclass(frozen=True)
class StoredPosition:
    """One position of a chain as stored: its record and whatever was written there after it."""

    record: ObjectInfo | None
    """The first version that is not a delete marker; None if there is none (it was removed)."""
    later: tuple[ObjectInfo, ...]
    """Every other version and delete marker of the key, oldest first."""


def stored_positions(versions: Iterable[ObjectInfo]) -> dict[int, StoredPosition]:
    """A chain's positions from its records' versions (``ObjectStore.list_versions``: key order,
    newest first within a key)."""
    by_key: dict[str, list[ObjectInfo]] = {}
    for info in versions:
        by_key.setdefault(info.key, []).append(info)
    positions = {}
    for key, newest_first in by_key.items():
        oldest_first = newest_first[::-1]
        record = next((info for info in oldest_first if not info.is_delete_marker), None)
        later = tuple(info for info in oldest_first if info is not record)
        positions[layout.custody_position(key)] = StoredPosition(record, later)
    return positions


def open_for_verification(settings: Settings) -> CustodyLog:
    """The vault's custody chains, to read and verify (``docs/custody.md`` §5), opened from the vault URL
    and the storage credentials alone. Verifying needs public keys only, so a court or the defence can
    check a chain holding nothing secret: no id key, no decryption key, no signing key (without one,
    nothing can be appended)."""
    return CustodyLog(
        open_store(settings), station_id=settings.station_id, signer=None, retention=lambda: None
    )


class CustodyLog:
    def __init__(
        self,
        store: ObjectStore,
        *,
        station_id: str,
        signer: SigningKey | None,
        retention: Callable[[], Retention | None],
    ) -> None:
        self.store = store
        self.station_id = station_id
        self._signer = signer
        self._retention = retention
        self._published = False

    @property
    def signer(self) -> SigningKey:
        if self._signer is None:
            raise ConfigError("this machine has no custody signing key: run `evidence keys init`")
        return self._signer

    def publish_signer(self) -> None:
        """Put this machine's public key in the vault once, so verifiers can find it."""
        if self._published:
            return
        key = self.signer.verifying_key
        with contextlib.suppress(AlreadyExists):
            self.store.put_bytes(
                layout.signer_key(key.key_id), key.to_text().encode("ascii"), retention=None, if_absent=True
            )
        self._published = True

    def positions(self, evidence_id: str) -> dict[int, StoredPosition]:
        """The chain's positions as stored (one listing of its versions; no record is read)."""
        return stored_positions(self.store.list_versions(layout.custody_prefix(evidence_id)))

    def _read(self, info: ObjectInfo) -> bytes:
        return b"".join(self.store.get(info.key, version_id=info.version_id))

    def stored(self, evidence_id: str) -> list[tuple[int, bytes]]:
        """The chain as stored: (position, bytes) of each record (its first version), in order."""
        return self.read_records(self.positions(evidence_id))

    def read_records(self, positions: Mapping[int, StoredPosition]) -> list[tuple[int, bytes]]:
        return [
            (position, self._read(stored.record))
            for position, stored in sorted(positions.items())
            if stored.record is not None
        ]

    def has_chain(self, evidence_id: str) -> bool:
        """Whether any record of the item's chain is stored (a listing; no record is read)."""
        return next(iter(self.store.list(layout.custody_prefix(evidence_id))), None) is not None

    def _last(self, evidence_id: str) -> _LastRecord | None:
        """The chain's last record: what an append follows. Only that record is fetched, so
        appending does not cost a read of the whole chain."""
        records = {
            position: stored.record
            for position, stored in self.positions(evidence_id).items()
            if stored.record is not None
        }
        if not records:
            return None
        position = max(records)
        return _LastRecord(position, self._read(records[position]), records[position].retention)

    def _retention_after(self, last: _LastRecord | None) -> Retention | None:
        """A new record is locked at least as long as the one it follows. Retention runs lock an
        evidential item's chain for years; an access recorded between two runs must not be the one
        link an admin could delete after the default 31 days, cutting the chain's tail."""
        new = self._retention()
        previous = last.retention if last else None
        if previous is None:
            return new
        if new is None:
            return previous
        mode: LockMode = "COMPLIANCE" if "COMPLIANCE" in (new.mode, previous.mode) else new.mode
        return Retention(mode, max(new.retain_until, previous.retain_until))

    def events(self, evidence_id: str) -> list[CustodyEvent]:
        return [decode_event(data) for _, data in self.stored(evidence_id)]

    def append(
        self,
        evidence_id: str,
        type: str,
        *,
        actor: str,
        role: str,
        details: Mapping[str, Any],
        at: datetime | None = None,
        expected_length: int | None = None,
        opening: bool = False,
    ) -> CustodyEvent:
        """Write the next event of the chain. ``expected_length`` is how many events someone saw
        stored before (the catalog, a verification just done): a chain found shorter lost events off
        its end, and writing at the freed position would cover that removal with a valid-looking
        record, so nothing is written and the gap is reported instead. ``opening``: the event opens
        the chain (the ingest) or is not written at all: ``AlreadyExists`` if position 0 is taken.

        Losing the race for a position (another writer's version there came first) appends the same
        event, same time, at the next one: verification matches the two (docs/custody.md §6)."""
        self.publish_signer()
        at = at or datetime.now(UTC)
        for _ in range(APPEND_ATTEMPTS):
            last = self._last(evidence_id)
            position = last.position + 1 if last else 0
            if opening and position != 0:
                raise AlreadyExists(f"the custody chain of {evidence_id} is already open")
            if expected_length is not None and position < expected_length:
                raise IntegrityError(
                    f"custody chain of {evidence_id} ends early: {position} event(s) stored, "
                    f"{expected_length} recorded before; records were removed, so nothing more is "
                    f"written to it (run `evidence custody {evidence_id}`)"
                )
            event = new_event(
                last.data if last else None,
                evidence_id=evidence_id,
                seq=position,
                type=type,
                at=at,
                actor=actor,
                role=role,
                station=self.station_id,
                details=details,
                signer=self.signer,
            )
            encoded = encode_event(event)
            key = layout.custody_key(evidence_id, position)
            try:
                self.store.put_bytes(key, encoded, retention=self._retention_after(last), if_absent=True)
            except AlreadyExists:
                # Ed25519 signatures are deterministic, so identical bytes in the record mean this
                # very write landed and only its answer was lost (a retried create is refused): done
                if self._record_at(key) == encoded:
                    return event
                if opening:
                    raise
                continue  # another writer took this position; re-read and follow it
            log.info("custody event", extra={"evidence_id": evidence_id, "type": type, "seq": position})
            return event
        raise StorageUnavailable(f"custody chain of {evidence_id} is busy; try again")

    def _record_at(self, key: str) -> bytes | None:
        try:
            return b"".join(self.store.get(key, version_id=self.store.first_version(key)))
        except NotFound:
            return None

    def disposal(self, evidence_id: str) -> CustodyEvent | None:
        """The item's first ``disposal`` event, if it was disposed of."""
        return next((e for e in self.events(evidence_id) if e.type == "disposal"), None)

    def disposal_notice(self, evidence_id: str) -> str | None:
        """One line for someone asking for an item that was disposed of, read from its chain."""
        event = self.disposal(evidence_id)
        if event is None:
            return None
        return (
            f"{evidence_id} was disposed of on {event.at.astimezone(UTC).strftime('%Y-%m-%d')} under rule "
            f"{event.details.get('rule', '?')!r} ({event.details.get('policy', 'unknown policy')}); its "
            f"custody chain remains: run `evidence custody {evidence_id}`"
        )

    def public_keys(self, trusted: Mapping[str, VerifyingKey] | None = None) -> dict[str, VerifyingKey]:
        """Keys published in the vault, overridden by any the caller trusts from elsewhere. A court
        should pass the force's published keys as ``trusted`` and compare the reported signers."""
        keys: dict[str, VerifyingKey] = {}
        for info in self.store.list(layout.SIGNERS_PREFIX):
            record = self._record_at(info.key)  # the first version, like every create-once record
            if record is None:
                continue
            text = record.decode("ascii", "replace")
            try:
                key = VerifyingKey.from_text(text, source=info.key)
            except (ConfigError, ValueError):
                log.warning("unreadable signer record %s", info.key)
                continue
            if layout.signer_key(key.key_id) == info.key:  # a key filed under another id is ignored
                keys[key.key_id] = key
        keys.update(trusted or {})
        return keys

    def verify(
        self,
        evidence_id: str,
        *,
        trusted: Mapping[str, VerifyingKey] | None = None,
        trusted_only: bool = False,
        expected_length: int | None = None,
    ) -> ChainVerification:
        keys = dict(trusted or {}) if trusted_only else self.public_keys(trusted)
        positions = self.positions(evidence_id)
        return verify_records(
            evidence_id,
            self.read_records(positions),
            self.later_versions(positions),
            keys,
            expected_length=expected_length,
        )

    def later_versions(self, positions: Mapping[int, StoredPosition]) -> dict[int, list[bytes | None]]:
        """The bytes of every version written at a position after its record (``None``: a delete
        marker), for ``verify_records``. On a server that honours If-None-Match there are none."""
        return {
            position: [None if info.is_delete_marker else self._read(info) for info in stored.later]
            for position, stored in sorted(positions.items())
            if stored.later
        }


def verify_records(
    evidence_id: str,
    stored: Sequence[tuple[int, bytes]],
    later: Mapping[int, Sequence[bytes | None]],
    keys: Mapping[str, VerifyingKey],
    *,
    expected_length: int | None = None,
) -> ChainVerification:
    """A chain as read from the store: its records (each position's first version) by position
    (``verify_chain``), and the versions written at a position after its record (``later``). Such a
    version is a lost race (``evidence.custody.judge_later_versions``) or someone wrote where the
    chain is append-only: a record was overwritten."""
    result = verify_chain(evidence_id, stored, keys, expected_length=expected_length)
    overwritten, lost_races = judge_later_versions(evidence_id, stored, later, keys)
    return ChainVerification(
        result.evidence_id,
        result.events,
        result.problems + overwritten,
        result.signers,
        lost_races=lost_races,
    )
