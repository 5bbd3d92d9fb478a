"""One contract, four backends: the local directory store, S3 on moto in-process, S3 on moto's HTTP
server, and a real S3 server, Ceph RGW over HTTPS (``tests.rgw``). Every test in the first part runs
against all four; the rest cover what only some can show (a full disk, a crash mid-commit, rejected
credentials, an unreachable endpoint, a locked version the server itself refuses to delete)."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from botocore.stub import Stubber

from evidence.errors import (
    AccessDenied,
    AlreadyExists,
    ConfigError,
    EvidenceError,
    IntegrityError,
    InvalidInput,
    LockedError,
    NotFound,
    StorageError,
    StorageUnavailable,
)
from evidence.settings import Settings
from storage.base import ObjectStore, ObjectUpload, Retention
from storage.local import LocalStore
from storage.open import open_store
from storage.s3 import S3Store, composite_checksum
from tests.rgw import unique_bucket

MiB = 1024 * 1024
PART = 5 * MiB  # S3's minimum part size, so multipart tests stay small
BUCKET = "evidence-test"
PREFIX = "vault"
REGION = "eu-west-2"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _governance(days: float = 1) -> Retention:
    return Retention("GOVERNANCE", datetime.now(UTC) + timedelta(days=days))


def _compliance(days: float = 1) -> Retention:
    return Retention("COMPLIANCE", datetime.now(UTC) + timedelta(days=days))


def _read(store: ObjectStore, key: str, **kwargs: Any) -> bytes:
    return b"".join(store.get(key, **kwargs))


def _close_in_time(a: datetime, b: datetime) -> bool:
    # S3 keeps retain-until to the second; the local store keeps microseconds.
    return abs(a - b) <= timedelta(seconds=1)


def _upload(store: ObjectStore, key: str, data: bytes, retention: Retention | None = None) -> ObjectUpload:
    upload = store.begin_upload(key, retention=retention)
    for offset in range(0, len(data), MiB):
        upload.write(data[offset : offset + MiB])
    return upload


@pytest.fixture(scope="module")
def big_data() -> bytes:
    """A bit more than two parts, so the S3 stores must use three parts."""
    return os.urandom(2 * PART + 12_345)


S3_SERVERS = ["s3-moto", "s3-server", "s3-rgw"]


def _s3_server(request: pytest.FixtureRequest, server: str) -> str:
    """Point boto3 at one of the S3 servers; the bucket name to use there (a fresh one on RGW, which
    keeps every bucket of the run)."""
    if server == "s3-rgw":
        request.getfixturevalue("rgw_env")
        return unique_bucket()
    request.getfixturevalue("moto_aws" if server == "s3-moto" else "moto_endpoint")
    return BUCKET


@pytest.fixture(params=["local", *S3_SERVERS])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        created: ObjectStore = LocalStore(tmp_path / "vault")
    else:
        created = S3Store(_s3_server(request, request.param), PREFIX, part_size=PART, concurrency=2)
    created.initialise()
    return created


def _keeps_checksums(store: ObjectStore) -> bool:
    """Whether the store reports a SHA-256 checksum of what it holds: the local store always; an S3
    server unless its answers have shown it ignores checksums (Ceph RGW 16: docs/storage.md §3.5)."""
    return not isinstance(store, S3Store) or store.keeps_checksums is not False


# -- the contract, on every backend ----------------------------------------------------------------


def test_small_object_round_trip(store: ObjectStore) -> None:
    stored = store.put_bytes("items/a/manifest.json", b'{"v": 1}', retention=None)

    info = store.head("items/a/manifest.json")
    # S3 reports a commit's time from the answer's Date header (whole seconds), not a read of it
    assert replace(info, last_modified=stored.last_modified) == stored
    assert _close_in_time(info.last_modified, stored.last_modified)
    assert info.key == "items/a/manifest.json"
    assert info.size == 8
    assert info.retention is None
    assert info.legal_hold is False
    assert not info.is_delete_marker
    assert (info.checksum is not None) == _keeps_checksums(store)
    assert _read(store, "items/a/manifest.json") == b'{"v": 1}'
    assert store.exists("items/a/manifest.json")
    assert not store.exists("items/a/other.json")
    assert store.check() == []


def test_streaming_multipart_upload_reads_back_equal(store: ObjectStore, big_data: bytes) -> None:
    retention = _governance()
    upload = _upload(store, "objects/ab/big", big_data, retention)
    assert upload.bytes_written == len(big_data)
    predicted = upload.expected_checksum

    committed = upload.commit()

    assert committed.size == len(big_data)
    head = store.head("objects/ab/big")
    assert head.version_id == committed.version_id
    if _keeps_checksums(store):
        assert head.checksum == upload.expected_checksum == predicted
    else:  # the server answered without the checksum it was sent: nothing to compare but the bytes
        assert head.checksum is None and upload.expected_checksum is None
    # The lock must be on the stored version even where the server ignored it on the multipart start.
    assert head.retention is not None and head.retention.mode == "GOVERNANCE"
    assert _close_in_time(head.retention.retain_until, retention.retain_until)
    assert hashlib.sha256(_read(store, "objects/ab/big")).digest() == hashlib.sha256(big_data).digest()
    if isinstance(store, S3Store):
        assert upload.upload_id is not None  # really went multipart
        if _keeps_checksums(store):
            part_digests = [
                hashlib.sha256(big_data[i : i + PART]).digest() for i in range(0, len(big_data), PART)
            ]
            assert head.checksum == composite_checksum(part_digests)
    else:
        assert head.checksum == hashlib.sha256(big_data).hexdigest()


@pytest.mark.parametrize("size", [0, 1, PART, PART + 1])
def test_part_boundaries_read_back_equal(store: ObjectStore, size: int) -> None:
    data = os.urandom(size)
    upload = _upload(store, "objects/ab/edge", data)
    upload.commit()

    assert _read(store, "objects/ab/edge") == data
    assert store.head("objects/ab/edge").size == size
    assert store.head("objects/ab/edge").checksum == upload.expected_checksum
    # The vault records such a checksum as the ciphertext's SHA-256: it must be exactly that.
    if upload.checksum_is_sha256:
        assert upload.expected_checksum == hashlib.sha256(data).hexdigest()
    assert upload.checksum_is_sha256 == (not isinstance(store, S3Store))
    if isinstance(store, S3Store):
        # An object of exactly one part goes up in one put; one byte more needs a multipart upload.
        assert (upload.upload_id is not None) == (size > PART)


def test_ranged_get(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    size = len(data)
    old = store.put_bytes("objects/ab/ranged", data, retention=None)
    store.put_bytes("objects/ab/ranged", b"newer version", retention=None)

    def read(start: int, end: int | None) -> bytes:
        return _read(store, "objects/ab/ranged", version_id=old.version_id, start=start, end=end)

    assert read(0, None) == data
    assert read(0, size) == data
    assert read(0, 1) == data[:1]
    assert read(size - 1, None) == data[-1:]
    assert read(size - 1, size) == data[-1:]
    assert read(100, 200) == data[100:200]
    assert read(1000, None) == data[1000:]
    assert read(5, 5) == b""
    assert read(size, None) == b""  # like slicing: the end of the object is an empty range
    assert read(0, size + 100) == data  # an end past the object is clamped
    assert read(size + 10, None) == b""
    assert _read(store, "objects/ab/ranged", start=6, end=13) == b"version"
    with pytest.raises(InvalidInput):
        store.get("objects/ab/ranged", start=-1)
    with pytest.raises(InvalidInput):
        store.get("objects/ab/ranged", start=10, end=9)
    with pytest.raises(NotFound):
        store.get("objects/ab/missing", start=3, end=3)


def test_abort_leaves_nothing(store: ObjectStore) -> None:
    upload = _upload(store, "objects/ab/aborted", os.urandom(PART + 10), _governance())
    upload.abort()
    upload.abort()  # a second abort is harmless

    assert not store.exists("objects/ab/aborted")
    with pytest.raises(NotFound):
        store.head("objects/ab/aborted")
    assert list(store.list_versions("objects/")) == []
    assert list(store.list_incomplete_uploads("")) == []
    with pytest.raises(StorageError):
        upload.write(b"more")
    with pytest.raises(StorageError):
        upload.commit()


def test_nothing_is_visible_before_commit(store: ObjectStore) -> None:
    upload = _upload(store, "objects/ab/pending", b"x" * 1000)
    assert not store.exists("objects/ab/pending")
    assert list(store.list("objects/")) == []
    upload.commit()
    assert store.exists("objects/ab/pending")


def test_every_commit_is_a_new_version(store: ObjectStore) -> None:
    first = store.put_bytes("items/x/note", b"first", retention=None)
    second = _upload(store, "items/x/note", b"second").commit()

    assert first.version_id != second.version_id
    assert store.head("items/x/note").version_id == second.version_id
    assert _read(store, "items/x/note") == b"second"
    assert _read(store, "items/x/note", version_id=first.version_id) == b"first"
    assert store.head("items/x/note", version_id=first.version_id).size == 5
    assert [v.version_id for v in store.list_versions("items/x/note")] == [
        second.version_id,
        first.version_id,
    ]

    store.delete_version("items/x/note", second.version_id)
    assert store.head("items/x/note").version_id == first.version_id
    assert _read(store, "items/x/note") == b"first"


def test_list_and_list_versions(store: ObjectStore) -> None:
    for key in ["a/2", "a/10", "b/1", "ab", "a/1", "a/sub/deep"]:
        store.put_bytes(key, key.encode(), retention=None)
    store.put_bytes("a/1", b"again", retention=None)

    assert [info.key for info in store.list("a/")] == ["a/1", "a/10", "a/2", "a/sub/deep"]
    assert [info.key for info in store.list("a")] == ["a/1", "a/10", "a/2", "a/sub/deep", "ab"]
    assert [info.key for info in store.list("a/1")] == ["a/1", "a/10"]
    assert [info.key for info in store.list("")] == ["a/1", "a/10", "a/2", "a/sub/deep", "ab", "b/1"]
    assert list(store.list("c/")) == []
    current = {info.key: info for info in store.list("")}
    assert current["a/1"].size == len(b"again")
    assert current["a/1"] == store.head("a/1")

    versions = list(store.list_versions("a/1"))
    assert [info.key for info in versions] == ["a/1", "a/1", "a/10"]
    assert versions[0].version_id == store.head("a/1").version_id
    assert {info.size for info in versions[:2]} == {len(b"again"), len(b"a/1")}
    assert not any(info.is_delete_marker for info in versions)
    assert len(list(store.list_versions(""))) == 7
    with pytest.raises(InvalidInput):
        list(store.list("../"))


def test_if_absent_refuses_a_second_write(store: ObjectStore) -> None:
    store.put_bytes("vault.json", b"one", retention=None, if_absent=True)
    with pytest.raises(AlreadyExists, match=r"vault\.json"):
        store.put_bytes("vault.json", b"two", retention=None, if_absent=True)
    assert _read(store, "vault.json") == b"one"
    assert len(list(store.list_versions("vault.json"))) == 1
    assert list(store.list_incomplete_uploads("")) == []


def test_locked_version_cannot_be_deleted(store: ObjectStore) -> None:
    retention = _governance()
    info = store.put_bytes("objects/ab/locked", b"evidence", retention=retention)
    stored = store.head("objects/ab/locked")
    assert stored.retention is not None and stored.retention.mode == "GOVERNANCE"
    assert _close_in_time(stored.retention.retain_until, retention.retain_until)

    with pytest.raises(LockedError) as refused:
        store.delete_version("objects/ab/locked", info.version_id)
    assert "objects/ab/locked" in str(refused.value)
    assert retention.retain_until.strftime("%Y-%m-%d") in str(refused.value)
    assert _read(store, "objects/ab/locked") == b"evidence"


def test_governance_bypass_deletes(store: ObjectStore) -> None:
    info = store.put_bytes("objects/ab/governed", b"evidence", retention=_governance())
    store.delete_version("objects/ab/governed", info.version_id, bypass_governance=True)
    assert not store.exists("objects/ab/governed")


def test_compliance_cannot_be_bypassed(store: ObjectStore) -> None:
    info = store.put_bytes("objects/ab/compliant", b"evidence", retention=_compliance())
    with pytest.raises(LockedError, match="COMPLIANCE"):
        store.delete_version("objects/ab/compliant", info.version_id, bypass_governance=True)
    assert store.exists("objects/ab/compliant")


def test_legal_hold_blocks_delete_even_with_bypass(store: ObjectStore) -> None:
    held = store.put_bytes("objects/ab/held", b"evidence", retention=_governance())
    store.set_legal_hold("objects/ab/held", held.version_id, True)
    assert store.head("objects/ab/held").legal_hold is True

    with pytest.raises(LockedError, match="legal hold"):
        store.delete_version("objects/ab/held", held.version_id, bypass_governance=True)
    assert store.exists("objects/ab/held")

    store.set_legal_hold("objects/ab/held", held.version_id, False)
    assert store.head("objects/ab/held").legal_hold is False
    store.delete_version("objects/ab/held", held.version_id, bypass_governance=True)
    assert not store.exists("objects/ab/held")

    # A hold on an object with no retention at all blocks deletion too.
    plain = store.put_bytes("objects/ab/plain", b"evidence", retention=None)
    store.set_legal_hold("objects/ab/plain", plain.version_id, True)
    with pytest.raises(LockedError):
        store.delete_version("objects/ab/plain", plain.version_id)
    store.set_legal_hold("objects/ab/plain", plain.version_id, False)
    store.delete_version("objects/ab/plain", plain.version_id)


def test_lock_reads_of_versions_with_and_without_a_lock(store: ObjectStore) -> None:
    """GetObjectRetention and GetObjectLegalHold of a version never locked answer "none" (S3 with
    NoSuchObjectLockConfiguration, RGW with ObjectLockConfigurationNotFoundError, both a 404), not
    "no such version"."""
    locked = store.put_bytes("objects/ab/locked", b"x", retention=_governance())
    plain = store.put_bytes("objects/ab/plain", b"y", retention=None)

    retention = store.get_retention(locked.key, locked.version_id)
    assert retention is not None and retention.mode == "GOVERNANCE"
    assert store.get_legal_hold(locked.key, locked.version_id) is False
    assert store.get_retention(plain.key, plain.version_id) is None
    assert store.get_legal_hold(plain.key, plain.version_id) is False
    store.set_legal_hold(plain.key, plain.version_id, True)
    assert store.get_legal_hold(plain.key, plain.version_id) is True
    with pytest.raises(NotFound):
        store.get_retention("objects/ab/missing", plain.version_id)
    with pytest.raises(NotFound):
        store.get_legal_hold("objects/ab/missing", plain.version_id)


def test_retention_extends_but_never_shrinks_nor_changes_mode(store: ObjectStore) -> None:
    original = _governance(days=1)
    info = store.put_bytes("objects/ab/kept", b"evidence", retention=original)

    later = _governance(days=30)
    store.extend_retention("objects/ab/kept", info.version_id, later)
    extended = store.head("objects/ab/kept").retention
    assert extended is not None and _close_in_time(extended.retain_until, later.retain_until)

    with pytest.raises(LockedError) as refused:
        store.extend_retention("objects/ab/kept", info.version_id, original)
    assert "objects/ab/kept" in str(refused.value)
    assert later.retain_until.strftime("%Y-%m-%d") in str(refused.value)
    unchanged = store.head("objects/ab/kept").retention
    assert unchanged is not None and _close_in_time(unchanged.retain_until, later.retain_until)

    # a lock keeps its mode: S3 changes it only with the governance bypass (Ceph RGW refuses
    # GOVERNANCE to COMPLIANCE without it; moto would allow it)
    compliance = Retention("COMPLIANCE", later.retain_until + timedelta(days=1))
    with pytest.raises(LockedError, match="GOVERNANCE"):
        store.extend_retention("objects/ab/kept", info.version_id, compliance)
    unchanged = store.head("objects/ab/kept").retention
    assert unchanged is not None and unchanged.mode == "GOVERNANCE"

    compliant = store.put_bytes("objects/ab/compliant", b"evidence", retention=_compliance(days=1))
    store.extend_retention("objects/ab/compliant", compliant.version_id, compliance)
    extended = store.head("objects/ab/compliant").retention
    assert extended is not None and _close_in_time(extended.retain_until, compliance.retain_until)
    with pytest.raises(LockedError, match="COMPLIANCE"):
        store.extend_retention(
            "objects/ab/compliant", compliant.version_id, Retention("GOVERNANCE", compliance.retain_until)
        )


def test_retention_in_the_past_is_refused(store: ObjectStore) -> None:
    with pytest.raises(InvalidInput):
        store.put_bytes("a", b"x", retention=Retention("GOVERNANCE", datetime.now(UTC) - timedelta(days=1)))
    with pytest.raises(InvalidInput):
        store.begin_upload("a", retention=Retention("GOVERNANCE", datetime(2099, 1, 1)))  # naive
    assert not store.exists("a")


def test_missing_keys_and_versions_are_not_found(store: ObjectStore) -> None:
    gone = store.put_bytes("objects/ab/gone", b"x", retention=None)
    store.put_bytes("objects/ab/gone", b"y", retention=None)
    store.delete_version("objects/ab/gone", gone.version_id)

    with pytest.raises(NotFound):
        store.head("objects/ab/missing")
    with pytest.raises(NotFound):
        store.get("objects/ab/missing")
    with pytest.raises(NotFound):
        store.head("objects/ab/gone", version_id=gone.version_id)
    with pytest.raises(NotFound):
        store.get("objects/ab/gone", version_id=gone.version_id)
    with pytest.raises(NotFound):
        store.delete_version("objects/ab/gone", gone.version_id)
    with pytest.raises(NotFound):
        store.extend_retention("objects/ab/gone", gone.version_id, _governance())
    with pytest.raises(NotFound):
        store.set_legal_hold("objects/ab/missing", gone.version_id, True)


BAD_KEYS = ["../x", "/abs", "A", "a b", "", "a/../b", "a//b", "a/./b", "a/", "a\\b", "x" * 513, "é"]


@pytest.mark.parametrize("bad_key", BAD_KEYS)
def test_invalid_keys_are_rejected(store: ObjectStore, bad_key: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: store.put_bytes(bad_key, b"x", retention=None),
        lambda: store.begin_upload(bad_key, retention=None),
        lambda: store.head(bad_key),
        lambda: store.get(bad_key),
        lambda: store.exists(bad_key),
        lambda: store.delete_version(bad_key, "v"),
        lambda: store.extend_retention(bad_key, "v", _governance()),
        lambda: store.set_legal_hold(bad_key, "v", True),
    ]
    for operation in operations:
        with pytest.raises(InvalidInput, match="not allowed"):
            operation()
    assert list(store.list("")) == []


def test_interrupted_upload_is_listed_and_can_be_aborted(store: ObjectStore) -> None:
    store.put_bytes("objects/ab/other", b"x", retention=None)
    interrupted = _upload(store, "objects/ab/interrupted", os.urandom(PART + 1))
    # ...and the process "dies" here: neither commit nor abort.

    incomplete = list(store.list_incomplete_uploads("objects/"))
    assert [upload.key for upload in incomplete] == ["objects/ab/interrupted"]
    assert incomplete[0].initiated.tzinfo is not None
    assert list(store.list_incomplete_uploads("items/")) == []

    store.abort_incomplete_upload(incomplete[0])

    assert list(store.list_incomplete_uploads("")) == []
    assert not store.exists("objects/ab/interrupted")
    with pytest.raises(NotFound):
        store.abort_incomplete_upload(incomplete[0])
    interrupted.abort()  # the abandoned writer's own abort now finds nothing and is harmless


# -- local store only -----------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    created = LocalStore(tmp_path / "vault")
    created.initialise()
    return created


def _files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def _object_files(store: LocalStore) -> list[str]:
    return [name for name in _files_under(store.objects_dir) if name.endswith((".data", ".json"))]


def test_local_disk_full_while_writing(local: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    upload = local.begin_upload("objects/ab/full", retention=None)
    upload.write(b"a" * 1000)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", full)
        # written on the upload's writer thread: the failure is raised by this write or the next call
        with pytest.raises(StorageError, match="no space left"):
            upload.write(b"b" * 1000)
            upload.commit()

    assert _files_under(local.uploads_dir) == []
    assert _object_files(local) == []
    assert not local.exists("objects/ab/full")
    assert list(local.list_incomplete_uploads("")) == []


def test_local_upload_stores_what_was_written_even_if_the_caller_reuses_its_buffer(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bytes are written on the upload's own thread, later: a buffer the caller refills meanwhile
    # must not change what is stored, nor the checksum recorded for it.
    upload = local.begin_upload("objects/ab/reused", retention=None)
    refilled = threading.Event()
    real_write = os.write

    def write_once_refilled(fd: int, data: bytes) -> int:
        refilled.wait(timeout=30)  # the writer thread writes only after the caller changed its buffer
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_once_refilled)
    buffer = bytearray(b"first" * 100_000)
    upload.write(buffer)  # type: ignore[arg-type]  # a caller that passes a mutable buffer anyway
    buffer[:] = b"other" * 100_000
    refilled.set()
    upload.write(b"tail")
    info = upload.commit()

    assert _read(local, "objects/ab/reused") == b"first" * 100_000 + b"tail"
    assert info.checksum == hashlib.sha256(b"first" * 100_000 + b"tail").hexdigest()


def test_local_disk_full_while_committing(local: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    upload = local.begin_upload("objects/ab/full", retention=_governance())
    upload.write(b"a" * 1000)
    real_fsync = os.fsync
    calls = 0

    def full_on_record(fd: int) -> None:
        # Let the data file's fsync through; fail when the version record is flushed.
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full_on_record)
        with pytest.raises(StorageError, match="no space left"):
            upload.commit()

    assert _files_under(local.uploads_dir) == []
    assert _object_files(local) == []
    assert not local.exists("objects/ab/full")


def test_local_read_only_filesystem(local: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, for whom chmod 0o555 blocks nothing: simulate the mount instead.
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    local.put_bytes("objects/ab/before", b"x", retention=None)
    with monkeypatch.context() as patch:
        patch.setattr(os, "open", read_only)
        with pytest.raises(StorageError, match="read-only"):
            local.put_bytes("objects/ab/new", b"x", retention=None)
        with pytest.raises(StorageError, match="read-only"):
            local.begin_upload("objects/ab/new", retention=None)
        problems = local.check()
        assert _read(local, "objects/ab/before") == b"x"  # reading still works
    assert any("read-only" in problem for problem in problems)
    assert not local.exists("objects/ab/new")
    assert _files_under(local.uploads_dir) == []


def test_local_check_and_initialise(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "fresh")
    assert any("does not exist" in problem for problem in store.check())
    with pytest.raises(ConfigError, match="vault init"):
        store.put_bytes("a", b"x", retention=None)
    (tmp_path / "fresh").mkdir()
    assert any("not an initialised" in problem for problem in store.check())
    store.initialise()
    store.initialise()  # idempotent
    assert store.check() == []
    assert store.url == (tmp_path / "fresh").as_uri()


def test_local_layout_keeps_every_path_inside_the_root(local: LocalStore) -> None:
    info = local.put_bytes("objects/ab/cd", b"x", retention=None)
    assert _files_under(local.objects_dir) == [
        "objects/ab/cd/@v/" + name
        for name in sorted([f"{info.version_id}.data", f"{info.version_id}.json", "lock"])
    ]
    for hostile in ["../../../etc/passwd", "x/../../y", "/tmp/x"]:
        with pytest.raises((NotFound, InvalidInput)):
            local.head("objects/ab/cd", version_id=hostile)
    with pytest.raises(InvalidInput):
        local.abort_incomplete_upload(type("Upload", (), {"key": "a", "upload_id": "../x"})())  # type: ignore[arg-type]


def test_local_listing_skips_what_the_store_did_not_write(local: LocalStore) -> None:
    local.put_bytes("items/a", b"x", retention=None)
    (local.objects_dir / "items" / "Stray Folder" / "@v").mkdir(parents=True)
    assert [info.key for info in local.list("items/")] == ["items/a"]
    assert [info.key for info in local.list_versions("")] == ["items/a"]


def test_local_if_absent_is_race_safe(local: LocalStore) -> None:
    def attempt(index: int) -> bool:
        try:
            local.put_bytes("vault.json", f"writer {index}".encode(), retention=None, if_absent=True)
        except AlreadyExists:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, range(16)))
    assert outcomes.count(True) == 1
    assert len(list(local.list_versions("vault.json"))) == 1


def test_local_if_absent_is_race_safe_between_processes(local: LocalStore) -> None:
    script = f"""
