"""What retention does to an item's stored objects: extend their lock, hold them, dispose of them.

The objects of an item are every version of its manifest (``items/<id>/``) and of the content and
thumbnail objects any of those manifest versions names. The custody chain (``custody/<id>/``) is not
part of the item here: disposal never deletes it, because the record of a deletion must outlive the
evidence (``docs/custody.md`` §1); its lock is extended with the item's and again at disposal.

Disposal is crypto-shredding as well as deletion. The item's data key exists only wrapped inside its
manifest (for the X25519 key and, with KMS, as a KMS ciphertext blob), so once every manifest version
is gone nothing that remains anywhere, even a copy of a content object, can be decrypted. Objects are
deleted content and thumbnail first and manifest last: an interrupted disposal leaves a manifest that
still names what is left, and the next run finishes it (``plan_disposal`` again, ``dispose`` again).

Every function here acts on storage only. Whether an item may be disposed of is the policy's decision
(``evidence.retention``), recorded in the custody chain by the caller *before* calling :func:`dispose`.
The storage rules still apply underneath, and are never bypassed: a legal hold on any version, or a lock
in force on any version (GOVERNANCE or COMPLIANCE), stops a disposal before anything is deleted. The
storage lock backs the policy: were the program wrong about the date (a simulated clock, a bug, a
policy file edited to a shorter period), the store itself refuses a premature delete, so disposal needs
no ``s3:BypassGovernanceRetention`` and the storage admin is not given it (``docs/retention.md`` §5).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from evidence import layout
from evidence.custody import CustodyEvent
from evidence.errors import IntegrityError, LockedError, NotFound
from evidence.manifest import decode_manifest
from storage.base import LockMode, ObjectInfo, Retention
from storage.vault import Vault

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemObjects:
    """Every stored version that belongs to one item, delete markers included."""

    evidence_id: str
    manifests: tuple[ObjectInfo, ...]
    """Versions under ``items/<id>/``."""
    objects: tuple[ObjectInfo, ...]
    """Versions of the content and thumbnail objects the manifests name."""

    @property
    def all(self) -> tuple[ObjectInfo, ...]:
        """In deletion order: content and thumbnails first, manifests last."""
        return self.objects + self.manifests

    @property
    def versions(self) -> tuple[ObjectInfo, ...]:
        """Real versions (delete markers carry no data, no lock and no hold)."""
        return tuple(info for info in self.all if not info.is_delete_marker)

    @property
    def empty(self) -> bool:
        return not self.all

    def held(self) -> tuple[ObjectInfo, ...]:
        return tuple(info for info in self.versions if info.legal_hold)

    def locked_until(self) -> datetime | None:
        """The earliest retain-until among the versions: what the item as a whole is locked to."""
        dates = [info.retention.retain_until for info in self.versions if info.retention is not None]
        return min(dates) if dates else None

    def locked_at(self, now: datetime) -> tuple[ObjectInfo, ...]:
        """The versions whose lock (GOVERNANCE or COMPLIANCE) is still in force at ``now``: the store
        refuses to delete any of them without a bypass, which disposal never uses."""
        return tuple(
            info for info in self.versions if info.retention is not None and info.retention.retain_until > now
        )


def item_objects(vault: Vault, evidence_id: str) -> ItemObjects:
    """List the item's versions. A manifest version that cannot be read is an ``IntegrityError``: the
    objects it names could not be found, so nothing may be disposed of on a partial list."""
    manifests = tuple(vault.store.list_versions(layout.item_prefix(evidence_id)))
    object_keys: list[str] = []
    for info in manifests:
        if info.is_delete_marker or not info.key.endswith("/manifest.json"):
            continue
        try:
            manifest = decode_manifest(b"".join(vault.store.get(info.key, version_id=info.version_id)))
        except IntegrityError as err:
            raise IntegrityError(
                f"{evidence_id}: manifest version {info.version_id} is unreadable ({err}); "
                "its objects cannot be listed, so the item is left as it is"
            ) from err
        for ref in (manifest.content, manifest.thumbnail):
            if ref is not None and ref.key not in object_keys:
                object_keys.append(ref.key)
    objects = tuple(info for key in object_keys for info in vault.store.list_versions(key) if info.key == key)
    return ItemObjects(evidence_id, manifests, objects)


def custody_versions(vault: Vault, evidence_id: str) -> tuple[ObjectInfo, ...]:
    return tuple(vault.store.list_versions(layout.custody_prefix(evidence_id)))


# -- Object Lock ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockChange:
    evidence_id: str
    retain_until: datetime
    previous_retain_until: datetime | None
    """The earliest lock among the versions before the change."""
    extended: int
    """Versions whose retain-until moved; versions already locked that long are left alone."""


def extend_lock(
    vault: Vault,
    evidence_id: str,
    retain_until: datetime,
    *,
    objects: ItemObjects | None = None,
    include_custody: bool = True,
) -> LockChange:
    """Move the retain-until of every version of the item (and of its custody records) to at least
    ``retain_until``. Never shortens; a COMPLIANCE lock stays COMPLIANCE."""
    objects = objects if objects is not None else item_objects(vault, evidence_id)
    versions = objects.versions + (_custody_records(vault, evidence_id) if include_custody else ())
    previous = _earliest_lock(versions)
    extended = _extend_versions(vault, versions, retain_until)
    log.info("lock extended", extra={"evidence_id": evidence_id, "versions": extended})
    return LockChange(evidence_id, retain_until, previous, extended)


def extend_records(vault: Vault, evidence_id: str, retain_until: datetime) -> int:
    """Lock the item's custody records until at least ``retain_until`` (after a disposal, the chain
    is the record that the evidence existed and was destroyed lawfully)."""
    return _extend_versions(vault, _custody_records(vault, evidence_id), retain_until)


def _custody_records(vault: Vault, evidence_id: str) -> tuple[ObjectInfo, ...]:
    return tuple(v for v in custody_versions(vault, evidence_id) if not v.is_delete_marker)


def _extend_versions(vault: Vault, versions: Iterable[ObjectInfo], retain_until: datetime) -> int:
    extended = 0
    for info in versions:
        current = info.retention
        if current is not None and current.retain_until >= retain_until:
            continue
        # a lock keeps its mode (storage.rules.refuse_if_shortening): only a version without one
        # takes the vault's
        mode: LockMode = current.mode if current is not None else vault.settings.lock_mode
        vault.store.extend_retention(info.key, info.version_id, Retention(mode, retain_until))
        extended += 1
    return extended


def _earliest_lock(versions: Iterable[ObjectInfo]) -> datetime | None:
    dates = [info.retention.retain_until for info in versions if info.retention is not None]
    return min(dates) if dates else None


# -- legal holds ------------------------------------------------------------------------------------


def set_hold(vault: Vault, evidence_id: str, on: bool, *, objects: ItemObjects | None = None) -> int:
    """Put (or take off) the S3 legal hold on every version of the item; returns versions changed.
    A legal hold is one flag per version, whoever set it: the caller decides whether another hold
    in force means it must stay on."""
    objects = objects if objects is not None else item_objects(vault, evidence_id)
    changed = 0
    for info in objects.versions:
        if info.legal_hold != on:
            vault.store.set_legal_hold(info.key, info.version_id, on)
            changed += 1
    log.info("legal hold %s", "set" if on else "released", extra={"evidence_id": evidence_id})
    return changed


# -- disposal ---------------------------------------------------------------------------------------


def refuse_if_undisposable(objects: ItemObjects, now: datetime | None = None) -> None:
    """Raise ``LockedError`` when storage itself forbids the disposal at ``now`` (by default the real
    clock, which is the one the store judges by): a legal hold on any version, or a lock in force on
    any version, whatever its mode. Checked before anything is deleted, so an item is never
    half-disposed by a rule the store would have enforced part-way."""
    moment = now or datetime.now(UTC)
    held = objects.held()
    if held:
        raise LockedError(
            f"{objects.evidence_id} is under a legal hold in storage ({len(held)} version(s), e.g. "
            f"{held[0].key}); it cannot be disposed of until every hold is released"
        )
    locks = [info.retention for info in objects.locked_at(moment) if info.retention is not None]
    if locks:
        until = max(lock.retain_until for lock in locks).astimezone(UTC)
        modes = sorted({lock.mode for lock in locks})
        never = ", which nobody can shorten" if "COMPLIANCE" in modes else ""
        raise LockedError(
            f"storage lock in force until {until.isoformat(timespec='seconds')} "
            f"({' and '.join(modes)} on {len(locks)} version(s){never}); "
            "it will be disposed of by a run after that"
        )


def dispose(vault: Vault, objects: ItemObjects) -> int:
    """Delete every version in ``objects`` (content and thumbnails, then manifests). Returns the
    number deleted. Versions already gone (another run finished them) are skipped, so re-running
    after an interruption completes the disposal. Never with a governance bypass: a version still
    locked is refused by the store as well as by the check here."""
    refuse_if_undisposable(objects)
    deleted = 0
    for info in objects.all:
        try:
            vault.store.delete_version(info.key, info.version_id)
        except NotFound:
            continue
        deleted += 1
    log.info("disposed", extra={"evidence_id": objects.evidence_id, "versions": deleted})
    return deleted


def disposal_event(vault: Vault, evidence_id: str) -> CustodyEvent | None:
    """The item's first ``disposal`` custody event, if any."""
    return vault.custody.disposal(evidence_id)


def require_item(vault: Vault, evidence_id: str) -> None:
    """``NotFound`` naming the disposal when the item was disposed of; plain ``NotFound`` otherwise."""
    if vault.has_item(evidence_id):
        return
    notice = vault.custody.disposal_notice(evidence_id)
    raise NotFound(notice or f"no evidence item {evidence_id} in {vault.store.url}")
