"""The S3 object store (AWS, MinIO, Ceph: anything with versioning and Object Lock), via boto3.

Checksums, lock headers and moto's deviations from S3 are described in ``docs/storage.md`` ("S3
store"). botocore errors are translated here, at the edge, and never leave this module.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import boto3  # type: ignore[import-untyped, unused-ignore]
import botocore.config  # type: ignore[import-untyped, unused-ignore]
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

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
from storage.base import IncompleteUpload, ObjectInfo, Retention
from storage.rules import (
    refuse_if_locked,
    refuse_if_shortening,
    validate_key,
    validate_prefix,
    validate_retention,
)

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
MAX_PARTS = 10_000
READ_CHUNK_SIZE = 1 * MiB
# A store may round retain-until to whole seconds; closer than this counts as the date we asked for.
RETENTION_TOLERANCE = timedelta(seconds=1)

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PART_COUNT_SUFFIX = re.compile(r"-[0-9]+$")

_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchVersion", "NoSuchUpload", "NotFound", "404"}
_DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "403",
}
_UNAVAILABLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
}
# The server received bytes other than the ones whose MD5, checksum or signed SHA-256 the request
# carried: damaged in transit. An integrity failure, not an outage: the file stays on the device and
# the run reports it, rather than storing it again under new keys until the retries run out.
_DAMAGED_IN_TRANSIT_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}
# Server-side encryption whose ETag S3 says is not an MD5 of the bytes (SSE-KMS, dual-layer SSE-KMS;
# SSE-C, the third, shows as SSECustomerAlgorithm in an answer)
_NOT_MD5_ENCRYPTION = {"aws:kms", "aws:kms:dsse"}
_PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
_UNSUPPORTED_CODES = {"NotImplemented", "501", "MethodNotAllowed"}
# GetObjectRetention / GetObjectLegalHold on a version that never had a retention / a hold: S3's
# answer, and Ceph RGW 16's (a 404 that would otherwise read as a missing version)
_NO_LOCK_CODES = {"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"}
_LOCK_READS = ("GetObjectRetention", "GetObjectLegalHold")
_CONNECTION_ERRORS = (BotoConnectionError, HTTPClientError, ResponseStreamingError, IncompleteReadError)

_T = TypeVar("_T")

log = logging.getLogger(__name__)


class _DeleteMarker(NotFound):
    """The version asked for is a delete marker: absent to readers, but still removable."""


class _LockReadNotImplemented(Exception):
    """The server does not implement this lock read; never leaves this module."""


def default_client(concurrency: int = 8) -> Any:
    """An S3 client from boto3's default chain (``AWS_ENDPOINT_URL[_S3]``, ``AWS_PROFILE``, roles).

    Retries live here, in botocore's standard mode, and nowhere else: five attempts in all (botocore's
    ``max_attempts`` would count retries only, making six).
    """
    config = botocore.config.Config(
        retries={"mode": "standard", "total_max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=max(10, concurrency + 4),
    )
    return boto3.session.Session().client("s3", config=config)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_checksum(part_digests: list[bytes]) -> str:
    """S3's multipart SHA-256: base64 SHA-256 of the concatenated part digests (no ``-N`` suffix)."""
    return _b64(hashlib.sha256(b"".join(part_digests)).digest())


def normalise_checksum(reported: str | None) -> str | None:
    """AWS reports a multipart checksum as ``<base64>-<part count>``, moto without the suffix: drop it
    so ``ObjectInfo.checksum`` compares equal to ``expected_checksum`` on both."""
    if not reported:
        return None
    return _PART_COUNT_SUFFIX.sub("", reported)


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _http_status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _retention_from_head(response: dict[str, Any]) -> Retention | None:
    mode = response.get("ObjectLockMode")
    until = response.get("ObjectLockRetainUntilDate")
    if mode not in ("GOVERNANCE", "COMPLIANCE") or not isinstance(until, datetime):
        return None
    return Retention(mode=mode, retain_until=until.astimezone(UTC))


def _version_of(response: dict[str, Any]) -> str | None:
    version_id = response.get("VersionId")
    return None if version_id is None else str(version_id)


def _retains(stored: Retention | None, wanted: Retention) -> bool:
    return stored is not None and stored.retain_until >= wanted.retain_until - RETENTION_TOLERANCE


def _answered_at(answer: dict[str, Any]) -> datetime:
    """When the store answered a commit (its ``Date`` header): the closest an answer comes to the new
    version's LastModified, which only a HEAD or a listing reports."""
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if date:
        with suppress(TypeError, ValueError):
            return parsedate_to_datetime(str(date)).astimezone(UTC)
    return datetime.now(UTC)


def _not_implemented_if_object_served(response_dict: dict[str, Any], **_: Any) -> None:
    """A lock read answered with the object itself (an ETag, a body that is not XML) comes from a
    server that does not implement it: moto 5.2.5 serves GET ?retention with its GetObject handler.
    botocore would take that for a truncated answer (HTTP 500) and retry it; it is a NotImplemented,
    which ``S3Store._lock_read`` answers from a HEAD instead. S3's own answers, errors included, are
    XML and carry no ETag."""
    body = response_dict.get("body")
    headers = {str(name).lower() for name in response_dict.get("headers", {})}
    # A part of the object (the one byte asked for until the server has answered as S3 does) is the
    # object whatever that byte is: an object starting with "<" once passed for XML here (1 run in
    # 256 of random test data) and failed to parse.
    part_of_object = "content-range" in headers
    served_object = "etag" in headers
    if served_object and body and (part_of_object or not bytes(body).lstrip().startswith(b"<")):
        response_dict["status_code"] = 501


def _lock_parameters(retention: Retention | None) -> dict[str, Any]:
    if retention is None:
        return {}
    return {"ObjectLockMode": retention.mode, "ObjectLockRetainUntilDate": retention.retain_until}


@dataclass(frozen=True)
class SentDigests:
    """What an upload sent, as the server's account of what it stored must match it (docs/storage.md
    §3.5): the ETag S3 computes from MD5s, and the SHA-256 checksum where one was sent."""

    etag: str
    """Hex MD5 of the object (one put), or the hex MD5 of the parts' binary MD5s with ``-<parts>``."""
    checksum: str | None
    """Base64 SHA-256 of the object, or of the parts' SHA-256s (composite, no ``-N``); ``None`` where
    none was sent (a server that ignores checksums)."""
    parts: int | None
    """Number of parts of a multipart upload; ``None`` for one put."""
    size: int


@dataclass(frozen=True)
class _SentPart:
    number: int
    etag: str
    """The ETag the server answered, as CompleteMultipartUpload must name it."""
    md5: bytes
    checksum_name: str
    checksum: bytes


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _part_checksum(algorithm: str, data: bytes) -> bytes:
    if algorithm == "SHA256":
        return hashlib.sha256(data).digest()
    return zlib.crc32(data).to_bytes(4, "big")