import sys, time
sys.path.insert(0, {str(PROJECT_ROOT)!r})
from pathlib import Path
from evidence.errors import AlreadyExists
from storage.local import LocalStore
store = LocalStore(Path({str(local.root)!r}))
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # start together
try:
    store.put_bytes("vault.json", sys.argv[2].encode(), retention=None, if_absent=True)
except AlreadyExists:
    sys.exit(17)
"""
    start_at = str(time.time() + 1.0)
    writers = [
        subprocess.Popen([sys.executable, "-c", script, start_at, f"writer {index}"]) for index in range(4)
    ]
    exit_codes = sorted(writer.wait(timeout=30) for writer in writers)
    assert exit_codes == [0, 17, 17, 17]
    assert len(list(local.list_versions("vault.json"))) == 1


def test_local_crash_mid_commit_leaves_nothing_visible(local: LocalStore) -> None:
    # A separate process moves the bytes into place and dies before writing the version record.
    script = f"""
import os, sys
sys.path.insert(0, {str(PROJECT_ROOT)!r})
import storage.local as local_module
real = local_module._write_file_atomically
def crash(path, content, mode=0o644):
    if path.name.endswith(".json") and path.parent.name == "@v":
        os._exit(9)
    real(path, content, mode)
local_module._write_file_atomically = crash
store = local_module.LocalStore(local_module.Path({str(local.root)!r}))
upload = store.begin_upload("objects/ab/crashed", retention=None)
upload.write(b"partial" * 1000)
upload.commit()
"""
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True)
    assert result.returncode == 9, result.stderr.decode()

    assert not local.exists("objects/ab/crashed")
    assert list(local.list("")) == []
    assert list(local.list_versions("")) == []
    assert [name for name in _files_under(local.objects_dir) if name.endswith(".data")] != []  # orphan
    [left_over] = local.list_incomplete_uploads("")
    assert left_over.key == "objects/ab/crashed"
    local.abort_incomplete_upload(left_over)
    assert _object_files(local) == []
    assert _files_under(local.uploads_dir) == []


def test_local_detects_a_file_altered_outside_the_store(local: LocalStore) -> None:
    info = local.put_bytes("objects/ab/altered", b"original", retention=None)
    data_file = local.objects_dir / "objects/ab/altered/@v" / f"{info.version_id}.data"
    data_file.chmod(0o644)
    data_file.write_bytes(b"short")
    with pytest.raises(IntegrityError):
        local.get("objects/ab/altered")


# -- S3 only --------------------------------------------------------------------------------------


@pytest.fixture
def s3(moto_aws: None) -> S3Store:
    created = S3Store(BUCKET, PREFIX, part_size=PART, concurrency=2)
    created.initialise()
    return created


def test_s3_whole_object_reads_are_checked_against_the_stored_sha256(s3: S3Store) -> None:
    s3.put_bytes("objects/ab/tampered", b"original bytes", retention=None)
    # Reach into moto's backend to change the stored bytes behind S3's back.
    from moto.s3.models import s3_backends

    bucket = s3_backends["123456789012"]["global"].buckets[BUCKET]
    stored = bucket.keys[f"{PREFIX}/objects/ab/tampered"]
    stored._value_buffer.seek(0)
    stored._value_buffer.write(b"altered")

    with pytest.raises(IntegrityError, match="SHA-256"):
        _read(s3, "objects/ab/tampered")


@pytest.mark.parametrize("server", S3_SERVERS)
def test_s3_the_server_itself_refuses_to_delete_a_locked_version(
    server: str, request: pytest.FixtureRequest
) -> None:
    """``S3Store.delete_version`` checks the lock before it asks, so the contract tests above would pass
    against a bucket that enforced nothing. Here the store is bypassed: a raw DeleteObject of a locked
    version, without x-amz-bypass-governance-retention, must be refused by the server itself (moto in
    process and over HTTP, Ceph RGW), and the version must still be there."""
    from botocore.exceptions import ClientError

    bucket = _s3_server(request, server)
    store = S3Store(bucket, PREFIX, part_size=PART, concurrency=2)
    store.initialise()
    client = boto3.session.Session().client("s3")  # not boto3's default session, which keeps old keys
    governed = store.put_bytes("objects/ab/governed", b"evidence", retention=_governance())
    compliant = store.put_bytes("objects/ab/compliant", b"evidence", retention=_compliance())
    held = store.put_bytes("objects/ab/held", b"evidence", retention=None)
    store.set_legal_hold("objects/ab/held", held.version_id, True)
    unlocked = store.put_bytes("objects/ab/unlocked", b"not evidence", retention=None)

    for info in (governed, compliant, held):
        with pytest.raises(ClientError) as refused:
            client.delete_object(Bucket=bucket, Key=f"{PREFIX}/{info.key}", VersionId=info.version_id)
        assert refused.value.response["Error"]["Code"] == "AccessDenied", info.key
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        still = client.head_object(Bucket=bucket, Key=f"{PREFIX}/{info.key}", VersionId=info.version_id)
        assert still["VersionId"] == info.version_id
        assert _read(store, info.key, version_id=info.version_id) == b"evidence"
    versions = client.list_object_versions(Bucket=bucket, Prefix=f"{PREFIX}/objects/")
    assert "DeleteMarkers" not in versions
    assert len(versions["Versions"]) == 4

    # the refusal is the lock's doing: the same call removes an unlocked version, and a governance
    # lock gives way to the bypass header (which only s3:BypassGovernanceRetention may send)
    client.delete_object(Bucket=bucket, Key=f"{PREFIX}/{unlocked.key}", VersionId=unlocked.version_id)
    client.delete_object(
        Bucket=bucket,
        Key=f"{PREFIX}/{governed.key}",
        VersionId=governed.version_id,
        BypassGovernanceRetention=True,
    )
    assert not store.exists(unlocked.key) and not store.exists(governed.key)


@pytest.mark.parametrize("server", S3_SERVERS)
def test_s3_a_delete_marker_is_told_from_a_missing_version_and_removed(
    server: str, request: pytest.FixtureRequest
) -> None:
    """A plain DeleteObject (anyone's with s3:DeleteObject; never this program's) hides a key under a
    delete marker; a disposal must be able to remove it. S3 answers a HEAD of the marker with
    x-amz-delete-marker, Ceph RGW 16 with a bare 404, as for a version that does not exist."""
    bucket = _s3_server(request, server)
    store = S3Store(bucket, PREFIX, part_size=PART, concurrency=2)
    store.initialise()
    kept = store.put_bytes("items/x/note", b"first", retention=None)
    client = boto3.session.Session().client("s3")
    marker_version = client.delete_object(Bucket=bucket, Key=f"{PREFIX}/items/x/note")["VersionId"]

    assert not store.exists("items/x/note")
    with pytest.raises(NotFound):
        store.head("items/x/note")
    history = {(info.version_id, info.is_delete_marker) for info in store.list_versions("items/x/note")}
    assert history == {(marker_version, True), (kept.version_id, False)}

    store.delete_version("items/x/note", marker_version)
    assert store.head("items/x/note").version_id == kept.version_id
    with pytest.raises(NotFound):  # gone now: no such version, and no longer a delete marker
        store.delete_version("items/x/note", marker_version)
    store.delete_version("items/x/note", kept.version_id)
    assert list(store.list_versions("items/x/note")) == []


def test_s3_keys_live_under_the_prefix(s3: S3Store) -> None:
    info = s3.put_bytes("items/x", b"x", retention=None)
    raw = boto3.client("s3", region_name=REGION).head_object(Bucket=BUCKET, Key=f"{PREFIX}/items/x")
    assert raw["VersionId"] == info.version_id
    assert info.key == "items/x"
    assert s3.url == f"s3://{BUCKET}/{PREFIX}"


@pytest.mark.parametrize("server", ["s3-moto", "s3-rgw"])
def test_s3_check_reports_an_unfit_bucket(server: str, request: pytest.FixtureRequest) -> None:
    bucket = _s3_server(request, server)
    store = S3Store(bucket, part_size=PART)
    [missing] = store.check()
    assert "does not exist" in missing and "vault init" in missing

    client = boto3.session.Session().client("s3")
    region = client.meta.region_name
    where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    client.create_bucket(Bucket=bucket, **where)
    problems = " | ".join(store.check())
    assert "versioning" in problems
    assert "Object Lock" in problems
    assert "public access" in problems

    if server == "s3-rgw":
        # RGW 16 cannot turn Object Lock on for a bucket created without it (S3 can, since 2023):
        # only a bucket that initialise creates itself can hold a vault there
        with pytest.raises(EvidenceError, match="Object Lock"):
            store.initialise()
        store = S3Store(unique_bucket(), part_size=PART)
    store.initialise()
    assert store.check() == []


def test_s3_rejected_credentials_are_access_denied(s3: S3Store) -> None:
    from moto.core import set_initial_no_auth_action_count

    @set_initial_no_auth_action_count(0)
    def with_auth_enforced() -> None:
        with pytest.raises(AccessDenied, match="credentials"):
            s3.head("items/x")
        with pytest.raises(AccessDenied):
            s3.put_bytes("items/x", b"x", retention=None)
        assert any("InvalidAccessKeyId" in problem for problem in s3.check())

    with_auth_enforced()


def test_s3_rejected_credentials_are_access_denied_by_rgw(rgw_env: Any) -> None:
    """A real server's own refusal of keys it does not know, and of a wrong secret for keys it does."""
    bucket = unique_bucket()
    S3Store(bucket, PREFIX, part_size=PART).initialise()
    for access_key, secret_key in (("NOSUCHKEY0000000000A", "wrong"), (rgw_env.access_key, "wrong")):
        client = boto3.session.Session().client(
            "s3", aws_access_key_id=access_key, aws_secret_access_key=secret_key
        )
        store = S3Store(bucket, PREFIX, client=client, part_size=PART)
        with pytest.raises(AccessDenied, match="credentials"):
            store.head("items/x")
        with pytest.raises(AccessDenied):
            store.put_bytes("items/x", b"x", retention=None)
        [problem] = store.check()  # a HEAD of the bucket: a bare 403, no error code to name
        assert "credentials" in problem and "403" in problem


