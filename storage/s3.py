"""The S3 object store (AWS, MinIO, Ceph: anything with versioning and Object Lock), via boto3.

Checksums, lock headers and moto's deviations from S3 are described in ``docs/storage.md`` ("S3
store"). botocore errors are translated here, at the edge, and never leave this module.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import replace
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
    # The server computed a different checksum than we sent: the bytes were damaged on the way and
    # sending them again is the fix.
    "BadDigest",
    "XAmzContentSHA256Mismatch",
}
_PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
_UNSUPPORTED_CODES = {"NotImplemented", "501", "MethodNotAllowed"}
# GetObjectRetention / GetObjectLegalHold of a version that never had a retention / a hold: S3's code,
# and Ceph RGW 16's (which reuses the one S3 gives a bucket without Object Lock)
_NO_LOCK_CODES = {"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"}
_LOCK_READS = ("GetObjectRetention", "GetObjectLegalHold")
_CONNECTION_ERRORS = (BotoConnectionError, HTTPClientError, ResponseStreamingError, IncompleteReadError)

_T = TypeVar("_T")

log = logging.getLogger(__name__)


class _DeleteMarker(NotFound):
    """The version asked for is a delete marker: absent to readers, but still removable."""


class _LockReadNotImplemented(Exception):
    """The server does not implement this lock read; never leaves this module."""


def default_client(concurrency: int = 4) -> Any:
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
    version's LastModified, which only a HEAD reports."""
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
    served_object = "etag" in {str(name).lower() for name in response_dict.get("headers", {})}
    if served_object and body and not bytes(body).lstrip().startswith(b"<"):
        response_dict["status_code"] = 501


def _lock_parameters(retention: Retention | None) -> dict[str, Any]:
    if retention is None:
        return {}
    return {"ObjectLockMode": retention.mode, "ObjectLockRetainUntilDate": retention.retain_until}


