"""The embedded object store: a local directory that keeps S3's versioning and Object Lock rules.

Layout and guarantees are documented in ``docs/storage.md`` ("Local store"). In short::

    <root>/evidence-store.json                 marker written by initialise()
    <root>/uploads/<upload-id>.part            bytes of an upload in progress (same filesystem)
    <root>/uploads/<upload-id>.json            its key and start time, for list_incomplete_uploads
    <root>/objects/<key>/@v/<version-id>.data  one version's bytes (read-only file)
    <root>/objects/<key>/@v/<version-id>.json  its record: size, sha256, retention, legal hold
    <root>/objects/<key>/@v/lock               flock()ed while a writer changes this key

A version exists exactly when its ``.json`` record exists; the record is renamed into place after the
bytes, so a crash never exposes a partial object. ``@`` cannot appear in a key, so ``@v`` can never
collide with a key's own path segments.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evidence.errors import (
    AlreadyExists,
    ConfigError,
    EvidenceError,
    IntegrityError,
    InvalidInput,
    NotFound,
    StorageError,
)
from storage.base import IncompleteUpload, ObjectInfo, Retention
from storage.file_writer import BackgroundFileWriter, write_all
from storage.rules import (
    iso_utc,
    refuse_if_locked,
    refuse_if_shortening,
    validate_key,
    validate_prefix,
    validate_retention,
)

READ_CHUNK_SIZE = 1024 * 1024
STORE_FORMAT = "evidence-local-store"
STORE_FORMAT_VERSION = 1
MARKER_NAME = "evidence-store.json"
VERSIONS_DIR = "@v"

_VERSION_ID_PATTERN = re.compile(r"[0-9]{20}-[0-9a-f]{12}")
_UPLOAD_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


def _describe_os_error(err: OSError, action: str, path: Path) -> EvidenceError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(
            f"{action}: no space left on the disk holding {path} ({err.strerror}); "
            "free space or move the vault, then retry"
        )
    if err.errno == errno.EROFS:
        return StorageError(f"{action}: {path} is on a read-only filesystem; remount it read-write")
    if err.errno in (errno.EACCES, errno.EPERM):
        return StorageError(
            f"{action}: permission denied on {path}; the station's user must be able to write there"
        )
    return StorageError(f"{action} failed at {path}: {err.strerror or err}")


@contextmanager
def _os_errors(action: str, path: Path) -> Iterator[None]:
    """Turn filesystem failures into the project's errors, naming what was being done and where."""
    try:
        yield
    except EvidenceError:
        raise
    except OSError as err:
        raise _describe_os_error(err, action, path) from err


def _fsync_dir(path: Path) -> None:
    # A rename is only durable once the directory holding the new name is flushed too.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_atomically(path: Path, content: bytes, mode: int = 0o644) -> None:
    """Write ``content`` to ``path`` so readers see the old file or the whole new one, never a part."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            write_all(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        temp.replace(path)
    except BaseException:
        with suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(path.parent)


def _make_dirs(path: Path) -> None:
    """``mkdir -p`` that also flushes each parent whose listing gained a directory."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with suppress(FileExistsError):
            directory.mkdir()
            _fsync_dir(directory.parent)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _retention_record(retention: Retention | None) -> dict[str, str] | None:
    if retention is None:
        return None
    return {"mode": retention.mode, "retain_until": iso_utc(retention.retain_until)}


def _retention_from_record(record: dict[str, str] | None) -> Retention | None:
    if record is None:
        return None
    mode = record["mode"]
    until = _parse_time(record["retain_until"])
    if mode == "GOVERNANCE":
        return Retention(mode="GOVERNANCE", retain_until=until)
    if mode == "COMPLIANCE":
        return Retention(mode="COMPLIANCE", retain_until=until)
    raise IntegrityError(f"version record has an unknown retention mode {mode!r}")