def test_s3_unreachable_endpoint_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{closed_port}",
        config=botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1, read_timeout=1
        ),
    )
    store = S3Store(BUCKET, client=client)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="cannot reach"):
        store.head("items/x")
    with pytest.raises(StorageUnavailable):
        store.put_bytes("items/x", b"x", retention=None)
    [problem] = store.check()
    assert "cannot reach" in problem
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("SlowDown", 503, StorageUnavailable),
        ("InternalError", 500, StorageUnavailable),
        ("NoSuchBucket", 404, ConfigError),
        ("NoSuchKey", 404, NotFound),
        ("AccessDenied", 403, AccessDenied),
        ("SignatureDoesNotMatch", 403, AccessDenied),
        ("PreconditionFailed", 412, AlreadyExists),
        ("InvalidArgument", 400, StorageError),
        # the server received other bytes than the request's MD5, checksum or signature describe
        ("BadDigest", 400, IntegrityError),
        ("InvalidDigest", 400, IntegrityError),
        ("XAmzContentSHA256Mismatch", 400, IntegrityError),
    ],
)
def test_s3_errors_are_translated(code: str, status: int, expected: type[Exception]) -> None:
    client = boto3.client("s3", region_name=REGION)
    with Stubber(client) as stubber:
        stubber.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(expected) as raised:
            S3Store(BUCKET, client=client).get("items/x")
    assert type(raised.value).__module__ == "evidence.errors"
    assert raised.value.__cause__ is not None  # raised from the botocore error, for debugging


