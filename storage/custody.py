"""Custody chains kept in the vault (``docs/custody.md``): append, read back, verify.

Appending is optimistic: read the chain's end, sign the next event, write it create-only at the next
position. Two writers racing for one position cannot both win, and the loser re-reads and tries the
next one, so the chain never forks.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from evidence import layout
from evidence.custody import (
    ChainProblem,
    ChainVerification,
    CustodyEvent,
    decode_event,
    encode_event,
    new_event,
    verify_chain,
)
from evidence.errors import AlreadyExists, ConfigError, IntegrityError, StorageUnavailable
from evidence.settings import Settings
from evidence.signing import SigningKey, VerifyingKey
from storage.base import LockMode, ObjectStore, Retention
from storage.open import open_store

log = logging.getLogger(__name__)
APPEND_ATTEMPTS = 16


@dataclass(frozen=True)
class _LastRecord:
    position: int
    data: bytes
    retention: Retention | None


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

    def stored(self, evidence_id: str) -> list[tuple[int, bytes]]:
        """The chain as stored: (position, bytes) of each record's current version, in order."""
        records = []
        for info in self.store.list(layout.custody_prefix(evidence_id)):
            data = b"".join(self.store.get(info.key, version_id=info.version_id))
            records.append((layout.custody_position(info.key), data))
        return sorted(records, key=lambda r: r[0])

    def has_chain(self, evidence_id: str) -> bool:
        """Whether any record of the item's chain is stored (a listing; no record is read)."""
        return next(iter(self.store.list(layout.custody_prefix(evidence_id))), None) is not None

    def _last(self, evidence_id: str) -> _LastRecord | None:
        """The chain's last record: what an append follows. Only that record is fetched, so
        appending does not cost a read of the whole chain."""
        infos = list(self.store.list(layout.custody_prefix(evidence_id)))
        if not infos:
            return None
        last = max(infos, key=lambda info: layout.custody_position(info.key))
        data = b"".join(self.store.get(last.key, version_id=last.version_id))
        return _LastRecord(layout.custody_position(last.key), data, last.retention)

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
    ) -> CustodyEvent:
        """Write the next event of the chain. ``expected_length`` is how many events someone saw
        stored before (the catalog, a verification just done): a chain found shorter lost events off
        its end, and writing at the freed position would cover that removal with a valid-looking
        record, so nothing is written and the gap is reported instead."""
        self.publish_signer()
        for _ in range(APPEND_ATTEMPTS):
            last = self._last(evidence_id)
            position = last.position + 1 if last else 0
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
                at=at or datetime.now(UTC),
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
                # Ed25519 signatures are deterministic, so identical bytes there mean this very write
                # landed and only its answer was lost (a retried create is refused): done, not twice
                if b"".join(self.store.get(key)) == encoded:
                    return event
                continue  # another writer took this position; re-read and follow it
            log.info("custody event", extra={"evidence_id": evidence_id, "type": type, "seq": position})
            return event
        raise StorageUnavailable(f"custody chain of {evidence_id} is busy; try again")

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
            text = b"".join(self.store.get(info.key)).decode("ascii", "replace")
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
        versions = Counter(info.key for info in self.store.list_versions(layout.custody_prefix(evidence_id)))
        return verify_records(
            evidence_id, self.stored(evidence_id), versions, keys, expected_length=expected_length
        )


def verify_records(
    evidence_id: str,
    stored: Sequence[tuple[int, bytes]],
    versions: Mapping[str, int],
    keys: Mapping[str, VerifyingKey],
    *,
    expected_length: int | None = None,
) -> ChainVerification:
    """A chain as read from the store: its records' current bytes by position (``verify_chain``), and
    how many versions each record key under the chain's prefix has. A second version over a record
    (another write, a delete marker) means someone wrote where the chain is append-only."""
    result = verify_chain(evidence_id, stored, keys, expected_length=expected_length)
    overwritten = tuple(
        ChainProblem(layout.custody_position(key), f"has {count} versions: a record was overwritten")
        for key, count in sorted(versions.items())
        if count > 1
    )
    if not overwritten:
        return result
    return ChainVerification(result.evidence_id, result.events, result.problems + overwritten, result.signers)
