"""The evidence vault: items stored on an object store as encrypted, locked, verified objects.

Implements the write and read paths of ``docs/vault-layout.md``. One ingest reads the original once:
each chunk is hashed and encrypted (``evidence.stream``) and handed to a streaming upload; the item's
evidence id is known only at the end, so the content goes under a random object key and the manifest,
written last and create-once, is the commit point. A crash before the manifest leaves no item (an
uncommitted upload is aborted on the next run; a committed but unreferenced object holds ciphertext
whose key was never stored anywhere).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from evidence import layout, stream
from evidence.custody import CustodyEvent, check_recorded_manifest
from evidence.errors import AccessDenied, AlreadyExists, ConfigError, EvidenceError, IntegrityError, NotFound
from evidence.ids import evidence_id, id_key_check, load_id_key, require_evidence_id
from evidence.keyring import Keyring, X25519Identity, X25519Recipient, unwrap_data_key
from evidence.manifest import (
    ItemDetails,
    Manifest,
    StoredObject,
    decode_manifest,
    encode_manifest,
    open_details,
    seal_details,
)
from evidence.media import MediaInfo
from evidence.settings import Settings
from evidence.signing import SIGNING_KEY_FILE, SigningKey
from storage.base import ObjectInfo, ObjectStore, ObjectUpload, Retention
from storage.custody import CustodyLog
from storage.open import open_store

log = logging.getLogger(__name__)

VAULT_FORMAT = "evidence-pipeline/vault/v1"
READ_SIZE = 1024 * 1024
IDENTITY_FILE = "vault-identity.key"
RECIPIENT_FILE = "vault-recipient.pub"
ID_KEY_FILE = "vault-id.key"


class UploadJournal(Protocol):
    """Station-side record of uploads in flight, so a re-run can clean up after a crash."""

    def upload_started(self, key: str) -> None: ...

    def upload_committed(self, key: str) -> None: ...

    def upload_settled(self, key: str) -> None:
        """The upload was aborted, or is referenced by a committed manifest: nothing left to clean."""
        ...

    def upload_abandoned(self, key: str) -> None:
        """This run gave up on the upload after a failure; its state stays for recovery to judge."""
        ...


@dataclass(frozen=True)
class Provenance:
    """Where an original came from: recorded in the manifest (clear part) and the sealed details."""

    station_id: str
    device_serial: str
    officer_id: str | None
    source_path: str
    original_name: str
    original_name_b64: str
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredItem:
    evidence_id: str
    sha256: str
    size: int
    media_type: str
    duplicate: bool
    manifest: Manifest


@dataclass(frozen=True)
class VaultSetup:
    created: bool
    """False: the vault already existed (or a concurrent set-up wrote its descriptor first)."""
    notes: tuple[str, ...] = ()
    """What the store had to set up other than by default, and why (``ObjectStore.initialise``)."""


@dataclass(frozen=True)
class VerifiedItem:
    """An item whose custody chain verified and whose manifest is the one its ingest event recorded."""

    manifest: Manifest
    manifest_sha256: str
    events: tuple[CustodyEvent, ...]
    """The chain as verified; appending after it expects at least this many events."""


class Vault:
    def __init__(
        self,
        store: ObjectStore,
        *,
        settings: Settings,
        id_key: bytes,
        recipients: Sequence[Keyring],
        identities: Sequence[Keyring] = (),
        journal: UploadJournal | None = None,
        signer: SigningKey | None = None,
    ) -> None:
        if not recipients:
            raise ConfigError("a vault needs at least one recipient key: run `evidence keys init`")
        self.store = store
        self.settings = settings
        self._id_key = id_key
        self._recipients = tuple(recipients)
        self._identities = tuple(identities)
        self._journal = journal
        self.custody = CustodyLog(
            store, station_id=settings.station_id, signer=signer, retention=self.retention_for_new_objects
        )

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: Settings, *, journal: UploadJournal | None = None, check: bool = True) -> Vault:
        """Open the vault named by settings with whatever keys this machine holds: an ingest station
        has the recipient (public) key and the id key; an investigator also the identity."""
        keys = settings.keys_path
        recipients: list[Keyring] = [X25519Recipient.from_file(keys / RECIPIENT_FILE)]
        identities: list[Keyring] = []
        if (keys / IDENTITY_FILE).exists():
            identities.append(X25519Identity.from_file(keys / IDENTITY_FILE))
        if settings.kms_key_id:
            from storage.kms import KmsKeyring

            kms = KmsKeyring(settings.kms_key_id)
            recipients.append(kms)
            identities.append(kms)
        signing_key = keys / SIGNING_KEY_FILE
        vault = cls(
            open_store(settings),
            settings=settings,
            id_key=load_id_key(keys / ID_KEY_FILE),
            recipients=recipients,
            identities=identities,
            journal=journal,
            signer=SigningKey.from_file(signing_key) if signing_key.exists() else None,
        )
        if check:
            vault.check_descriptor()
        return vault

    def describe(self) -> dict[str, object]:
        return {
            "format": VAULT_FORMAT,
            "layout_version": layout.LAYOUT_VERSION,
            "id_key_check": id_key_check(self._id_key),
            "recipients": sorted(k.name for k in self._recipients),
        }

    def initialise(self) -> VaultSetup:
        """Prepare the store and write the descriptor once (``created`` is False if it already
        existed, or another set-up wrote it first; either way it must describe these keys)."""
        notes = tuple(self.store.initialise())
        body = json.dumps(
            self.describe() | {"created_at": _now().isoformat()}, sort_keys=True, indent=2
        ).encode()
        try:
            self.store.put_bytes(layout.VAULT_DESCRIPTOR_KEY, body, retention=None, if_absent=True)
        except AlreadyExists:
            self.check_descriptor()
            return VaultSetup(created=False, notes=notes)
        return VaultSetup(created=True, notes=notes)

    def record(self, key: str) -> bytes:
        """The bytes of a create-once key's record: its first version (docs/storage.md, "Create-once
        without If-None-Match"). A later version, which a server ignoring If-None-Match lets a losing
        writer leave, is never what a reader gets."""
        return b"".join(self.store.get(key, version_id=self.store.first_version(key)))

    def check_descriptor(self) -> None:
        try:
            data = self.record(layout.VAULT_DESCRIPTOR_KEY)
        except NotFound:
            raise ConfigError(
                f"{self.store.url} is not an initialised vault: run `evidence vault init`"
            ) from None
        described = json.loads(data)
        if described.get("format") != VAULT_FORMAT:
            raise ConfigError(
                f"{self.store.url} holds an unsupported vault format {described.get('format')!r}"
            )
        if described.get("id_key_check") != id_key_check(self._id_key):
            # a different id key would give the same file another id and defeat de-duplication
            raise ConfigError(
                f"this station's id key does not belong to the vault at {self.store.url}: "
                "copy the vault's id key into the keys directory"
            )

    # -- write path ----------------------------------------------------------------------------

    @property
    def journal(self) -> UploadJournal | None:
        """The station's journal of uploads, when this vault was opened by an ingest station."""
        return self._journal

    def evidence_id_for(self, plaintext_sha256: str) -> str:
        return evidence_id(self._id_key, plaintext_sha256)

    def has_item(self, evidence_id: str) -> bool:
        return self.store.exists(layout.manifest_key(evidence_id))

    def retention_for_new_objects(self) -> Retention:
        return Retention(self.settings.lock_mode, _now() + timedelta(days=self.settings.retention_days))

    def store_stream(
        self,
        source: BinaryIO,
        *,
        media: MediaInfo,
        thumbnail: bytes | None,
        provenance: Provenance,
        before_commit: Callable[[], None] | None = None,
    ) -> StoredItem:
        """Store one original read from ``source`` (one pass). ``before_commit`` runs after the last
        byte is read and before anything becomes visible; raising there abandons the upload (used to
        refuse a file that changed while it was read)."""
        data_key = stream.new_data_key()
        wrapped = tuple(keyring.wrap(data_key) for keyring in self._recipients)
        retention = self.retention_for_new_objects()
        content_key = layout.object_key(layout.new_object_id())
        # journaled before the store hears of it: a kill at any later point leaves a row to recover
        self._note("upload_started", content_key)
        upload = self.store.begin_upload(content_key, retention=retention)
        # The ciphertext's SHA-256 is taken once. A store that hashes what it writes, as it writes it
        # (the local store), gives it: the encryptor hashing the same bytes too would compare one
        # computation on the same buffers with itself, proving nothing about the disk (docs/storage.md
        # §2.2). Elsewhere (S3: checksums per part) the encryptor hashes what it emits.
        store_hashes = upload.checksum_is_sha256
        encryptor = stream.StreamEncryptor(
            data_key, segment_size=self.settings.segment_size, hash_ciphertext=not store_hashes
        )
        try:
            while chunk := source.read(READ_SIZE):
                upload.write(encryptor.update(chunk))
            upload.write(encryptor.finalize())
            digests = encryptor.digests()
            if before_commit is not None:
                before_commit()
            item_id = self.evidence_id_for(digests.plaintext_sha256)
            if self.has_item(item_id):
                upload.abort()
                self._note("upload_settled", content_key)
                return self._existing(item_id, digests.plaintext_sha256, digests.plaintext_size)
            content_info = upload.commit()
        except BaseException as failure:
            encryptor.abandon()  # its hashing threads stop here, not when it is collected
            # When the store failed (or the process is being stopped) its state is not known here: a
            # request whose answer was lost may have created a multipart upload or completed the
            # object. Such an upload stays open in the journal; the next run's recovery aborts what
            # remains or, if the object exists after all, reports it as orphaned. A failure outside
            # the store (the file changed while read, the device went away) with a clean abort
            # leaves nothing behind.
            aborted = _abort_quietly(upload)
            outside_store = isinstance(failure, Exception) and not isinstance(failure, EvidenceError)
            self._note("upload_settled" if aborted and outside_store else "upload_abandoned", content_key)
            raise
        self._note("upload_committed", content_key)
        written = [content_key]
        committed = [content_info]
        try:
            ciphertext_sha256 = digests.ciphertext_sha256 or content_info.checksum
            if ciphertext_sha256 is None:
                raise IntegrityError(f"{content_key}: the store gave no checksum of the bytes it stored")
            content = _stored(content_info, ciphertext_sha256, expected_size=digests.ciphertext_size)

            thumb = None
            if thumbnail is not None:
                sealed_thumb = stream.seal(data_key, thumbnail)
                thumb_key = layout.object_key(layout.new_object_id())
                self._note("upload_started", thumb_key)
                written.append(thumb_key)
                # A fresh random key, like the content's: create-once would guard nothing, and its
                # check reads the key, which an ingest station may not do under objects/. A retry
                # after a lost answer stores a second, identical, locked version (as for content).
                thumb_info = self.store.put_bytes(thumb_key, sealed_thumb, retention=retention)
                self._note("upload_committed", thumb_key)
                committed.append(thumb_info)
                thumb = _stored(thumb_info, hashlib.sha256(sealed_thumb).hexdigest(), len(sealed_thumb))

            details = ItemDetails(
                sha256=digests.plaintext_sha256,
                size=digests.plaintext_size,
                original_name=provenance.original_name,
                original_name_b64=provenance.original_name_b64,
                source_path=provenance.source_path,
                media=media.to_dict(),
            )
            flags = provenance.flags + (("metadata-unreadable",) if media.metadata_error else ())
            manifest = Manifest(
                evidence_id=item_id,
                ingested_at=_now(),
                station_id=provenance.station_id,
                device_serial=provenance.device_serial,
                officer_id=provenance.officer_id,
                media_type=media.media_type,
                kind=media.kind,
                recorded_at=media.recorded_at.isoformat() if media.recorded_at else None,
                size=digests.plaintext_size,
                segment_size=self.settings.segment_size,
                content=content,
                thumbnail=thumb,
                recipients=wrapped,
                sealed_details=seal_details(data_key, details),
                flags=tuple(dict.fromkeys(flags)),
            )
            try:
                self._put_once(layout.manifest_key(item_id), encode_manifest(manifest), retention)
            except AlreadyExists:
                # another run committed the same content first; ours is an unreferenced orphan
                log.warning(
                    "evidence %s was stored concurrently; object %s is orphaned", item_id, content_key
                )
                for key in written:
                    self._note("upload_abandoned", key)
                return self._existing(item_id, digests.plaintext_sha256, digests.plaintext_size)
            for referenced in written:
                self._note("upload_settled", referenced)
        except BaseException:
            for key in written:  # committed, not yet referenced: recovery reports them if they stay so
                self._note("upload_abandoned", key)
            raise
        self.verify_stored(manifest, committed=committed)
        self.record_ingest(manifest)
        return StoredItem(
            item_id, digests.plaintext_sha256, digests.plaintext_size, media.media_type, False, manifest
        )

    def _put_once(self, key: str, data: bytes, retention: Retention) -> ObjectInfo:
        """Create-only write. If the key's record already is exactly these bytes, the earlier attempt
        was ours and only its answer was lost (a timeout after the store acted): that is success, not
        a clash. Different bytes raise ``AlreadyExists``: another writer's record came first."""
        try:
            return self.store.put_bytes(key, data, retention=retention, if_absent=True)
        except AlreadyExists:
            first = self.store.first_version(key)
            if b"".join(self.store.get(key, version_id=first)) != data:
                raise
            log.info("create of %s was answered late; the stored object is this write", key)
            return self.store.head(key, version_id=first)

    def record_ingest(self, manifest: Manifest) -> None:
        """Custody event 0 of an item, written once: a re-run after a crash between manifest and
        this event finds the chain empty and writes it then. Two stations that stored the same file
        at once both get here with the one manifest that is the item's record; whichever opens the
        chain first records the ingest, and the other checks that event records this manifest."""
        if self.custody.has_chain(manifest.evidence_id):
            return
        manifest_sha256 = hashlib.sha256(encode_manifest(manifest)).hexdigest()
        try:
            self.custody.append(
                manifest.evidence_id,
                "ingest",
                actor=manifest.station_id,
                role="ingest-station",
                details={
                    "manifest_sha256": manifest_sha256,
                    "content_sha256": manifest.content.sha256,
                    "size": manifest.size,
                    "device": manifest.device_serial,
                    "officer": manifest.officer_id,
                },
                opening=True,
            )
        except AlreadyExists:
            opened = self.custody.events(manifest.evidence_id)
            if not opened:
                raise
            check_recorded_manifest(
                manifest.evidence_id,
                opened[0],
                manifest_sha256=manifest_sha256,
                content_sha256=manifest.content.sha256,
            )

    def confirm_stored(self, item_id: str, sha256: str, size: int) -> StoredItem:
        """The item an original with this SHA-256 and size is stored as, verified as a duplicate found
        while storing is (manifest read, objects present and locked, ingest event recorded), without
        uploading anything: for an original the station hashed itself and knows it stored before.
        Raises ``NotFound`` if the item is not in the vault (never stored here, or disposed of), and
        ``IntegrityError`` if its stored copy does not verify. Its answer may gate wiping a device."""
        if item_id != self.evidence_id_for(sha256):
            raise IntegrityError(f"{item_id} is not the evidence id of an original with SHA-256 {sha256}")
        return self._existing(item_id, sha256, size)

    def _existing(self, item_id: str, sha256: str, size: int) -> StoredItem:
        manifest = self.manifest(item_id)
        self.verify_objects(manifest)
        # a run killed between manifest and journal update left these objects marked unsettled
        self._note("upload_settled", manifest.content.key)
        if manifest.thumbnail is not None:
            self._note("upload_settled", manifest.thumbnail.key)
        self.record_ingest(manifest)
        if manifest.size != size:
            raise IntegrityError(
                f"{item_id} exists with size {manifest.size}, but this original has {size} bytes"
            )
        return StoredItem(item_id, sha256, size, manifest.media_type, True, manifest)

    def _note(self, event: str, key: str) -> None:
        if self._journal is not None:
            getattr(self._journal, event)(key)

    # -- verification --------------------------------------------------------------------------

    def verify_stored(self, manifest: Manifest, committed: Sequence[ObjectInfo] = ()) -> None:
        """Prove the stored objects are the ones the manifest names: present, locked, same size and
        checksum as sent (and, with ``verify_readback``, the same SHA-256 on a full re-read).
        ``committed``: what the store answered when this run committed them. Raises
        ``IntegrityError`` naming the item and object. This gates wiping a device."""
        stored = self.record(layout.manifest_key(manifest.evidence_id))
        if decode_manifest(stored) != manifest:
            raise IntegrityError(f"{manifest.evidence_id}: the stored manifest differs from the one written")
        self.verify_objects(manifest, committed)

    def verify_objects(self, manifest: Manifest, committed: Sequence[ObjectInfo] = ()) -> None:
        """The object half of ``verify_stored``, for a manifest just read from the vault (re-reading
        it to compare with itself would prove nothing).

        No object is read back: an ingest station may not read ``objects/`` (docs/deployment.md
        §4.2). An object this run committed is checked against the store's answer to that commit,
        in which the store compared the checksum of what it stored with the one of the bytes sent
        and read the lock back. Any other object (an earlier run's, found as a duplicate) is checked
        to exist and be locked, with the store's lock reads, which need no access to the object.
        Its size and checksum are the ones its own commit verified and the manifest recorded: a
        stored version's bytes never change, its existence and lock can."""
        answers = {(info.key, info.version_id): info for info in committed}
        for name, expected in (("content", manifest.content), ("thumbnail", manifest.thumbnail)):
            if expected is None:
                continue
            where = f"{manifest.evidence_id} {name} object {expected.key}"
            answer = answers.get((expected.key, expected.version_id))
            if answer is not None:
                if answer.size != expected.size:
                    raise IntegrityError(f"{where}: stored size {answer.size}, expected {expected.size}")
                if expected.checksum is not None and answer.checksum != expected.checksum:
                    raise IntegrityError(
                        f"{where}: stored checksum {answer.checksum}, expected {expected.checksum}"
                    )
                locked = answer.retention is not None or answer.legal_hold
            else:
                # the legal hold is read only when there is no retention: most objects need one read
                retention = self.store.get_retention(expected.key, expected.version_id)
                locked = retention is not None or self.store.get_legal_hold(expected.key, expected.version_id)
            if not locked:
                raise IntegrityError(f"{where}: object is not locked")
            if self.settings.verify_readback:
                self._verify_object_sha256(expected, where)

    def _verify_object_sha256(self, expected: StoredObject, where: str) -> None:
        digest = hashlib.sha256()
        try:
            for chunk in self.store.get(expected.key, version_id=expected.version_id):
                digest.update(chunk)
        except AccessDenied as err:
            raise AccessDenied(
                f"{where}: EVIDENCE_VERIFY_READBACK re-reads every stored object, and these credentials "
                f"may not read it ({err}). An ingest station's role has no read access to objects/ "
                "(docs/deployment.md §4.2): turn the setting off, or grant the role s3:GetObject and "
                "s3:GetObjectVersion on objects/* again"
            ) from err
        if digest.hexdigest() != expected.sha256:
            raise IntegrityError(f"{where}: stored bytes do not match the SHA-256 recorded at ingest")

    # -- read path -----------------------------------------------------------------------------

    def manifest(self, evidence_id: str) -> Manifest:
        return self.stored_manifest(evidence_id)[0]

    def stored_manifest(self, evidence_id: str) -> tuple[Manifest, str]:
        """The item's manifest and the SHA-256 of its stored bytes."""
        key = layout.manifest_key(require_evidence_id(evidence_id))
        try:
            data = self.record(key)
        except NotFound:
            notice = self.custody.disposal_notice(evidence_id)
            raise NotFound(notice or f"no evidence item {evidence_id} in {self.store.url}") from None
        manifest = decode_manifest(data)
        if manifest.evidence_id != evidence_id:
            raise IntegrityError(f"manifest at {key} names another item ({manifest.evidence_id})")
        return manifest, hashlib.sha256(data).hexdigest()

    def verify_item(self, evidence_id: str, *, expected_length: int | None = None) -> VerifiedItem:
        """What every read checks before any plaintext leaves (``docs/access.md`` §2): the custody
        chain verifies (signatures, order, no gaps, not shorter than ``expected_length``, no record
        overwritten) and the manifest is the one its ingest event recorded. Content and thumbnail
        are then authenticated as they are decrypted, against hashes that manifest holds."""
        manifest, manifest_sha256 = self.stored_manifest(evidence_id)
        chain = self.custody.verify(evidence_id, expected_length=expected_length)
        chain.raise_if_broken()
        check_recorded_manifest(
            evidence_id,
            chain.events[0],
            manifest_sha256=manifest_sha256,
            content_sha256=manifest.content.sha256,
        )
        return VerifiedItem(manifest, manifest_sha256, chain.events)

    def list_items(self) -> Iterator[str]:
        for info in self.store.list(layout.ITEMS_PREFIX):
            if info.key.endswith("/manifest.json"):
                yield info.key.split("/")[1]

    def data_key(self, manifest: Manifest) -> bytes:
        return unwrap_data_key(manifest.recipients, self._identities)

    def details(self, manifest: Manifest) -> ItemDetails:
        return open_details(self.data_key(manifest), manifest)

    def read_original(self, manifest: Manifest) -> Iterator[bytes]:
        """The original's bytes, decrypted and authenticated segment by segment. The final SHA-256
        check runs when the iterator is exhausted: consumers must not publish anything before then."""
        data_key = self.data_key(manifest)
        expected = open_details(data_key, manifest).sha256
        digest = hashlib.sha256()
        size = 0
        content = self.store.get(manifest.content.key, version_id=manifest.content.version_id)
        for chunk in stream.decrypt_chunks(data_key, content):
            digest.update(chunk)
            size += len(chunk)
            yield chunk
        if digest.hexdigest() != expected or size != manifest.size:
            raise IntegrityError(
                f"{manifest.evidence_id}: decrypted content does not match the SHA-256 taken at ingest"
            )

    def read_range(self, manifest: Manifest, start: int, end: int) -> Iterator[bytes]:
        """Plaintext bytes ``[start, end)``, fetching and authenticating only the segments needed."""
        data_key = self.data_key(manifest)
        key, version = manifest.content.key, manifest.content.version_id
        header = b"".join(self.store.get(key, version_id=version, start=0, end=stream.HEADER_SIZE))
        return stream.decrypt_range(
            data_key,
            header,
            manifest.size,
            start,
            end,
            lambda cstart, cend: self.store.get(key, version_id=version, start=cstart, end=cend),
        )

    def thumbnail(self, manifest: Manifest) -> bytes | None:
        if manifest.thumbnail is None:
            return None
        ref = manifest.thumbnail
        sealed = b"".join(self.store.get(ref.key, version_id=ref.version_id))
        if hashlib.sha256(sealed).hexdigest() != ref.sha256:
            raise IntegrityError(f"{manifest.evidence_id}: thumbnail object does not match its recorded hash")
        return stream.open_sealed(self.data_key(manifest), sealed)

    def export_original(
        self, manifest: Manifest, destination: Path, *, on_bytes: Callable[[int], None] | None = None
    ) -> Path:
        """Write the verified original to ``destination`` (:func:`write_new_private_file`): nothing
        appears there unless the SHA-256 taken at ingest matched."""
        chunks = self.read_original(manifest)
        if on_bytes is not None:
            chunks = _counted(chunks, on_bytes)
        return write_new_private_file(destination, chunks)


PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
"""Decrypted evidence is for the person who asked for it, not for every account on the machine."""


def write_new_private_file(destination: Path, chunks: Iterable[bytes]) -> Path:
    """Write decrypted evidence to a new file readable by its owner alone. Bytes go to a hidden
    temporary file linked into place only once ``chunks`` is exhausted (a read that fails its final
    check raises first), so a failure leaves nothing behind; nothing already at ``destination`` is
    replaced or followed: a link there, even a dangling one, is refused."""
    if os.path.lexists(destination):
        raise AlreadyExists(f"{destination} already exists; choose another --out")
    destination.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(partial, destination)  # fails rather than replace what appeared meanwhile
        except FileExistsError:
            raise AlreadyExists(f"{destination} appeared while writing; choose another --out") from None
    finally:
        partial.unlink(missing_ok=True)
    return destination


def _counted(chunks: Iterable[bytes], on_bytes: Callable[[int], None]) -> Iterator[bytes]:
    for chunk in chunks:
        on_bytes(len(chunk))
        yield chunk


def original_name_fields(name: str) -> tuple[str, str]:
    """Display form and exact bytes (base64) of a file name that may not be valid UTF-8."""
    raw = os.fsencode(name)
    return raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode("ascii")


def _stored(info: ObjectInfo, sha256: str, expected_size: int) -> StoredObject:
    if info.size != expected_size:
        raise IntegrityError(f"{info.key}: store reports {info.size} bytes, {expected_size} were sent")
    return StoredObject(info.key, info.version_id, info.size, sha256, info.checksum)


def _abort_quietly(upload: ObjectUpload) -> bool:
    """Abort after a failure; True if the abort went through. The original failure matters more, so
    an abort that fails is only logged: the journal's recovery finishes it on the next run."""
    try:
        upload.abort()
    except Exception:
        log.warning("could not abort upload %s", upload.key, exc_info=True)
        return False
    return True


def _now() -> datetime:
    return datetime.now(UTC)