def test_s3_put_sends_md5_checksum_lock_and_create_only_headers() -> None:
    client = boto3.client("s3", region_name=REGION)
    retention = _governance()
    body = b"manifest"
    checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()  # what S3 calls ChecksumSHA256
    md5 = hashlib.md5(body, usedforsecurity=False).digest()
    with Stubber(client) as stubber:
        stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stubber.add_response(
            "put_object",
            {"VersionId": "v1", "ETag": f'"{md5.hex()}"', "ChecksumSHA256": checksum},
            {
                "Bucket": BUCKET,
                "Key": "p/items/m",
                "Body": body,
                "ContentType": "application/octet-stream",
                "ContentMD5": base64.b64encode(md5).decode(),
                "ChecksumAlgorithm": "SHA256",
                "ChecksumSHA256": checksum,
                "ObjectLockMode": "GOVERNANCE",
                "ObjectLockRetainUntilDate": retention.retain_until,
                "IfNoneMatch": "*",
            },
        )
        stubber.add_response(
            "get_object_retention",
            {"Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": retention.retain_until}},
            {"Bucket": BUCKET, "Key": "p/items/m", "VersionId": "v1"},
        )
        # and then whether it came first: the record of a create-once key is its first version
        stubber.add_response(
            "list_object_versions",
            {"Versions": [{"Key": "p/items/m", "VersionId": "v1", "IsLatest": True}]},
            {"Bucket": BUCKET, "Prefix": "p/items/m"},
        )
        info = S3Store(BUCKET, "p/", client=client).put_bytes(
            "items/m", body, retention=retention, if_absent=True
        )
        stubber.assert_no_pending_responses()  # and no HEAD of the new version
    assert (info.version_id, info.checksum, info.size, info.retention) == (
        "v1",
        checksum,
        len(body),
        retention,
    )