class _PartBuffer:
    """What was written and not yet sent, as the chunks written: a part is joined from them once
    (a bytearray grown by ``+=`` and sliced copies every byte two or three times on the writer's
    thread, which is the one that also encrypts)."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes) -> None:
        if data:
            # bytes are immutable; anything else could change under us before it is sent
            self._chunks.append(data if type(data) is bytes else bytes(data))
            self._size += len(data)

    def take(self, size: int) -> bytes:
        """The first ``size`` bytes (at most what is held), removed from the buffer."""
        taken: list[bytes | memoryview] = []
        needed = size
        while self._chunks and needed > 0:
            chunk = self._chunks[0]
            if len(chunk) <= needed:
                taken.append(self._chunks.popleft())
                needed -= len(chunk)
            else:
                taken.append(memoryview(chunk)[:needed])
                self._chunks[0] = chunk[needed:]
                needed = 0
        self._size -= size - needed
        return taken[0] if len(taken) == 1 and type(taken[0]) is bytes else b"".join(taken)

    def take_all(self) -> bytes:
        return self.take(self._size)

    def peek(self) -> bytes:
        return b"".join(self._chunks)


class S3Upload:
    """One streaming write: a single ``put_object`` if it fits in one part, otherwise a multipart
    upload whose parts go up on a bounded thread pool. Every request carries its ``Content-MD5`` and
    a checksum (SHA-256, or CRC32 on a server shown to ignore checksums), computed by the thread that
    sends it (hashlib releases the GIL, so hashing overlaps with the caller's encryption).

    Memory stays near ``(concurrency + 1) * part_size``: ``write`` blocks while every slot is busy.
    """

    def __init__(
        self,
        store: S3Store,
        key: str,
        *,
        retention: Retention | None,
        content_type: str,
        if_absent: bool = False,
    ) -> None:
        self.key = key
        self._store = store
        self._object_key = store.object_key(key)
        self._retention = retention
        self._content_type = content_type
        self._if_absent = if_absent
        # Decided once per upload: the parts of one multipart upload all carry the same algorithm.
        self._algorithm = "CRC32" if store.keeps_checksums is False else "SHA256"
        self._size = 0
        self._buffer = _PartBuffer()
        self._part_futures: list[Future[_SentPart]] = []
        self._slots = threading.BoundedSemaphore(store.concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._sent: SentDigests | None = None
        self.upload_id: str | None = None
        self._state = "open"

    @property
    def checksum_is_sha256(self) -> bool:
        return False  # composite over parts, or CRC32, or none: the vault hashes the ciphertext itself

    @property
    def bytes_written(self) -> int:
        return self._size

    @property
    def expected_checksum(self) -> str | None:
        if self._algorithm != "SHA256" or self._store.keeps_checksums is False:
            return None  # the server keeps no checksum: a head reports none
        if self._sent is not None:
            return self._sent.checksum
        if self.upload_id is None:
            return _b64(hashlib.sha256(self._buffer.peek()).digest())
        pending = [hashlib.sha256(self._buffer.peek()).digest()] if self._buffer else []
        return composite_checksum([part.checksum for part in self._sent_parts()] + pending)

    def write(self, data: bytes) -> None:
        self._require_open()
        self._size += len(data)
        self._buffer.append(data)
        # Strictly more than a part: an object of exactly one part still goes up in a single put.
        while len(self._buffer) > self._store.part_size:
            self._send_part(self._buffer.take(self._store.part_size))

    def commit(self) -> ObjectInfo:
        self._require_open()
        try:
            if self.upload_id is not None:
                answer, self._sent = self._complete_multipart()
            else:
                answer, self._sent = self._put_whole_object()
            info = self._store.verify_commit(self.key, answer, self._sent, retention=self._retention)
        except BaseException:
            self._abort_quietly()
            raise
        self._state = "committed"
        self._shutdown_pool()
        return info

    def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        self._shutdown_pool()
        self._buffer = _PartBuffer()
        if self.upload_id is not None:
            with suppress(NotFound), self._store.translated("aborting the upload of", self.key):
                self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self._object_key, UploadId=self.upload_id
                )

    # -- internals ---------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._state != "open":
            raise StorageError(f"the upload of {self.key} is already {self._state}")

    def _abort_quietly(self) -> None:
        # Cleanup after a failure must not replace the error the caller needs to see.
        with suppress(EvidenceError):
            self.abort()

    def _shutdown_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _integrity_parameters(self, data: bytes) -> tuple[dict[str, Any], bytes, bytes]:
        """Content-MD5 (S3 and RGW refuse a body that does not match it: BadDigest) and the checksum:
        SHA-256 for a server that keeps it, else CRC32, the cheapest botocore accepts in a header
        (without one, botocore adds its own in an aws-chunked trailer, which RGW 16 refuses)."""
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        checksum = _part_checksum(self._algorithm, data)
        parameters = {
            "ContentMD5": _b64(md5),
            "ChecksumAlgorithm": self._algorithm,
            f"Checksum{self._algorithm}": _b64(checksum),
        }
        return parameters, md5, checksum

    def _put_whole_object(self) -> tuple[dict[str, Any], SentDigests]:
        body = self._buffer.take_all()
        if self._if_absent:
            self._refuse_if_present()
        integrity, md5, checksum = self._integrity_parameters(body)
        parameters: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": self._object_key,
            "Body": body,
            "ContentType": self._content_type,
            **integrity,
            **_lock_parameters(self._retention),
        }
        if self._if_absent:
            parameters["IfNoneMatch"] = "*"
        with self._store.translated("storing", self.key):
            response: dict[str, Any] = self._store.client.put_object(**parameters)
        self._store.learn_checksum_support(response, sent=self._algorithm == "SHA256")
        sent = SentDigests(
            etag=md5.hex(),
            checksum=_b64(checksum) if self._algorithm == "SHA256" else None,
            parts=None,
            size=len(body),
        )
        return response, sent

    def _refuse_if_present(self) -> None:
        # IfNoneMatch is the real guard (S3, MinIO); this check keeps the contract on stores that
        # ignore it and gives the clearer message. A HEAD, the cheapest request: create-once keys
        # (vault.json, items/, custody/, signers/) are readable to everyone who writes them.
        try:
            self._store.head(self.key)
        except NotFound:
            return
        raise AlreadyExists(f"{self.key} already exists in {self._store.url}; it is written only once")

    def _start_multipart(self) -> None:
        if self._if_absent:
            self._refuse_if_present()
        with self._store.translated("starting a multipart upload of", self.key):
            response = self._store.client.create_multipart_upload(
                Bucket=self._store.bucket,
                Key=self._object_key,
                ContentType=self._content_type,
                ChecksumAlgorithm=self._algorithm,
                **_lock_parameters(self._retention),
            )
        self.upload_id = str(response["UploadId"])
        self._pool = ThreadPoolExecutor(
            max_workers=self._store.concurrency, thread_name_prefix=f"s3-upload-{self.upload_id[:8]}"
        )

    def _send_part(self, part: bytes) -> None:
        if self.upload_id is None:
            self._start_multipart()
        if len(self._part_futures) >= MAX_PARTS:
            self._abort_quietly()
            raise StorageError(
                f"{self.key} needs more than {MAX_PARTS} parts of {self._store.part_size} bytes; "
                "raise EVIDENCE_PART_SIZE"
            )
        self._raise_failed_parts()
        part_number = len(self._part_futures) + 1
        self._slots.acquire()  # blocks while `concurrency` parts are in flight
        assert self._pool is not None
        try:
            future = self._pool.submit(self._upload_part, part_number, part)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _done: self._slots.release())
        self._part_futures.append(future)

    def _upload_part(self, part_number: int, part: bytes) -> _SentPart:
        """Runs on the pool: the part's digests are computed here, not by the writer."""
        integrity, md5, checksum = self._integrity_parameters(part)
        with self._store.translated(f"uploading part {part_number} of", self.key):
            response = self._store.client.upload_part(
                Bucket=self._store.bucket,
                Key=self._object_key,
                UploadId=self.upload_id,
                PartNumber=part_number,
                Body=part,
                **integrity,
            )
        sha256 = self._algorithm == "SHA256"
        self._store.learn_checksum_support(response, sent=sha256)
        self._store.check_answer(
            f"part {part_number} of {self.key}",
            response,
            SentDigests(
                etag=md5.hex(), checksum=_b64(checksum) if sha256 else None, parts=None, size=len(part)
            ),
        )
        return _SentPart(part_number, str(response["ETag"]), md5, f"Checksum{self._algorithm}", checksum)

    def _sent_parts(self) -> list[_SentPart]:
        with self._store.translated("uploading a part of", self.key):
            return [future.result() for future in self._part_futures]

    def _raise_failed_parts(self) -> None:
        for future in self._part_futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                try:
                    with self._store.translated("uploading a part of", self.key):
                        future.result()
                except BaseException:
                    self._abort_quietly()
                    raise

    def _complete_multipart(self) -> tuple[dict[str, Any], SentDigests]:
        if self._buffer:
            self._send_part(self._buffer.take_all())
        sent = self._sent_parts()
        parameters: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": self._object_key,
            "UploadId": self.upload_id,
            "MultipartUpload": {
                "Parts": [
                    {"PartNumber": part.number, "ETag": part.etag, part.checksum_name: _b64(part.checksum)}
                    for part in sent
                ]
            },
        }
        if self._if_absent:
            parameters["IfNoneMatch"] = "*"
        with self._store.translated("completing the upload of", self.key):
            response: dict[str, Any] = self._store.client.complete_multipart_upload(**parameters)
        digests = SentDigests(
            etag=f"{_md5_hex(b''.join(part.md5 for part in sent))}-{len(sent)}",
            checksum=(
                composite_checksum([part.checksum for part in sent]) if self._algorithm == "SHA256" else None
            ),
            parts=len(sent),
            size=self._size,
        )
        return response, digests