class S3Upload:
    """One streaming write: a single ``put_object`` if it fits in one part, otherwise a multipart
    upload whose parts go up on a bounded thread pool, each with its SHA-256 for the server to check.

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
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()
        self._part_digests: list[bytes] = []
        self._part_futures: list[Future[dict[str, Any]]] = []
        self._slots = threading.BoundedSemaphore(store.concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self.upload_id: str | None = None
        self._state = "open"

    @property
    def bytes_written(self) -> int:
        return self._size

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @property
    def expected_checksum(self) -> str:
        if self.upload_id is None:
            return _b64(self._hash.digest())
        pending = [hashlib.sha256(self._buffer).digest()] if self._buffer else []
        return composite_checksum(self._part_digests + pending)

    def write(self, data: bytes) -> None:
        self._require_open()
        self._hash.update(data)
        self._size += len(data)
        self._buffer += data
        # Strictly more than a part: an object of exactly one part still goes up in a single put.
        while len(self._buffer) > self._store.part_size:
            part = bytes(self._buffer[: self._store.part_size])
            del self._buffer[: self._store.part_size]
            self._send_part(part)

    def commit(self) -> ObjectInfo:
        self._require_open()
        try:
            if self.upload_id is not None:
                answer = self._complete_multipart()
                parts: int | None = len(self._part_digests)
            else:
                answer = self._put_whole_object()
                parts = None
            info = self._store.verify_commit(
                self.key,
                answer,
                size=self._size,
                expected_checksum=self.expected_checksum,
                parts=parts,
                retention=self._retention,
            )
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
        self._buffer = bytearray()
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

    def _put_whole_object(self) -> dict[str, Any]:
        body = bytes(self._buffer)
        self._buffer = bytearray()
        if self._if_absent:
            self._refuse_if_present()
        parameters: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": self._object_key,
            "Body": body,
            "ContentType": self._content_type,
            # Object Lock needs an integrity header; SHA-256 also lets the server verify the bytes.
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": _b64(hashlib.sha256(body).digest()),
            **_lock_parameters(self._retention),
        }
        if self._if_absent:
            parameters["IfNoneMatch"] = "*"
        with self._store.translated("storing", self.key):
            response: dict[str, Any] = self._store.client.put_object(**parameters)
        return response

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
                ChecksumAlgorithm="SHA256",
                **_lock_parameters(self._retention),
            )
        self.upload_id = str(response["UploadId"])
        self._pool = ThreadPoolExecutor(
            max_workers=self._store.concurrency, thread_name_prefix=f"s3-upload-{self.upload_id[:8]}"
        )

    def _send_part(self, part: bytes) -> None:
        if self.upload_id is None:
            self._start_multipart()
        if len(self._part_digests) >= MAX_PARTS:
            self._abort_quietly()
            raise StorageError(
                f"{self.key} needs more than {MAX_PARTS} parts of {self._store.part_size} bytes; "
                "raise EVIDENCE_PART_SIZE"
            )
        self._raise_failed_parts()
        digest = hashlib.sha256(part).digest()
        self._part_digests.append(digest)
        part_number = len(self._part_digests)
        self._slots.acquire()  # blocks while `concurrency` parts are in flight
        assert self._pool is not None
        try:
            future = self._pool.submit(self._upload_part, part_number, part, digest)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _done: self._slots.release())
        self._part_futures.append(future)

    def _upload_part(self, part_number: int, part: bytes, digest: bytes) -> dict[str, Any]:
        checksum = _b64(digest)
        response = self._store.client.upload_part(
            Bucket=self._store.bucket,
            Key=self._object_key,
            UploadId=self.upload_id,
            PartNumber=part_number,
            Body=part,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        return {"PartNumber": part_number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

    def _raise_failed_parts(self) -> None:
        for future in self._part_futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                try:
                    with self._store.translated("uploading a part of", self.key):
                        future.result()
                except BaseException:
                    self._abort_quietly()
                    raise

    def _complete_multipart(self) -> dict[str, Any]:
        if self._buffer:
            last_part = bytes(self._buffer)
            self._buffer = bytearray()
            self._send_part(last_part)
        with self._store.translated("uploading a part of", self.key):
            parts = [future.result() for future in self._part_futures]
        parameters: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": self._object_key,
            "UploadId": self.upload_id,
            "MultipartUpload": {"Parts": parts},
        }
        if self._if_absent:
            parameters["IfNoneMatch"] = "*"
        with self._store.translated("completing the upload of", self.key):
            response: dict[str, Any] = self._store.client.complete_multipart_upload(**parameters)
        return response


class S3Store:
    """Versioned, Object-Lock-enforcing object store in one bucket (URL ``s3://bucket/prefix``)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        part_size: int = 16 * MiB,
        concurrency: int = 4,
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
        try:
            response = self.client.get_public_access_block(Bucket=self.bucket)
        except ClientError as err:
            if _error_code(err) == "NoSuchPublicAccessBlockConfiguration":
                return [f"public access is not blocked on bucket {self.bucket}: run `evidence vault init`"]
            if _error_code(err) in _UNSUPPORTED_CODES:
                return []
            raise self._translate_client_error(
                err, "checking the public access block of", f"bucket {self.bucket}"
            ) from err
        except BotoCoreError as err:
            with self.translated("checking the public access block of", f"bucket {self.bucket}"):
                raise err
        flags = response.get("PublicAccessBlockConfiguration", {})
        missing = [name for name in _PUBLIC_ACCESS_FLAGS if flags.get(name) is not True]
        if missing:
            return [
                f"public access is only partly blocked on bucket {self.bucket} (off: {', '.join(missing)}): "
                "run `evidence vault init`"
            ]
        return []

    def initialise(self) -> None:
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
        try:
            self.client.put_public_access_block(
                Bucket=self.bucket, PublicAccessBlockConfiguration=dict.fromkeys(_PUBLIC_ACCESS_FLAGS, True)
            )
        except ClientError as err:
            # MinIO and Ceph have no public access block (buckets are private unless a policy says
            # otherwise); `check` already treats the call as unsupported there, and so does set-up
            if _error_code(err) not in _UNSUPPORTED_CODES:
                raise self._translate_client_error(err, "blocking public access to", subject) from err
        except BotoCoreError as err:
            with self.translated("blocking public access to", subject):
                raise err

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
        return upload.commit()

    def verify_commit(
        self,
        key: str,
        answer: dict[str, Any],
        *,
        size: int,
        expected_checksum: str,
        parts: int | None,
        retention: Retention | None,
    ) -> ObjectInfo:
        """The version a commit created, checked: the checksum the store reports for what it stored
        against ``expected_checksum`` (computed from the bytes sent), and the lock asked for.

        With a lock asked for and a checksum in the answer (S3 puts ``ChecksumSHA256`` in the answer
        to a put with one, and the composite ``<base64>-<parts>`` in the answer to a completed
        multipart upload), the object is not read: version, checksum and, through the checksum, size
        come from the answer, the lock from GetObjectRetention. That is what lets an ingest station
        verify its uploads without any read access to them (docs/deployment.md §4.2). Otherwise the
        new version is headed, which needs s3:GetObject: an answer without a checksum (moto 5.2.5's
        to CompleteMultipartUpload), or an object stored without a lock, where the head reports what
        an answer cannot (the store's own time, a retention a bucket default gave it).

        A lock the store dropped (moto ignores lock headers on CreateMultipartUpload) is applied with
        PutObjectRetention and read back; a store that still does not keep it is an ``IntegrityError``.
        """
        version_id = _version_of(answer)
        reported = answer.get("ChecksumSHA256")
        if reported and retention is not None:
            version = version_id or "null"
            self._check_checksum(key, version, str(reported), expected_checksum, parts)
            stored = self._ensure_retention(
                key, version, retention, self.get_retention(key, version), read_back=self.get_retention
            )
            # The checksum matched what was sent, so the stored bytes are the bytes sent: their size
            # is known. A version just created carries no legal hold (none is ever sent with one).
            return ObjectInfo(
                key=key,
                version_id=version,
                size=size,
                checksum=normalise_checksum(str(reported)),
                retention=stored,
                legal_hold=False,
                last_modified=_answered_at(answer),
            )
        try:
            info = self.head(key, version_id=version_id)
        except AccessDenied as err:
            raise AccessDenied(
                f"{err}. {self.url} gave no checksum in its answer to the upload of {key} (or no lock was "
                "asked), so the new version had to be read back with a HEAD, which needs s3:GetObject "
                "on it (docs/deployment.md §4.2)"
            ) from err
        self._check_checksum(key, info.version_id, info.checksum, expected_checksum, None)
        if retention is not None:
            # headed already, so headed again: a lock read of a server without GetObjectRetention may
            # answer with the whole object (moto serves it, and botocore reads it into memory)
            stored = self._ensure_retention(
                key, info.version_id, retention, info.retention, read_back=self._retention_by_head
            )
            if stored != info.retention:
                info = replace(info, retention=stored)
        return info

    def _check_checksum(
        self, key: str, version_id: str, reported: str | None, expected: str, parts: int | None
    ) -> None:
        """The store's checksum of what it stored against the one computed from the bytes sent. This is
        what proves the bytes arrived whole before a device may be wiped: a mismatch means the stored
        object is not what was sent (it stays, locked, and is never referenced)."""
        if reported is None:
            return  # a store that keeps no checksum (it still checked the one each request carried)
        value, _, count = reported.partition("-")
        if value != expected or (parts is not None and count and count != str(parts)):
            sent = f"{expected}-{parts}" if parts is not None else expected
            raise IntegrityError(
                f"{key} (version {version_id}): {self.url} reports checksum {reported} for what it "
                f"stored, but the bytes sent have {sent}; the stored object is not what was sent"
            )

    def _retention_by_head(self, key: str, version_id: str) -> Retention | None:
        return self.head(key, version_id=version_id).retention

    def _ensure_retention(
        self,
        key: str,
        version_id: str,
        wanted: Retention,
        stored: Retention | None,
        *,
        read_back: Callable[[str, str], Retention | None],
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
        stored = read_back(key, version_id)
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
            if headers.get("x-amz-delete-marker") == "true":
                raise _DeleteMarker(f"{subject} was deleted (a delete marker) in {self.url}") from err
            raise self._translate_client_error(err, "reading", subject) from err
        except BotoCoreError as err:
            with self.translated("reading", subject):
                raise err
        return response

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
                return None
            if code in _UNSUPPORTED_CODES:
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
        return response

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