class LocalUpload:
    """One streaming write into the staging area. Bytes are written and hashed on a thread of the
    upload's own (``storage.file_writer``), a few chunks behind the caller: memory stays bounded."""

    checksum_is_sha256 = True
    """The checksum is the SHA-256 of the bytes written, taken as they are written (docs/storage.md §2.2)."""

    def __init__(
        self,
        store: LocalStore,
        key: str,
        *,
        retention: Retention | None,
        content_type: str,
        if_absent: bool = False,
    ) -> None:
        self.key = key
        self._store = store
        self._retention = retention
        self._content_type = content_type
        self._if_absent = if_absent
        self._size = 0
        self._sha256: str | None = None
        self._finished = False
        self.upload_id = secrets.token_hex(16)
        self._part_path = store.uploads_dir / f"{self.upload_id}.part"
        self._record_path = store.uploads_dir / f"{self.upload_id}.json"
        self._fd: int | None = None
        self._writer: BackgroundFileWriter | None = None
        with store.staging_errors(f"starting an upload of {key}"):
            # The record goes first: a crash after it leaves something list_incomplete_uploads finds.
            _write_file_atomically(
                self._record_path,
                json.dumps({"key": key, "created": iso_utc(datetime.now(UTC))}).encode(),
            )
            try:
                self._fd = os.open(self._part_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                self._writer = BackgroundFileWriter(self._fd)
            except BaseException:
                with suppress(OSError):
                    self._record_path.unlink()
                raise

    @property
    def bytes_written(self) -> int:
        return self._size

    @property
    def expected_checksum(self) -> str:
        if self._sha256 is not None:
            return self._sha256
        if self._writer is None:
            return hashlib.sha256().hexdigest()
        return self._writer.sha256()

    def write(self, data: bytes) -> None:
        self._open_fd()
        assert self._writer is not None
        try:
            # the writer reads the chunk later, on its thread: it must be bytes no one can change
            self._writer.write(data if isinstance(data, bytes) else bytes(data))
        except OSError as err:  # an earlier chunk's write failed on the writer's thread
            self.abort()
            raise _describe_os_error(err, f"writing {self.key}", self._store.root) from err
        self._size += len(data)

    def commit(self) -> ObjectInfo:
        fd = self._open_fd()
        assert self._writer is not None
        try:
            with _os_errors(f"storing {self.key}", self._store.root):
                # every chunk written (or the first write error raised) before the one fsync that
                # makes the bytes durable; the version is published only after it
                self._sha256 = self._writer.finish()
                if self._writer.bytes_written != self._size:
                    raise IntegrityError(
                        f"{self.key}: {self._writer.bytes_written} bytes written of the {self._size} sent"
                    )
                os.fsync(fd)
                # Stored versions are read-only files: a stray write by another program fails loudly.
                os.fchmod(fd, 0o444)
                os.close(fd)
                self._fd = None
                info = self._store.publish(
                    upload_id=self.upload_id,
                    key=self.key,
                    size=self._size,
                    sha256=self._sha256,
                    retention=self._retention,
                    content_type=self._content_type,
                    if_absent=self._if_absent,
                )
        except BaseException:
            self.abort()
            raise
        self._finished = True
        return info

    def abort(self) -> None:
        self._finished = True
        if self._writer is not None:
            self._writer.close()  # before the descriptor closes: the thread may still be writing to it
        if self._fd is not None:
            with suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._store.discard_staged(self.upload_id)

    def _open_fd(self) -> int:
        if self._finished or self._fd is None:
            raise StorageError(f"the upload of {self.key} is already committed or aborted")
        return self._fd


class LocalStore:
    """Versioned, retention-enforcing object store in a directory (URL ``file:///path``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()
        self.objects_dir = self.root / "objects"
        self.uploads_dir = self.root / "uploads"
        self._marker = self.root / MARKER_NAME

    # -- container ---------------------------------------------------------------------------------

    def check(self) -> list[str]:
        if not self.root.is_dir():
            return [f"vault directory {self.root} does not exist: run `evidence vault init`"]
        problems: list[str] = []
        if not self._marker.is_file():
            problems.append(
                f"{self.root} is not an initialised evidence store (no {MARKER_NAME}): "
                "run `evidence vault init`"
            )
        for directory in (self.objects_dir, self.uploads_dir):
            if not directory.is_dir():
                problems.append(f"{directory} is missing: run `evidence vault init`")
        if self.root.stat().st_mode & 0o002:
            problems.append(f"{self.root} is writable by every user; restrict it (chmod o-w)")
        if self.uploads_dir.is_dir():
            # os.access() says yes to root even on a read-only mount, so really try to create a file.
            probe = self.uploads_dir / f".probe-{secrets.token_hex(6)}"
            try:
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                probe.unlink()
            except OSError as err:
                problems.append(str(_describe_os_error(err, "checking the vault is writable", self.root)))
        return problems

    def initialise(self) -> list[str]:
        with _os_errors("creating the vault", self.root):
            if self._marker.is_file():
                try:
                    marker = json.loads(self._marker.read_bytes())
                except ValueError as err:
                    raise ConfigError(f"{self._marker} is not a valid store marker") from err
                if marker.get("format") != STORE_FORMAT:
                    raise ConfigError(f"{self.root} holds something other than an evidence store")
            _make_dirs(self.objects_dir)
            _make_dirs(self.uploads_dir)
            if not self._marker.is_file():
                marker_text = {"format": STORE_FORMAT, "version": STORE_FORMAT_VERSION}
                _write_file_atomically(self._marker, json.dumps(marker_text).encode())
        return []

    # -- writing -----------------------------------------------------------------------------------

    def begin_upload(
        self, key: str, *, retention: Retention | None, content_type: str = "application/octet-stream"
    ) -> LocalUpload:
        validate_key(key)
        validate_retention(retention)
        return LocalUpload(self, key, retention=retention, content_type=content_type)

    def put_bytes(
        self, key: str, data: bytes, *, retention: Retention | None, if_absent: bool = False
    ) -> ObjectInfo:
        """One request, as S3's PutObject: the version is stored whole or not at all, and a process
        killed part-way leaves no incomplete upload for anyone to clean up (S3 keeps none of a PUT).
        The bytes are written under the key's lock next to the versions and recorded last; bytes a
        killed writer left without a record are no version, and the next writer of the key removes
        them (under the lock no other writer can be half-way)."""
        validate_key(key)
        validate_retention(retention)
        if not self.objects_dir.is_dir():
            raise ConfigError(f"{self.root} is not an initialised evidence store: run `evidence vault init`")
        versions = self._versions_dir(key)
        with _os_errors(f"storing {key}", self.root):
            _make_dirs(versions)
            with self._key_lock(versions):
                if if_absent and self._version_ids(versions):
                    raise AlreadyExists(f"{key} already exists in {self.url}; it is written only once")
                self._remove_unrecorded(versions)
                version_id = self._new_version_id(versions)
                data_path = versions / f"{version_id}.data"
                try:
                    fd = os.open(data_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
                    try:
                        write_all(fd, data)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    _fsync_dir(versions)
                    record = self._record_version(
                        versions,
                        key=key,
                        version_id=version_id,
                        size=len(data),
                        sha256=hashlib.sha256(data).hexdigest(),
                        retention=retention,
                        content_type="application/octet-stream",
                    )
                except BaseException:
                    with suppress(OSError):
                        data_path.unlink()
                    raise
        return self._info_from_record(record)

    @staticmethod
    def _remove_unrecorded(versions: Path) -> None:
        """Bytes with no version record, and temporary files, that a killed writer left. Only under the
        key's lock, where no other writer of the key is half-way."""
        recorded = {name[:-5] for name in _names_in(versions) if name.endswith(".json")}
        for name in _names_in(versions):
            leftover = (name.endswith(".data") and name[:-5] not in recorded) or (
                name.startswith(".") and name.endswith(".tmp")
            )
            if leftover:
                with suppress(FileNotFoundError):
                    (versions / name).unlink()

    def _record_version(
        self,
        versions: Path,
        *,
        key: str,
        version_id: str,
        size: int,
        sha256: str,
        retention: Retention | None,
        content_type: str,
    ) -> dict[str, Any]:
        """Write a version's record, which makes it exist (its bytes are already in place)."""
        record = {
            "key": key,
            "version_id": version_id,
            "size": size,
            "sha256": sha256,
            "content_type": content_type,
            "created": iso_utc(datetime.now(UTC)),
            "retention": _retention_record(retention),
            "legal_hold": False,
        }
        _write_file_atomically(versions / f"{version_id}.json", json.dumps(record).encode())
        return record

    def publish(
        self,
        *,
        upload_id: str,
        key: str,
        size: int,
        sha256: str,
        retention: Retention | None,
        content_type: str,
        if_absent: bool,
    ) -> ObjectInfo:
        """Move a finished, fsynced staged file into place as the key's newest version."""
        versions = self._versions_dir(key)
        _make_dirs(versions)
        with self._key_lock(versions):
            existing = self._version_ids(versions)
            if if_absent and existing:
                raise AlreadyExists(f"{key} already exists in {self.url}; it is written only once")
            version_id = self._new_version_id(versions)
            data_path = versions / f"{version_id}.data"
            # Name the target in the upload record first, so aborting a crashed commit can find and
            # remove bytes that were moved but never got their version record.
            staged_record = self.uploads_dir / f"{upload_id}.json"
            _write_file_atomically(
                staged_record,
                json.dumps(
                    {"key": key, "created": iso_utc(datetime.now(UTC)), "target": version_id}
                ).encode(),
            )
            (self.uploads_dir / f"{upload_id}.part").replace(data_path)
            try:
                _fsync_dir(versions)
                record = self._record_version(
                    versions,
                    key=key,
                    version_id=version_id,
                    size=size,
                    sha256=sha256,
                    retention=retention,
                    content_type=content_type,
                )
            except BaseException:
                with suppress(OSError):
                    data_path.unlink()
                raise
        with suppress(OSError):
            staged_record.unlink()
        return self._info_from_record(record)

    def discard_staged(self, upload_id: str) -> bool:
        """Remove one staged upload (and bytes a crashed commit moved but never recorded)."""
        record_path = self.uploads_dir / f"{upload_id}.json"
        found = False
        with _os_errors(f"removing staged upload {upload_id}", self.uploads_dir):
            try:
                record = json.loads(record_path.read_bytes())
                found = True
            except FileNotFoundError:
                record = {}
            except ValueError:
                record = {}
                found = True
            target = record.get("target")
            key = record.get("key")
            if isinstance(target, str) and isinstance(key, str):
                self._remove_unrecorded_version(key, target)
            for path in (self.uploads_dir / f"{upload_id}.part", record_path):
                try:
                    path.unlink()
                    found = True
                except FileNotFoundError:
                    pass
            if found:
                _fsync_dir(self.uploads_dir)
        return found

    def _remove_unrecorded_version(self, key: str, version_id: str) -> None:
        with suppress(InvalidInput):
            validate_key(key)
            if not _VERSION_ID_PATTERN.fullmatch(version_id):
                return
            versions = self._versions_dir(key)
            if not versions.is_dir():
                return
            with self._key_lock(versions):
                if not (versions / f"{version_id}.json").exists():
                    with suppress(FileNotFoundError):
                        (versions / f"{version_id}.data").unlink()

    # -- reading -----------------------------------------------------------------------------------

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        validate_key(key)
        with _os_errors(f"reading {key}", self.root):
            return self._info_from_record(self._read_record(key, version_id))

    def first_version(self, key: str) -> str:
        validate_key(key)
        # Version ids sort in write order (§2.1); if_absent is race-safe here, so a create-once key has
        # one version unless someone wrote past this store.
        with _os_errors(f"reading {key}", self.root):
            ids = self._version_ids(self._versions_dir(key))
        if not ids:
            raise NotFound(f"{key} does not exist in {self.url}")
        return ids[0]

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except NotFound:
            return False
        return True

    def get(
        self, key: str, *, version_id: str | None = None, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        validate_key(key)
        if start < 0 or (end is not None and end < start):
            raise InvalidInput(f"byte range [{start}, {end}) of {key} is not a valid range")
        with _os_errors(f"reading {key}", self.root):
            record = self._read_record(key, version_id)
            data_path = self._versions_dir(key) / f"{record['version_id']}.data"
            try:
                handle = data_path.open("rb")
            except FileNotFoundError as err:
                raise NotFound(f"{key} (version {record['version_id']}) was deleted") from err
            actual_size = os.fstat(handle.fileno()).st_size
            if actual_size != record["size"]:
                handle.close()
                raise IntegrityError(
                    f"{data_path} holds {actual_size} bytes but {record['size']} were stored; "
                    "the file was altered outside the store"
                )
        stop = record["size"] if end is None else min(end, record["size"])
        return self._read_range(handle, key, start, stop)

    def _read_range(self, handle: Any, key: str, start: int, stop: int) -> Iterator[bytes]:
        with handle, _os_errors(f"reading {key}", self.root):
            if start >= stop:
                return
            handle.seek(start)
            remaining = stop - start
            while remaining > 0:
                chunk = handle.read(min(READ_CHUNK_SIZE, remaining))
                if not chunk:
                    raise IntegrityError(f"{key} ended {remaining} bytes early while being read")
                remaining -= len(chunk)
                yield chunk

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        for key in self._keys(prefix):
            try:
                yield self.head(key)
            except NotFound:
                continue  # every version was deleted: nothing current under this key

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        for key in self._keys(prefix):
            versions = self._versions_dir(key)
            for version_id in reversed(self._version_ids(versions)):
                try:
                    yield self._info_from_record(self._read_record(key, version_id))
                except NotFound:
                    continue

    def _keys(self, prefix: str) -> builtins.list[str]:
        # Walk only the directory named by the prefix's complete segments, prune everything that
        # cannot match, and sort: S3 lists in key order, which is not the filesystem's walk order.
        base = prefix.rpartition("/")[0]
        start = self.objects_dir / base if base else self.objects_dir
        keys: builtins.list[str] = []
        with _os_errors("listing objects", self.objects_dir):
            for directory, subdirectories, _files in os.walk(start):
                relative = Path(directory).relative_to(self.objects_dir).as_posix()
                if VERSIONS_DIR in subdirectories:
                    subdirectories.remove(VERSIONS_DIR)
                    if relative.startswith(prefix) and _is_valid_key(relative):
                        keys.append(relative)
                subdirectories[:] = [
                    name
                    for name in subdirectories
                    if _may_hold_prefix(name if relative == "." else f"{relative}/{name}", prefix)
                ]
        return sorted(keys)

    # -- retention ---------------------------------------------------------------------------------

    def delete_version(self, key: str, version_id: str, *, bypass_governance: bool = False) -> None:
        validate_key(key)
        versions = self._versions_dir(key)
        with _os_errors(f"deleting {key}", self.root):
            record = self._read_record(key, version_id)
            with self._key_lock(versions):
                record = self._read_record(key, version_id)
                refuse_if_locked(
                    key,
                    version_id,
                    _retention_from_record(record["retention"]),
                    bool(record["legal_hold"]),
                    bypass_governance=bypass_governance,
                )
                # Record first: once it is gone the version no longer exists, whatever happens next.
                (versions / f"{version_id}.json").unlink()
                _fsync_dir(versions)
                with suppress(FileNotFoundError):
                    (versions / f"{version_id}.data").unlink()
                _fsync_dir(versions)

    def extend_retention(self, key: str, version_id: str, retention: Retention) -> None:
        validate_key(key)
        validate_retention(retention)

        def extend(record: dict[str, Any]) -> None:
            refuse_if_shortening(key, version_id, _retention_from_record(record["retention"]), retention)
            record["retention"] = _retention_record(retention)

        self._update_record(key, version_id, extend, "extending retention of")

    def get_retention(self, key: str, version_id: str) -> Retention | None:
        return self.head(key, version_id=version_id).retention

    def get_legal_hold(self, key: str, version_id: str) -> bool:
        return self.head(key, version_id=version_id).legal_hold

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None:
        validate_key(key)

        def hold(record: dict[str, Any]) -> None:
            record["legal_hold"] = bool(on)

        self._update_record(key, version_id, hold, "setting the legal hold on")

    def _update_record(self, key: str, version_id: str, change: Any, action: str) -> None:
        versions = self._versions_dir(key)
        with _os_errors(f"{action} {key}", self.root):
            self._read_record(key, version_id)
            with self._key_lock(versions):
                record = self._read_record(key, version_id)
                change(record)
                _write_file_atomically(versions / f"{version_id}.json", json.dumps(record).encode())

    # -- incomplete uploads ------------------------------------------------------------------------

    def list_incomplete_uploads(self, prefix: str) -> Iterator[IncompleteUpload]:
        validate_prefix(prefix)
        found: list[IncompleteUpload] = []
        with _os_errors("listing incomplete uploads", self.uploads_dir):
            for record_path in self.uploads_dir.glob("*.json"):
                upload_id = record_path.stem
                if not _UPLOAD_ID_PATTERN.fullmatch(upload_id):
                    continue
                try:
                    record = json.loads(record_path.read_bytes())
                    key = str(record["key"])
                    initiated = _parse_time(record["created"])
                except FileNotFoundError:
                    continue  # committed or aborted while we looked
                except (ValueError, KeyError, TypeError):
                    key, initiated = "", datetime.fromtimestamp(0, UTC)
                if key.startswith(prefix):
                    found.append(IncompleteUpload(key=key, upload_id=upload_id, initiated=initiated))
        yield from sorted(found, key=lambda upload: (upload.key, upload.initiated, upload.upload_id))

    def abort_incomplete_upload(self, upload: IncompleteUpload) -> None:
        if not _UPLOAD_ID_PATTERN.fullmatch(upload.upload_id):
            raise InvalidInput(f"{upload.upload_id!r} is not an upload id of this store")
        if not self.discard_staged(upload.upload_id):
            raise NotFound(f"no incomplete upload {upload.upload_id} of {upload.key} in {self.url}")

    # -- internals ---------------------------------------------------------------------------------

    @contextmanager
    def staging_errors(self, action: str) -> Iterator[None]:
        try:
            with _os_errors(action, self.root):
                yield
        except StorageError as err:
            if not self.uploads_dir.is_dir():
                raise ConfigError(
                    f"{self.root} is not an initialised evidence store: run `evidence vault init`"
                ) from err
            raise

    def _versions_dir(self, key: str) -> Path:
        return self.objects_dir / key / VERSIONS_DIR

    @contextmanager
    def _key_lock(self, versions: Path) -> Iterator[None]:
        # flock serialises writers of one key across processes and threads (each open() is its own
        # lock holder), which is what makes if_absent race-safe.
        fd = os.open(versions / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _version_ids(versions: Path) -> builtins.list[str]:
        try:
            names = _names_in(versions)
        except FileNotFoundError:
            return []
        ids = [name[:-5] for name in names if name.endswith(".json")]
        return sorted(version_id for version_id in ids if _VERSION_ID_PATTERN.fullmatch(version_id))

    def _new_version_id(self, versions: Path) -> str:
        # Ids sort in write order: a time-based sequence that never goes backwards for this key
        # (even if the clock does), plus randomness so a reused sequence can never name an old version.
        known = [name.split("-", 1)[0] for name in _names_in(versions) if name[:1].isdigit()]
        highest = max((int(sequence) for sequence in known if sequence.isdigit()), default=0)
        sequence = max(time.time_ns(), highest + 1)
        return f"{sequence:020d}-{secrets.token_hex(6)}"

    def _read_record(self, key: str, version_id: str | None) -> dict[str, Any]:
        versions = self._versions_dir(key)
        if version_id is not None:
            if not _VERSION_ID_PATTERN.fullmatch(version_id):
                raise NotFound(f"{key} has no version {version_id!r} in {self.url}")
            candidates = [version_id]
        else:
            candidates = list(reversed(self._version_ids(versions)))
        for candidate in candidates:
            try:
                record: dict[str, Any] = json.loads((versions / f"{candidate}.json").read_bytes())
            except FileNotFoundError:
                continue  # deleted between listing and reading: the next newest is current
            except ValueError as err:
                raise IntegrityError(f"the record of {key} version {candidate} is corrupt") from err
            return record
        if version_id is not None:
            raise NotFound(f"{key} has no version {version_id} in {self.url}")
        raise NotFound(f"{key} does not exist in {self.url}")

    @staticmethod
    def _info_from_record(record: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=record["key"],
            version_id=record["version_id"],
            size=int(record["size"]),
            checksum=record["sha256"],
            retention=_retention_from_record(record["retention"]),
            legal_hold=bool(record["legal_hold"]),
            last_modified=_parse_time(record["created"]),
        )


def _is_valid_key(key: str) -> bool:
    # Directories put there by hand are not objects of this store; listing skips rather than fails.
    try:
        validate_key(key)
    except InvalidInput:
        return False
    return True


def _names_in(directory: Path) -> list[str]:
    return [entry.name for entry in directory.iterdir()]


def _may_hold_prefix(relative_dir: str, prefix: str) -> bool:
    """Could a key at or below ``relative_dir`` start with ``prefix``?"""
    return relative_dir.startswith(prefix) or prefix.startswith(relative_dir + "/")