class S3Store:
    """Versioned, Object-Lock-enforcing object store in one bucket (URL ``s3://bucket/prefix``)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        part_size: int = 8 * MiB,
        concurrency: int = 8,
    ) -> None:
        if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
            raise ConfigError(
                f"{bucket!r} is not a valid S3 bucket name (3-63 characters of a-z 0-9 . -, "
                "starting and ending with a letter or digit)"
            )
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"part size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes")
        if concurrency < 1:
            raise ConfigError(f"upload concurrency must be at least 1, not {concurrency}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.concurrency = concurrency
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client if client is not None else default_client(concurrency)
        for operation in _LOCK_READS:
            self.client.meta.events.register_first(
                f"before-parse.s3.{operation}",
                _not_implemented_if_object_served,
                unique_id=f"evidence-pipeline-{operation}-not-implemented",
            )
        self._unsupported: set[str] = set()
        """Lock reads this server has shown it does not implement; answered from a HEAD from then on."""
        self._implemented: set[str] = set()
        """Lock reads this server has answered as S3 does."""
        self.client.meta.events.register(
            "before-sign.s3.GetObjectRetention",
            self._one_byte_until_implemented,
            unique_id=f"evidence-pipeline-GetObjectRetention-one-byte-{id(self)}",
        )
        self.keeps_checksums: bool | None = None
        """Whether this server keeps the SHA-256 checksums uploads carry (it answers with them), as its
        answers have shown; ``None`` until one has. A server that ignores them (Ceph RGW 16) is sent
        CRC32 instead, which costs less than SHA-256 and keeps botocore from adding its own."""

    # -- keys --------------------------------------------------------------------------------------

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _bucket_prefix(self, prefix: str) -> str:
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def _vault_key(self, bucket_key: str) -> str:
        return bucket_key[len(self.prefix) + 1 :] if self.prefix else bucket_key

    # -- error translation -------------------------------------------------------------------------

    @contextmanager
    def translated(self, action: str, subject: str) -> Iterator[None]:
        """Run boto calls and re-raise their failures as the project's errors (``raise ... from``)."""
        try:
            yield
        except ClientError as err:
            raise self._translate_client_error(err, action, subject) from err
        except _CONNECTION_ERRORS as err:
            raise StorageUnavailable(
                f"{action} {subject}: cannot reach {self._endpoint()} ({err}); "
                "check the network and AWS_ENDPOINT_URL, then retry"
            ) from err
        except FlexibleChecksumError as err:
            raise IntegrityError(
                f"{action} {subject}: the bytes received do not match the SHA-256 {self.url} stored "
                f"with them ({err}); the stored object or the transfer is damaged: retry once, and if "
                "it persists, treat the object as corrupt"
            ) from err
        except (NoCredentialsError, PartialCredentialsError) as err:
            raise AccessDenied(
                f"{action} {subject}: no usable S3 credentials ({err}); set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for this station"
            ) from err
        except BotoCoreError as err:
            raise StorageError(f"{action} {subject} in {self.url} failed: {err}") from err

    def _translate_client_error(self, err: ClientError, action: str, subject: str) -> EvidenceError:
        code = _error_code(err)
        status = _http_status(err)
        message = err.response.get("Error", {}).get("Message", "") or code
        if code == "NoSuchBucket":
            return ConfigError(
                f"{action} {subject}: bucket {self.bucket} does not exist at {self._endpoint()}: "
                "run `evidence vault init` (or check AWS_ENDPOINT_URL names the right server)"
            )
        if code in _NOT_FOUND_CODES or status == 404:
            return NotFound(f"{subject} does not exist in {self.url}")
        if code in _DENIED_CODES or status == 403:
            return AccessDenied(
                f"{action} {subject}: {self._endpoint()} refused the request ({code}: {message}); "
                "check the station's S3 credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID), their "
                f"permissions on bucket {self.bucket}, and that AWS_ENDPOINT_URL names the right server"
            )
        if code in _DAMAGED_IN_TRANSIT_CODES:
            return IntegrityError(
                f"{action} {subject}: integrity check failed: {self._endpoint()} received bytes other than "
                f"the ones sent ({code}: {message}), so they were damaged in transit and it stored nothing "
                "of this request; nothing refers to them. Retry, and if it recurs, look at what lies "
                "between this station and the store (a proxy, a faulty network card)"
            )
        if code in _PRECONDITION_CODES or status == 412:
            return AlreadyExists(f"{subject} already exists in {self.url}; it is written only once")
        if code in _UNAVAILABLE_CODES or status == 429 or status >= 500:
            return StorageUnavailable(
                f"{action} {subject}: {self._endpoint()} is not available ({code}: {message}); retry later"
            )
        return StorageError(f"{action} {subject}: {self.url} refused the request ({code}: {message})")

    def _endpoint(self) -> str:
        return str(getattr(self.client.meta, "endpoint_url", None) or "the S3 endpoint")

    def _call(self, action: str, subject: str, operation: Callable[..., _T], **parameters: Any) -> _T:
        with self.translated(action, subject):
            return operation(**parameters)

    # -- container ---------------------------------------------------------------------------------

    def check(self) -> list[str]:
        try:
            self._call("checking", f"bucket {self.bucket}", self.client.head_bucket, Bucket=self.bucket)
        except (ConfigError, NotFound):
            return [f"bucket {self.bucket} does not exist at {self._endpoint()}: run `evidence vault init`"]
        except EvidenceError as err:
            return [str(err)]
        problems: list[str] = []
        try:
            problems += self._versioning_problems()
            problems += self._object_lock_problems()
            problems += self._public_access_problems()
        except EvidenceError as err:
            problems.append(str(err))
        return problems

    def _versioning_problems(self) -> list[str]:
        response = self._call(
            "checking versioning of",
            f"bucket {self.bucket}",
            self.client.get_bucket_versioning,
            Bucket=self.bucket,
        )
        if response.get("Status") != "Enabled":
            return [f"versioning is not enabled on bucket {self.bucket}: run `evidence vault init`"]
        return []

    def _object_lock_problems(self) -> list[str]:
        try:
            response = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as err:
            if _error_code(err) == "ObjectLockConfigurationNotFoundError":
                return [f"Object Lock is not enabled on bucket {self.bucket}: run `evidence vault init`"]
            if _error_code(err) in _UNSUPPORTED_CODES:
                return []  # the server cannot say; nothing to report rather than a false alarm
            raise self._translate_client_error(
                err, "checking Object Lock of", f"bucket {self.bucket}"
            ) from err
        except BotoCoreError as err:
            with self.translated("checking Object Lock of", f"bucket {self.bucket}"):
                raise err
        enabled = response.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            return [f"Object Lock is not enabled on bucket {self.bucket}: run `evidence vault init`"]
        return []

    def _public_access_problems(self) -> list[str]:
        flags = self._public_access_block()
        if flags is None:
            return []  # the server has no public access block (NotImplemented): nothing to check
        off = [name for name in _PUBLIC_ACCESS_FLAGS if flags.get(name) is not True]
        if not off:
            return []
        if len(off) == len(_PUBLIC_ACCESS_FLAGS):
            return [f"public access is not blocked on bucket {self.bucket}: run `evidence vault init`"]
        if off == [_WRITE_BREAKING_FLAG]:
            recorded = self._recorded_exception()
            if recorded == _WRITE_BREAKING_FLAG:
                return []  # the documented exception (docs/storage.md §3.4), recorded by vault init
            return [
                f"public access is only partly blocked on bucket {self.bucket} (off: {_WRITE_BREAKING_FLAG}) "
                f"and no record says this server refuses writes with it on (bucket tag {PUBLIC_ACCESS_TAG}): "
                "run `evidence vault init`, which turns it on or records why it cannot"
            ]
        return [
            f"public access is only partly blocked on bucket {self.bucket} (off: {', '.join(off)}): "
            "run `evidence vault init`"
        ]

    def _public_access_block(self) -> dict[str, Any] | None:
        """The bucket's public access block flags (all false when none is set: RGW answers so, AWS
        with NoSuchPublicAccessBlockConfiguration); ``None`` when the server has no such thing (it
        answers NotImplemented)."""
        subject = f"bucket {self.bucket}"
        try:
            response = self.client.get_public_access_block(Bucket=self.bucket)
        except ClientError as err:
            if _error_code(err) == "NoSuchPublicAccessBlockConfiguration":
                return dict.fromkeys(_PUBLIC_ACCESS_FLAGS, False)
            if _error_code(err) in _UNSUPPORTED_CODES:
                return None
            raise self._translate_client_error(err, "checking the public access block of", subject) from err
        except BotoCoreError as err:
            with self.translated("checking the public access block of", subject):
                raise err
        return dict(response.get("PublicAccessBlockConfiguration", {}))

    def _recorded_exception(self) -> str | None:
        """The flag vault init recorded it had to leave off (bucket tag ``PUBLIC_ACCESS_TAG``), if any."""
        return self._bucket_tags().get(PUBLIC_ACCESS_TAG)

    def _bucket_tags(self) -> dict[str, str]:
        subject = f"bucket {self.bucket}"
        try:
            response = self.client.get_bucket_tagging(Bucket=self.bucket)
        except ClientError as err:
            if _error_code(err) in {"NoSuchTagSet", "NoSuchTagSetError"} | _UNSUPPORTED_CODES:
                return {}
            raise self._translate_client_error(err, "reading the tags of", subject) from err
        except BotoCoreError as err:
            with self.translated("reading the tags of", subject):
                raise err
        return {str(tag["Key"]): str(tag["Value"]) for tag in response.get("TagSet", [])}

    def initialise(self) -> list[str]:
        subject = f"bucket {self.bucket}"
        try:
            self._call("checking", subject, self.client.head_bucket, Bucket=self.bucket)
        except (ConfigError, NotFound):
            self._create_bucket()
        self._call(
            "enabling versioning on",
            subject,
            self.client.put_bucket_versioning,
            Bucket=self.bucket,
            VersioningConfiguration={"Status": "Enabled"},
        )
        if self._object_lock_problems():
            # S3 allows turning Object Lock on for an existing versioned bucket; without a default
            # rule, so nothing already stored changes.
            self._call(
                "enabling Object Lock on",
                subject,
                self.client.put_object_lock_configuration,
                Bucket=self.bucket,
                ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"},
            )
        return self._block_public_access()

    def _block_public_access(self) -> list[str]:
        """Block public access as far as the server lets the vault still be written (docs/storage.md
        §3.4). A server's public access block is probed, not assumed: Ceph RGW 16 refuses every
        PutObject while BlockPublicAcls is on (a private ACL too), so a block that set-up cannot test
        would let `vault init` succeed and every ingest fail. Returns what an admin should be told."""
        full = dict.fromkeys(_PUBLIC_ACCESS_FLAGS, True)
        before = self._public_access_block()
        if not self._put_public_access_block(full):
            refused = self._write_refused()
            if refused is not None:
                raise refused
            return [
                f"{self._endpoint()} has no public access block (it answered NotImplemented): the bucket "
                "is private only as long as no bucket policy or ACL makes it public; `vault check` "
                "cannot see those there"
            ]
        if self._write_refused() is None:
            if before == full | {_WRITE_BREAKING_FLAG: False}:
                self._record_exception(None)  # a server that no longer needs it (an upgrade) loses it
            return []
        # Only BlockPublicAcls may give way. It refuses requests that would set a public ACL;
        # IgnorePublicAcls, kept on, makes every public ACL, already set or set anyway, grant nothing,
        # so the bucket stays as private. The other two flags guard against public bucket policies,
        # which nothing else would stop: they never give way.
        relaxed = full | {_WRITE_BREAKING_FLAG: False}
        self._put_public_access_block(relaxed)
        try:
            refused = self._write_refused()
        except EvidenceError:
            self._put_public_access_block(full)  # failed for another reason: leave it as blocked as asked
            raise
        if refused is None:
            self._record_exception(_WRITE_BREAKING_FLAG)
            return [
                f"{self._endpoint()} refuses every write to bucket {self.bucket} while "
                f"{_WRITE_BREAKING_FLAG} is on, so it is left off; IgnorePublicAcls, BlockPublicPolicy "
                "and RestrictPublicBuckets are on. With IgnorePublicAcls on, an ACL that would make an "
                "object or the bucket public has no effect, so the vault is as private as with all "
                f"four. Recorded as bucket tag {PUBLIC_ACCESS_TAG}={_WRITE_BREAKING_FLAG}, which "
                "`vault check` accepts; run `vault init` again after a server upgrade to try all four"
            ]
        # Not even then. Is the block the cause at all? Ask once without it, then block fully again:
        # the bucket is unusable either way, so the safest state is the one to leave it in.
        self._put_public_access_block(dict.fromkeys(_PUBLIC_ACCESS_FLAGS, False))
        try:
            unblocked = self._write_refused()
        finally:
            self._put_public_access_block(full)
        if unblocked is None:
            raise ConfigError(
                f"{self._endpoint()} refuses writes to bucket {self.bucket} under its public access "
                f"block, even with only {', '.join(_PUBLIC_ACCESS_FLAGS[1:])} on, and takes them with "
                "no block at all: no setting both keeps the vault private and lets it be written. The "
                "block is left fully on. Use a server whose public access block allows private writes "
                "(docs/storage.md §3.4), or block public access in the server's own configuration"
            )
        raise AccessDenied(
            f"{self._endpoint()} refuses a write to bucket {self.bucket} with or without a public access "
            f"block ({unblocked}): these credentials may not write there. `vault init` writes and removes "
            f"a probe object under {self.object_key(PROBE_PREFIX)}; the storage admin needs "
            "s3:PutObject, s3:PutObjectRetention and s3:DeleteObjectVersion on it (docs/deployment.md)"
        )

    def _put_public_access_block(self, flags: dict[str, bool]) -> bool:
        """Set the block; False if the server has none (it answers NotImplemented)."""
        subject = f"bucket {self.bucket}"
        try:
            self.client.put_public_access_block(Bucket=self.bucket, PublicAccessBlockConfiguration=flags)
        except ClientError as err:
            if _error_code(err) in _UNSUPPORTED_CODES:
                return False
            raise self._translate_client_error(err, "blocking public access to", subject) from err
        except BotoCoreError as err:
            with self.translated("blocking public access to", subject):
                raise err
        return True

    def _record_exception(self, flag: str | None) -> None:
        """Keep (``flag``) or drop (``None``) the bucket tag that tells `vault check` why a flag is off.
        Other tags on the bucket are kept: a put of tags replaces them all."""
        subject = f"bucket {self.bucket}"
        tags = self._bucket_tags()
        if tags.get(PUBLIC_ACCESS_TAG) == flag:
            return
        tags.pop(PUBLIC_ACCESS_TAG, None)
        if flag is not None:
            tags[PUBLIC_ACCESS_TAG] = flag
        if tags:
            self._call(
                "tagging",
                subject,
                self.client.put_bucket_tagging,
                Bucket=self.bucket,
                Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]},
            )
        else:
            self._call("removing the tags of", subject, self.client.delete_bucket_tagging, Bucket=self.bucket)

    def _write_refused(self) -> AccessDenied | None:
        """Whether the bucket as configured now takes a write from these credentials: a small probe
        object under ``PROBE_PREFIX`` in the vault's prefix, whose version is then deleted by its id
        (so no delete marker is left: nothing remains). ``None`` if it was taken, else the refusal.

        A bucket whose default retention would lock the probe for days gets it with an explicit lock
        of a few seconds instead, and the version is deleted once that has passed: the storage admin
        may not bypass a lock (docs/deployment.md), and must not leave a probe locked in the vault."""
        key = self.object_key(f"{PROBE_PREFIX}{secrets.token_hex(8)}")
        body = b"evidence-pipeline vault init: write probe; removed at once\n"
        lock = self._probe_lock()
        parameters: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": "text/plain",
            # Integrity headers stated, as for every upload: Object Lock wants one, and botocore's own
            # default (a CRC32 trailer) is refused by RGW over HTTPS (MissingContentLength)
            "ContentMD5": _b64(hashlib.md5(body).digest()),  # noqa: S324 (integrity, not security)
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": _b64(hashlib.sha256(body).digest()),
            **_lock_parameters(lock),
        }
        try:
            answer = self._call("writing a probe object to", key, self.client.put_object, **parameters)
        except AccessDenied as err:
            return err
        versions = [str(answer["VersionId"])] if answer.get("VersionId") else self._probe_versions(key)
        if lock is not None:
            time.sleep(max(0.0, (lock.retain_until - datetime.now(UTC)).total_seconds()) + 1)
        for version_id in versions:
            self._call(
                "removing the probe object",
                f"{key} (version {version_id})",
                self.client.delete_object,
                Bucket=self.bucket,
                Key=key,
                VersionId=version_id,
            )
        return None

    def _probe_lock(self) -> Retention | None:
        """A lock of a few seconds for the probe where the bucket has a default retention rule."""
        try:
            response = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except (ClientError, BotoCoreError):
            return None  # no lock configuration (or none readable): no default rule either
        rule = response.get("ObjectLockConfiguration", {}).get("Rule", {}).get("DefaultRetention")
        if not rule:
            return None
        return Retention("GOVERNANCE", datetime.now(UTC) + timedelta(seconds=2))

    def _probe_versions(self, key: str) -> list[str]:
        """Every version and delete marker of the probe key, for an answer that named no version."""
        response = self._call(
            "listing the probe object", key, self.client.list_object_versions, Bucket=self.bucket, Prefix=key
        )
        entries = response.get("Versions", []) + response.get("DeleteMarkers", [])
        return [str(entry["VersionId"]) for entry in entries if entry.get("Key") == key]

    def _create_bucket(self) -> None:
        region = self.client.meta.region_name or "us-east-1"
        parameters: dict[str, Any] = {"Bucket": self.bucket, "ObjectLockEnabledForBucket": True}
        if region != "us-east-1":
            parameters["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**parameters)
        except ClientError as err:
            if _error_code(err) == "BucketAlreadyOwnedByYou":
                return  # created by a concurrent initialise: fine
            if _error_code(err) == "BucketAlreadyExists":
                raise ConfigError(
                    f"bucket name {self.bucket} is taken by another account; choose another vault URL"
                ) from err
            raise self._translate_client_error(err, "creating", f"bucket {self.bucket}") from err
        except BotoCoreError as err:
            with self.translated("creating", f"bucket {self.bucket}"):
                raise err

    # -- writing -----------------------------------------------------------------------------------

    def begin_upload(
        self, key: str, *, retention: Retention | None, content_type: str = "application/octet-stream"
    ) -> S3Upload:
        validate_key(key)
        validate_retention(retention)
        return S3Upload(self, key, retention=retention, content_type=content_type)

    def put_bytes(
        self, key: str, data: bytes, *, retention: Retention | None, if_absent: bool = False
    ) -> ObjectInfo:
        validate_key(key)
        validate_retention(retention)
        upload = S3Upload(
            self, key, retention=retention, content_type="application/octet-stream", if_absent=if_absent
        )
        upload.write(data)
        info = upload.commit()
        if if_absent:
            self._confirm_first(key, info.version_id)
        return info

    def _confirm_first(self, key: str, version_id: str) -> None:
        """After a create-once write: was it first? If-None-Match makes a second write fail on S3 and
        MinIO, but Ceph RGW ignores it, and two writers that both found the key absent both create a
        version. The first version is the record (docs/storage.md, "Create-once without
        If-None-Match"), so a write whose version is not first lost, whatever the server said: it
        is an ``AlreadyExists``, as on a server that refused it. Its version stays (it may be locked),
        after the record, where readers of create-once keys never look."""
        first = self.first_version(key)
        if first != version_id:
            raise AlreadyExists(
                f"{key} already exists in {self.url}; it is written only once (another writer's version "
                f"{first} came first; this write's version {version_id} stays after it, unread, because "
                f"{self._endpoint()} did not refuse it: it ignores If-None-Match)"
            )

    def verify_commit(
        self, key: str, answer: dict[str, Any], sent: SentDigests, *, retention: Retention | None
    ) -> ObjectInfo:
        """The version a commit created, checked against what was sent, from the server's own account
        of what it stored, strongest first (docs/storage.md §3.5), and with the lock asked for.

        1. The answer's ``ChecksumSHA256`` (S3: of a put, and ``<composite>-<parts>`` of a completed
           multipart upload) must equal the one computed from the bytes sent;
        2. and its ETag, wherever it is an MD5 (not under SSE-KMS or SSE-C), must equal the MD5 of
           the bytes sent (one put) or the MD5 of the parts' MD5s with ``-<parts>``. Both are
           compared when both are given: moto echoes the checksum a request carried without
           computing it, and only the ETag shows what it stored.
        3. An answer with neither (Ceph RGW 16 completes a multipart upload with an empty ETag) is
           completed by the version's entry in a listing of the key's versions (ListObjectVersions:
           s3:ListBucketVersions, no access to the object): its ETag and size.
        4. No account at all fails the commit with ``IntegrityError``: nothing shows the stored bytes
           are the ones sent.

        The object itself is never read (an ingest station may not, docs/deployment.md §4.2). The
        lock is read back with GetObjectRetention; one the store dropped (moto ignores lock headers
        on CreateMultipartUpload) is applied with PutObjectRetention and read back again, and a store
        that still does not keep it is an ``IntegrityError``. A mismatch leaves the new version as it
        is (locked, and referenced by nothing).
        """
        version = _version_of(answer) or "null"
        subject = f"{key} (version {version})"
        last_modified = _answered_at(answer)
        if not self.check_answer(subject, answer, sent):
            listed = self._listed_version(key, version)
            if listed is None:
                raise IntegrityError(
                    f"integrity not proven: {subject}: {self.url} gave no checksum or ETag in its answer "
                    "to the upload, and the version it named is not in its listing of that key"
                )
            if not listed.get("ETag") or not self._etag_is_md5(answer):
                raise IntegrityError(
                    f"integrity not proven: {subject}: {self.url} gave no account of the bytes it stored "
                    "(no checksum or MD5 ETag in its answer to the upload, nor in its version listing); "
                    "nothing shows the stored object is what was sent"
                )
            self._check_etag(subject, "its version listing", listed["ETag"], sent)
            if int(listed.get("Size", -1)) != sent.size:
                raise IntegrityError(
                    f"integrity check failed: {subject}: {self.url} lists {listed.get('Size')} bytes for "
                    f"what it stored, but {sent.size} were sent; the stored object is not what was sent"
                )
            last_modified = listed["LastModified"].astimezone(UTC)
        stored = None
        if retention is not None:
            stored = self._ensure_retention(key, version, retention, self.get_retention(key, version))
        # The bytes stored are the bytes sent, so their size is known. A version just created carries
        # no legal hold (none is ever sent), and no lock but the one asked for (a bucket's default
        # retention, if any, shows on a head).
        return ObjectInfo(
            key=key,
            version_id=version,
            size=sent.size,
            checksum=normalise_checksum(answer.get("ChecksumSHA256")),
            retention=stored,
            legal_hold=False,
            last_modified=last_modified,
        )

    def learn_checksum_support(self, answer: dict[str, Any], *, sent: bool) -> None:
        """Note from an answer to a put or a part that carried a SHA-256 checksum whether the server
        keeps it (it answers with it) or ignores it."""
        if sent:
            keeps = bool(answer.get("ChecksumSHA256"))
            if self.keeps_checksums is None and not keeps:
                log.info(
                    "%s keeps no SHA-256 checksum of what it stores; uploads are verified by Content-MD5 "
                    "and ETag, and carry CRC32 from now on",
                    self.url,
                )
            self.keeps_checksums = keeps

    def check_answer(self, subject: str, answer: dict[str, Any], sent: SentDigests) -> list[str]:
        """Compare what an answer to a put, a part or a completed upload says was stored with what was
        sent; ``IntegrityError`` on any difference. Returns the evidence it found (empty: none)."""
        evidence: list[str] = []
        reported = answer.get("ChecksumSHA256")
        if reported and sent.checksum is not None:
            self._check_checksum(subject, str(reported), sent)
            evidence.append("ChecksumSHA256")
        if answer.get("ETag") and self._etag_is_md5(answer):
            self._check_etag(subject, "its answer", answer["ETag"], sent)
            evidence.append("ETag")
        return evidence

    @staticmethod
    def _etag_is_md5(answer: dict[str, Any]) -> bool:
        return answer.get("ServerSideEncryption") not in _NOT_MD5_ENCRYPTION and not answer.get(
            "SSECustomerAlgorithm"
        )

    def _check_etag(self, subject: str, where: str, reported: Any, sent: SentDigests) -> None:
        value = str(reported or "").strip().strip('"').lower()
        if value != sent.etag:
            raise IntegrityError(
                f"integrity check failed: {subject}: {self.url} reports ETag {reported!r} in {where} for "
                f"what it stored, but the MD5 of the bytes sent gives {sent.etag}; the stored object is "
                "not what was sent (damaged in transit, or a false answer)"
            )

    def _check_checksum(self, subject: str, reported: str, sent: SentDigests) -> None:
        value, _, count = reported.partition("-")
        if value != sent.checksum or (sent.parts is not None and count and count != str(sent.parts)):
            expected = f"{sent.checksum}-{sent.parts}" if sent.parts is not None else sent.checksum
            raise IntegrityError(
                f"integrity check failed: {subject}: {self.url} reports checksum {reported} for what it "
                f"stored, but the bytes sent have {expected}; the stored object is not what was sent "
                "(damaged in transit, or a false answer)"
            )

    def _listed_version(self, key: str, version_id: str) -> dict[str, Any] | None:
        """The entry of one version in a listing of its key's versions (Prefix = the key): the key
        sorts before every other key it prefixes, its newest version first."""
        object_key = self.object_key(key)
        paginator = self.client.get_paginator("list_object_versions")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=object_key)
        try:
            for page in self._pages(pages, f"the versions of {key}"):
                for entry in page.get("Versions", []):
                    if entry.get("Key") == object_key and str(entry.get("VersionId")) == version_id:
                        return dict(entry)
                    if str(entry.get("Key")) > object_key:
                        return None
        except AccessDenied as err:
            raise AccessDenied(
                f"{err}. {self.url} gave no ETag in its answer to the upload of {key}, so its version "
                "listing is what shows what it stored, and that needs s3:ListBucketVersions on the key "
                "(docs/deployment.md §4.1)"
            ) from err
        return None

    def _ensure_retention(
        self, key: str, version_id: str, wanted: Retention, stored: Retention | None
    ) -> Retention:
        """Apply ``wanted`` to the version if the store dropped it (or kept less), and read it back.

        Real S3 honours lock headers on create_multipart_upload; moto ignores them, and a store that
        silently stored evidence without its lock must not be trusted: this makes the lock explicit.
        """
        if _retains(stored, wanted):
            assert stored is not None
            return stored
        self._call(
            "applying retention to",
            f"{key} (version {version_id})",
            self.client.put_object_retention,
            Bucket=self.bucket,
            Key=self.object_key(key),
            VersionId=version_id,
            Retention={"Mode": wanted.mode, "RetainUntilDate": wanted.retain_until},
        )
        stored = self.get_retention(key, version_id)
        if not _retains(stored, wanted):
            raise IntegrityError(
                f"{key} (version {version_id}): {self.url} did not keep the retention asked for "
                f"({wanted.mode} until {wanted.retain_until.isoformat()}; it reports "
                f"{'none' if stored is None else stored.mode + ' until ' + stored.retain_until.isoformat()})"
            )
        assert stored is not None
        return stored

    # -- reading -----------------------------------------------------------------------------------

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        validate_key(key)
        return self._info_from_head(key, self._head_response(key, version_id))

    def _head_response(self, key: str, version_id: str | None) -> dict[str, Any]:
        parameters: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.object_key(key),
            "ChecksumMode": "ENABLED",
        }
        subject = key
        if version_id is not None:
            parameters["VersionId"] = version_id
            subject = f"{key} (version {version_id})"
        try:
            response: dict[str, Any] = self.client.head_object(**parameters)
        except ClientError as err:
            headers = err.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            if headers.get("x-amz-delete-marker") == "true" or (
                version_id is not None
                and _http_status(err) == 404
                and self._is_delete_marker(key, version_id)
            ):
                raise _DeleteMarker(f"{subject} was deleted (a delete marker) in {self.url}") from err
            raise self._translate_client_error(err, "reading", subject) from err
        except BotoCoreError as err:
            with self.translated("reading", subject):
                raise err
        return response

    def _is_delete_marker(self, key: str, version_id: str) -> bool:
        """Whether the version is a delete marker, from the key's version listing: Ceph RGW 16 answers a
        HEAD of one with a bare 404, without S3's ``x-amz-delete-marker``, so a marker could not be
        told from a version that does not exist (and could not be removed). False when the listing
        cannot be read."""
        object_key = self.object_key(key)
        paginator = self.client.get_paginator("list_object_versions")
        try:
            for page in self._pages(paginator.paginate(Bucket=self.bucket, Prefix=object_key), key):
                for marker in page.get("DeleteMarkers", []):
                    if marker.get("Key") == object_key and marker.get("VersionId") == version_id:
                        return True
        except EvidenceError:
            return False
        return False

    def _info_from_head(self, key: str, response: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            version_id=str(response.get("VersionId") or "null"),
            size=int(response.get("ContentLength", 0)),
            checksum=normalise_checksum(response.get("ChecksumSHA256")),
            retention=_retention_from_head(response),
            legal_hold=response.get("ObjectLockLegalHoldStatus") == "ON",
            last_modified=response["LastModified"].astimezone(UTC),
        )

    def first_version(self, key: str) -> str:
        # ListObjectVersions lists a key's versions newest first; the last one listed is the first
        # written. The server's order, not LastModified: two versions can share a timestamp.
        validate_key(key)
        object_key = self.object_key(key)
        paginator = self.client.get_paginator("list_object_versions")
        first: str | None = None
        for page in self._pages(paginator.paginate(Bucket=self.bucket, Prefix=object_key), key):
            versions = [entry for entry in page.get("Versions", []) if entry.get("Key") == object_key]
            if versions:
                first = str(versions[-1]["VersionId"])
            listed = page.get("Versions", []) + page.get("DeleteMarkers", [])
            if any(entry.get("Key") != object_key for entry in listed):
                break  # keys that the key prefixes sort after it: all of its versions are listed
        if first is None:
            raise NotFound(f"{key} does not exist in {self.url}")
        return first

    def exists(self, key: str) -> bool:
        # A listing, not a HEAD: it needs only s3:ListBucket, so a writer that may not read the key
        # (an ingest station under objects/, recovering an interrupted upload) can still ask. The key
        # itself sorts first among the keys it prefixes; a current delete marker is not listed.
        validate_key(key)
        object_key = self.object_key(key)
        response = self._call(
            "looking for",
            key,
            self.client.list_objects_v2,
            Bucket=self.bucket,
            Prefix=object_key,
            MaxKeys=1,
        )
        return any(entry.get("Key") == object_key for entry in response.get("Contents", []))

    def get(
        self, key: str, *, version_id: str | None = None, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        validate_key(key)
        if start < 0 or (end is not None and end < start):
            raise InvalidInput(f"byte range [{start}, {end}) of {key} is not a valid range")
        subject = key if version_id is None else f"{key} (version {version_id})"
        if end is not None and end == start:
            self.head(key, version_id=version_id)  # an empty range of a missing object is still missing
            return iter(())
        parameters: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if version_id is not None:
            parameters["VersionId"] = version_id
        if start > 0 or end is not None:
            parameters["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        else:
            # Whole object: botocore then checks the body against the stored SHA-256 as it streams.
            parameters["ChecksumMode"] = "ENABLED"
        try:
            response = self.client.get_object(**parameters)
        except ClientError as err:
            if _error_code(err) == "InvalidRange":
                return iter(())  # the range starts at or past the end: nothing, as slicing gives
            raise self._translate_client_error(err, "reading", subject) from err
        except BotoCoreError as err:
            with self.translated("reading", subject):
                raise err
        return self._stream(response["Body"], subject)

    def _stream(self, body: Any, subject: str) -> Iterator[bytes]:
        try:
            with self.translated("reading", subject):
                yield from body.iter_chunks(READ_CHUNK_SIZE)
        finally:
            body.close()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._bucket_prefix(prefix))
        for page in self._pages(pages, prefix):
            for entry in page.get("Contents", []):
                try:
                    # Listings carry no retention or checksum; head gives the whole truth.
                    yield self.head(self._vault_key(entry["Key"]))
                except NotFound:
                    continue
                except InvalidInput:
                    continue  # not written by this project (the key breaks our rules): not ours

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_object_versions")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._bucket_prefix(prefix))
        for page in self._pages(pages, prefix):
            entries = [(entry, False) for entry in page.get("Versions", [])]
            entries += [(entry, True) for entry in page.get("DeleteMarkers", [])]
            # S3 returns versions and delete markers as two lists; merge them into key order,
            # newest first within a key, as one history.
            entries.sort(key=lambda pair: pair[0]["LastModified"], reverse=True)
            entries.sort(key=lambda pair: str(pair[0]["Key"]))
            for entry, is_delete_marker in entries:
                key = self._vault_key(entry["Key"])
                if is_delete_marker:
                    yield ObjectInfo(
                        key=key,
                        version_id=str(entry["VersionId"]),
                        size=0,
                        checksum=None,
                        retention=None,
                        legal_hold=False,
                        last_modified=entry["LastModified"].astimezone(UTC),
                        is_delete_marker=True,
                    )
                    continue
                try:
                    yield self.head(key, version_id=str(entry["VersionId"]))
                except (NotFound, InvalidInput):
                    continue

    def _pages(self, pages: Any, prefix: str) -> Iterator[dict[str, Any]]:
        iterator = iter(pages)
        while True:
            with self.translated("listing", f"{prefix or '(everything)'}"):
                page = next(iterator, None)
            if page is None:
                return
            yield page

    # -- retention ---------------------------------------------------------------------------------

    def delete_version(self, key: str, version_id: str, *, bypass_governance: bool = False) -> None:
        validate_key(key)
        subject = f"{key} (version {version_id})"
        try:
            info: ObjectInfo | None = self.head(key, version_id=version_id)
        except _DeleteMarker:
            info = None  # removing a delete marker: no retention applies to it
        parameters: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.object_key(key),
            "VersionId": version_id,
        }
        if info is not None:
            # The store enforces the lock; checking first too means a store that forgot it (a bucket
            # without Object Lock) still cannot lose locked evidence through us.
            refuse_if_locked(
                key, version_id, info.retention, info.legal_hold, bypass_governance=bypass_governance
            )
            if bypass_governance and info.retention is not None:
                parameters["BypassGovernanceRetention"] = True
        try:
            self._call("deleting", subject, self.client.delete_object, **parameters)
        except AccessDenied as err:
            if info is not None and (info.retention is not None or info.legal_hold):
                raise LockedError(
                    f"{subject} is protected by Object Lock and {self.url} refused to delete it "
                    f"({err}); a governance bypass needs the s3:BypassGovernanceRetention permission"
                ) from err
            raise

    def extend_retention(self, key: str, version_id: str, retention: Retention) -> None:
        validate_key(key)
        validate_retention(retention)
        subject = f"{key} (version {version_id})"
        info = self.head(key, version_id=version_id)
        # S3 refuses to shorten without a bypass; moto does not, so the rule is also enforced here.
        refuse_if_shortening(key, version_id, info.retention, retention)
        try:
            self._call(
                "extending retention of",
                subject,
                self.client.put_object_retention,
                Bucket=self.bucket,
                Key=self.object_key(key),
                VersionId=version_id,
                Retention={"Mode": retention.mode, "RetainUntilDate": retention.retain_until},
            )
        except AccessDenied as err:
            if info.retention is not None:
                raise LockedError(
                    f"{subject} is retained until {info.retention.retain_until.isoformat()} and "
                    f"{self.url} refused to change that: {err}"
                ) from err
            raise

    def get_retention(self, key: str, version_id: str) -> Retention | None:
        validate_key(key)
        try:
            response = self._lock_read("GetObjectRetention", key, version_id)
        except _LockReadNotImplemented:
            return self.head(key, version_id=version_id).retention
        if response is None:
            return None
        retention = response.get("Retention", {})
        return _retention_from_head(
            {
                "ObjectLockMode": retention.get("Mode"),
                "ObjectLockRetainUntilDate": retention.get("RetainUntilDate"),
            }
        )

    def get_legal_hold(self, key: str, version_id: str) -> bool:
        validate_key(key)
        try:
            response = self._lock_read("GetObjectLegalHold", key, version_id)
        except _LockReadNotImplemented:
            return self.head(key, version_id=version_id).legal_hold
        return response is not None and response.get("LegalHold", {}).get("Status") == "ON"

    def _lock_read(self, operation: str, key: str, version_id: str) -> dict[str, Any] | None:
        """GetObjectRetention or GetObjectLegalHold of one version: a permission of its own, with no
        access to the object. ``None`` when the version has no such lock. ``_LockReadNotImplemented``
        when the server does not implement the call (moto 5.2.5 has no GetObjectRetention): the caller
        then reads the lock with a HEAD, which needs s3:GetObject."""
        if operation in self._unsupported:
            raise _LockReadNotImplemented(operation)
        subject = f"{key} (version {version_id})"
        call = (
            self.client.get_object_retention
            if operation == "GetObjectRetention"
            else self.client.get_object_legal_hold
        )
        try:
            response: dict[str, Any] = call(
                Bucket=self.bucket, Key=self.object_key(key), VersionId=version_id
            )
        except ClientError as err:
            headers = err.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            if headers.get("x-amz-delete-marker") == "true":
                raise _DeleteMarker(f"{subject} was deleted (a delete marker) in {self.url}") from err
            code = _error_code(err)
            if code in _NO_LOCK_CODES:
                self._implemented.add(operation)
                return None
            # a byte range refused: only a server serving the object (an empty one) honours it
            probing_served_object = code == "InvalidRange" and operation not in self._implemented
            if code in _UNSUPPORTED_CODES or probing_served_object:
                log.warning(
                    "%s does not implement %s; locks are read with HeadObject, which needs s3:GetObject",
                    self.url,
                    operation,
                )
                self._unsupported.add(operation)
                raise _LockReadNotImplemented(operation) from err
            raise self._translate_client_error(err, "reading the lock of", subject) from err
        except BotoCoreError as err:
            with self.translated("reading the lock of", subject):
                raise err
        self._implemented.add(operation)
        return response

    def _one_byte_until_implemented(self, request: Any, **_: Any) -> None:
        """Until the server has answered GetObjectRetention as S3 does, ask for one byte (``Range:
        bytes=0-0``). Ceph RGW answers it with its XML whatever the range (tested), as S3 is taken to
        (a range applies to an object's bytes, and this request asks for none). A server that serves
        the object instead (moto 5.2.5) then sends one byte of it, not the whole object, which
        botocore would read into memory: a 1 GiB upload's first lock read once peaked at 7 GiB.
        GetObjectLegalHold needs no such care: moto implements it (and would cut its XML short)."""
        if "GetObjectRetention" not in self._implemented | self._unsupported:
            request.headers["Range"] = "bytes=0-0"

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None:
        validate_key(key)
        # Head first: a clear NotFound for a missing version (moto 5.2.5 answers HTTP 500 instead).
        self.head(key, version_id=version_id)
        self._call(
            "setting the legal hold on",
            f"{key} (version {version_id})",
            self.client.put_object_legal_hold,
            Bucket=self.bucket,
            Key=self.object_key(key),
            VersionId=version_id,
            LegalHold={"Status": "ON" if on else "OFF"},
        )

    # -- incomplete uploads ------------------------------------------------------------------------

    def list_incomplete_uploads(self, prefix: str) -> Iterator[IncompleteUpload]:
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_multipart_uploads")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._bucket_prefix(prefix))
        for page in self._pages(pages, prefix):
            for entry in page.get("Uploads", []):
                yield IncompleteUpload(
                    key=self._vault_key(entry["Key"]),
                    upload_id=str(entry["UploadId"]),
                    initiated=entry["Initiated"].astimezone(UTC),
                )

    def abort_incomplete_upload(self, upload: IncompleteUpload) -> None:
        validate_key(upload.key)
        self._call(
            "aborting the incomplete upload of",
            upload.key,
            self.client.abort_multipart_upload,
            Bucket=self.bucket,
            Key=self.object_key(upload.key),
            UploadId=upload.upload_id,
        )


_PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
_WRITE_BREAKING_FLAG = "BlockPublicAcls"
"""The one flag a vault may do without, and only on a server that refuses writes with it on."""
PUBLIC_ACCESS_TAG = "evidence-pipeline/public-access-exception"
"""Bucket tag vault init leaves when a flag had to stay off; its value names the flag."""
PROBE_PREFIX = "init-probe/"
"""Where vault init writes (and at once removes) its probe object, under the vault's prefix."""
