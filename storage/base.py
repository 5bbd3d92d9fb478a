"""The object-store contract every backend implements (S3 via boto3, a local directory).

Modelled on S3 with versioning and Object Lock, because that is what the vault relies on: every write
creates a new version, a version under retention or legal hold cannot be deleted, and retention can be
extended but never shortened (without a governance bypass). The same contract tests
(``tests/test_storage_contract.py``) run against every backend.

Keys are produced by ``evidence.layout`` and restricted to ``[a-z0-9._/-]``; backends reject others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

LockMode = Literal["GOVERNANCE", "COMPLIANCE"]


@dataclass(frozen=True)
class Retention:
    mode: LockMode
    retain_until: datetime  # timezone-aware, UTC


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    version_id: str
    size: int
    checksum: str | None
    """The store's own checksum of the object as it reports it (S3: ChecksumSHA256, composite for
    multipart). Compare only with ``ObjectUpload.expected_checksum`` from the same backend."""
    retention: Retention | None
    legal_hold: bool
    last_modified: datetime
    is_delete_marker: bool = False


@dataclass(frozen=True)
class IncompleteUpload:
    key: str
    upload_id: str
    initiated: datetime


class ObjectUpload(Protocol):
    """One streaming write. Nothing is visible under ``key`` until ``commit``; ``abort`` leaves no trace.

    Memory is bounded by the part size times the upload concurrency, whatever the object's size.
    """

    key: str

    @property
    def checksum_is_sha256(self) -> bool:
        """True when ``expected_checksum`` (and the committed version's checksum) is the hex SHA-256 of
        exactly the bytes given to ``write``, in order, taken by the store as it writes them (the local
        store). The vault then takes the ciphertext's SHA-256 from the store instead of hashing the
        same bytes a second time (docs/storage.md §2.2)."""
        ...

    @property
    def bytes_written(self) -> int: ...

    @property
    def expected_checksum(self) -> str | None:
        """What ``head(key).checksum`` must equal once committed, computed from the bytes sent; ``None``
        where the store keeps no checksum of its own (S3 on a server that ignores checksums, as its
        answers show: known once it has answered this upload's first request)."""
        ...

    def write(self, data: bytes) -> None: ...

    def commit(self) -> ObjectInfo:
        """Make the object visible with the upload's retention applied; returns the new version.

        What the store reports it stored matches the bytes sent, and the version has the retention
        asked for, or this raises ``IntegrityError`` (also when the store gives no account of the
        bytes at all). Where it can, the store establishes both without reading the object (S3: from
        the commit's answer, else its version listing, and GetObjectRetention, docs/storage.md §3.1
        and §3.5), so a writer with no read access can commit and verify."""
        ...

    def abort(self) -> None: ...


@runtime_checkable
class ObjectStore(Protocol):
    url: str

    def check(self) -> list[str]:
        """Problems that make this store unfit for evidence (versioning off, no Object Lock, public
        access possible, unreachable). Empty list means fit."""
        ...

    def initialise(self) -> list[str]:
        """Create or fix the container: versioning on, Object Lock enabled, public access blocked.
        Returns what the person setting it up should be told, one line each: a setting this store
        had to leave other than the default, and why (docs/storage.md §3.4). Idempotent."""
        ...

    def begin_upload(
        self, key: str, *, retention: Retention | None, content_type: str = "application/octet-stream"
    ) -> ObjectUpload: ...

    def put_bytes(
        self, key: str, data: bytes, *, retention: Retention | None, if_absent: bool = False
    ) -> ObjectInfo:
        """Small objects in one call, committed and checked as ``ObjectUpload.commit`` does.

        ``if_absent`` (create-once records: ``vault.json``, manifests, custody records, signer keys)
        raises ``AlreadyExists`` if the key already has a version, and is race-safe: of writers racing
        for one key, exactly one succeeds, the one whose version is the key's first. On a server that
        ignores If-None-Match (Ceph RGW) a loser's version stays under the key, after the first: the
        record of a create-once key is its first version (``first_version``), never its current one
        (docs/storage.md, "Create-once without If-None-Match")."""
        ...

    def get(
        self, key: str, *, version_id: str | None = None, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of the object (``end=None``: to its end), as chunks."""
        ...

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        """Raises ``NotFound`` when the key (or version) does not exist or is a delete marker."""
        ...

    def first_version(self, key: str) -> str:
        """Id of the key's first (oldest) version that is not a delete marker: the record of a
        create-once key. ``NotFound`` when it has none. Needs no read access to the object (S3:
        ListObjectVersions of the key)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the key has a current version. Needs no read access to the object (S3: a listing)."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Current versions under ``prefix`` (delete markers excluded), in key order."""
        ...

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every version and delete marker under ``prefix``."""
        ...

    def delete_version(self, key: str, version_id: str, *, bypass_governance: bool = False) -> None:
        """Permanently delete one version. ``LockedError`` while retention (unless GOVERNANCE and
        ``bypass_governance``) or a legal hold protects it."""
        ...

    def extend_retention(self, key: str, version_id: str, retention: Retention) -> None:
        """Move retain-until later. An earlier date raises ``LockedError``: retention never shrinks."""
        ...

    def get_retention(self, key: str, version_id: str) -> Retention | None:
        """The version's retention (``None``: it has none). ``NotFound`` if the version does not
        exist. Needs no read access to the object itself (S3: GetObjectRetention), so a writer that
        may not read what it wrote can still check that it is locked."""
        ...

    def get_legal_hold(self, key: str, version_id: str) -> bool:
        """Whether a legal hold is on the version; like ``get_retention`` (S3: GetObjectLegalHold)."""
        ...

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None: ...

    def list_incomplete_uploads(self, prefix: str) -> Iterator[IncompleteUpload]: ...

    def abort_incomplete_upload(self, upload: IncompleteUpload) -> None: ...