def test_s3_memory_and_parts_in_flight_are_bounded(s3: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    real_upload_part = s3.client.upload_part
    in_flight = 0
    most_in_flight = 0
    uploaded_bytes = 0
    lock = threading.Lock()

    def slow_upload_part(**kwargs: Any) -> Any:
        nonlocal in_flight, most_in_flight, uploaded_bytes
        with lock:
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
        time.sleep(0.05)
        try:
            return real_upload_part(**kwargs)
        finally:
            with lock:
                in_flight -= 1
                uploaded_bytes += len(kwargs["Body"])

    monkeypatch.setattr(s3.client, "upload_part", slow_upload_part)
    chunk = os.urandom(MiB)
    upload = s3.begin_upload("objects/ab/bounded", retention=None)
    most_held = 0
    for _ in range(31):  # seven parts
        upload.write(chunk)
        with lock:
            most_held = max(most_held, upload.bytes_written - uploaded_bytes)
    upload.commit()

    # Bytes accepted but not yet uploaded stay within (concurrency + 1) parts plus one write:
    # write() blocks rather than queueing the whole object in memory.
    assert most_held <= (s3.concurrency + 1) * PART + MiB
    assert most_in_flight == s3.concurrency
    assert s3.head("objects/ab/bounded").size == 31 * MiB


def test_s3_failed_part_aborts_the_upload(s3: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import EndpointConnectionError

    def broken(**kwargs: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="http://s3.invalid")

    monkeypatch.setattr(s3.client, "upload_part", broken)
    upload = s3.begin_upload("objects/ab/broken", retention=None)
    with pytest.raises(StorageUnavailable):
        upload.write(os.urandom(PART + 1))
        upload.commit()
    assert list(s3.list_incomplete_uploads("")) == []
    assert not s3.exists("objects/ab/broken")


# -- open_store -----------------------------------------------------------------------------------


def test_open_store_file_url(tmp_path: Path) -> None:
    store = open_store(Settings(vault_url=(tmp_path / "v").as_uri()))
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path / "v"
    default = open_store(Settings(data_dir=tmp_path / "station"))
    assert isinstance(default, LocalStore) and default.root == (tmp_path / "station" / "vault").resolve()


def test_open_store_s3_url(moto_aws: None) -> None:
    store = open_store(
        Settings(vault_url="s3://evidence-bucket/force/vault/", part_size=6 * MiB, upload_concurrency=3)
    )
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.part_size, store.concurrency) == (
        "evidence-bucket",
        "force/vault",
        6 * MiB,
        3,
    )
    assert store.url == "s3://evidence-bucket/force/vault"
    bare = open_store(Settings(vault_url="s3://evidence-bucket"))
    assert isinstance(bare, S3Store) and bare.prefix == ""


@pytest.mark.parametrize(
    "url", ["ftp://host/x", "file://relative/path", "s3://", "s3://UPPER", "/just/a/path", "s3://b?x=1"]
)
def test_open_store_rejects_other_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(Settings(vault_url=url))
