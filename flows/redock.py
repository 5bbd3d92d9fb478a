"""Re-docking a device that was not wiped: a file the station already stored from it is confirmed by
reading and hashing it on the station, not by uploading it again.

The evidence id is keyed on the whole file's SHA-256, so without this a device docked a second time
(an officer's camera twice in a shift, a station that docks without ``--wipe``) is uploaded byte for
byte before each file turns out to be a duplicate. The station's journal remembers, per device serial
and path, the size, modification time, inode, SHA-256 and evidence id of each file whose stored copy
was verified. A file whose size and modification time match is read once, locally, for its SHA-256
only (no encryption, no upload), and called a duplicate only if that hash gives the remembered
evidence id and the vault's own account of the item verifies (``Vault.confirm_stored``).

Why the local read is never skipped: the file is evidence. Size and time are what a camera or a
person can set (a camera that rewrites a clip in place, a forged modification time); calling such a
file the old item would lose the new content, and wiping it on that word would destroy it. The hash
is the proof that the bytes on the device are the bytes in the vault. Reading locally is still far
cheaper than uploading: no network, no encryption, and nothing written to the store.

The inode is kept but not matched on: FAT and exFAT, what most cameras present, get inode numbers
made up anew at each mount, so a re-dock after unplugging would never match; the hash decides anyway.
Nothing here changes de-duplication across devices: a file seen first on another device (or not
remembered at all) goes the usual way, and the vault finds it stored after reading it once.
"""

from __future__ import annotations

import hashlib
import logging
import os

from evidence.device import DeviceFile, FileChanged, ensure_unchanged, open_device_file
from evidence.errors import NotFound
from flows.journal import IngestJournal, RememberedFile
from storage.vault import READ_SIZE, StoredItem, Vault

log = logging.getLogger(__name__)

CONFIRMED_LOCALLY = "already stored from this device; confirmed by its local hash, nothing uploaded"
"""The note on a duplicate found this way, so a report says why it was quick."""


def device_memory(vault: Vault) -> IngestJournal | None:
    """The station's memory of device files: its journal, when the vault was opened with one."""
    journal = vault.journal
    return journal if isinstance(journal, IngestJournal) else None


def recognise_redocked(
    vault: Vault, item: DeviceFile, device_serial: str, memory: IngestJournal
) -> StoredItem | None:
    """The stored item this device file is, if the station stored it from this device before and the
    file's own hash says it is still those bytes; None (ingest it the usual way) otherwise. Storage
    errors while confirming propagate, as they would from the usual path's duplicate check."""
    remembered = memory.remembered_file(device_serial, item.relative)
    if remembered is None or (remembered.size, remembered.mtime_ns) != (item.size, item.mtime_ns):
        return None
    try:
        sha256, size = _hash_unchanged(item)
    except (FileChanged, OSError):
        return None  # the usual path opens it again, and reports it deferred or failed
    if (size, sha256) != (remembered.size, remembered.sha256) or (
        vault.evidence_id_for(sha256) != remembered.evidence_id
    ):
        # same size and time, other bytes: rewritten in place, or its time set back
        log.warning(
            "device file has the size and time of an item stored from it, but other contents",
            extra={"device": device_serial, "evidence_id": remembered.evidence_id},
        )
        memory.forget_file(device_serial, item.relative)
        return None
    try:
        stored = vault.confirm_stored(remembered.evidence_id, sha256, size)
    except NotFound:  # disposed of, or the vault is not the one the station stored it in
        memory.forget_file(device_serial, item.relative)
        return None
    log.info(
        "re-docked file confirmed by its local hash",
        extra={"device": device_serial, "evidence_id": stored.evidence_id},
    )
    return stored


def remember_stored(memory: IngestJournal, device_serial: str, item: DeviceFile, stored: StoredItem) -> None:
    """Note a device file whose stored copy was just verified (ingested or found a duplicate)."""
    memory.remember_file(
        device_serial,
        item.relative,
        RememberedFile(item.size, item.mtime_ns, item.inode, stored.sha256, stored.evidence_id),
    )


def _hash_unchanged(item: DeviceFile) -> tuple[str, int]:
    """SHA-256 and size of the scanned file, read once through a descriptor opened as for an ingest
    (no link followed, still the scanned file) and checked unchanged after the last byte."""
    fd = open_device_file(item)
    with os.fdopen(fd, "rb", buffering=0) as source:
        digest = hashlib.sha256()
        size = 0
        while chunk := source.read(READ_SIZE):
            digest.update(chunk)
            size += len(chunk)
        ensure_unchanged(item, os.fstat(fd))
    return digest.hexdigest(), size
