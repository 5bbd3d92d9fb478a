"""An upload is verified without reading it back (docs/storage.md §3.1, docs/deployment.md §4.2).

The S3 store takes a committed object's version, checksum and (through the checksum) size from the
answer to PutObject / CompleteMultipartUpload, compares the checksum with the one computed from the
bytes sent, and reads the lock back with GetObjectRetention: no HEAD or GET of the object, so an
ingest station's role needs no read access to ``objects/``.

moto 5.2.5 cannot show this as it is: it has no GetObjectRetention (GET ``?retention`` is served by
its GetObject handler, with the object's bytes, which botocore reports as HTTP 500), it authorises
GET ``?retention`` and ``?legal-hold`` as s3:GetObject, and its answer to CompleteMultipartUpload
has no ChecksumSHA256. :func:`moto_answering_like_s3` makes it answer those three as S3 does, for
one test. Where exact AWS answers are the point, botocore's ``Stubber`` stands in for S3.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from evidence.errors import IntegrityError, NotFound
from storage.base import ObjectStore, Retention
from storage.local import LocalStore
from storage.s3 import S3Store, composite_checksum

MiB = 1024 * 1024
PART = 5 * MiB
BUCKET = "station-reads"
PREFIX = "vault"
REGION = "eu-west-2"
LOCK_READS = {"GetObjectRetention", "GetObjectLegalHold"}
OBJECT_READS = {"HeadObject", "GetObject", "GetObjectAttributes"}


@contextmanager
def moto_answering_like_s3() -> Iterator[None]:
    """moto 5.2.5 answering GetObjectRetention, authorising the lock reads as their own actions, and
    putting the composite checksum in its answer to CompleteMultipartUpload, as S3 does."""
    from moto.s3.responses import ACTION_MAP, S3Response

    real_get_object = S3Response.get_object
    real_post = S3Response._key_response_post
    real_range = S3Response._handle_range_header

    def range_of_the_object_only(self: Any, request: Any, headers: Any, content: Any) -> Any:
        # a range applies to an object's bytes; S3 answers a lock read with its XML whatever the range
        if "retention" in self.querystring:
            return 200, headers, content
        return real_range(self, request, headers, content)

    def get_object_or_its_retention(self: Any) -> Any:
        if "retention" not in self.querystring:
            return real_get_object(self)
        key, _ = self._get_key()
        headers = {"x-amz-version-id": key.version_id} if key.version_id != "null" else {}
        if not key.lock_mode or not key.lock_until:
            return (
                404,
                headers,
                '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchObjectLockConfiguration</Code>'
                "<Message>The specified object does not have a ObjectLock configuration</Message></Error>",
            )
        return (
            200,
            headers,
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Mode>{key.lock_mode}</Mode><RetainUntilDate>{key.lock_until}</RetainUntilDate></Retention>",
        )

    def post_with_composite_checksum(
        self: Any, request: Any, body: bytes, bucket_name: str, query: dict[str, Any], key_name: str
    ) -> Any:
        status, headers, content = real_post(self, request, body, bucket_name, query, key_name)
        if "uploadId" in query and status == 200:
            key = self.backend.get_object(bucket_name, key_name)
            if key is not None and key.checksum_algorithm == "SHA256" and key.checksum_value:
                value = f"{key.checksum_value}-{key.checksum_parts}".encode()
                text = content.encode() if isinstance(content, str) else bytes(content)
                content = text.replace(b"</ETag>", b"</ETag><ChecksumSHA256>" + value + b"</ChecksumSHA256>")
        return status, headers, content

    with pytest.MonkeyPatch.context() as patch:
        lock_reads = {"retention": "GetObjectRetention", "legal-hold": "GetObjectLegalHold"}
        patch.setitem(ACTION_MAP["KEY"], "GET", dict(ACTION_MAP["KEY"]["GET"]) | lock_reads)
        patch.setattr(S3Response, "get_object", get_object_or_its_retention)
        patch.setattr(S3Response, "_key_response_post", post_with_composite_checksum)
        patch.setattr(S3Response, "_handle_range_header", range_of_the_object_only)
        yield


def _governance(days: float = 31) -> Retention:
    return Retention("GOVERNANCE", datetime.now(UTC) + timedelta(days=days))


def _operations(store: S3Store) -> list[str]:
    made: list[str] = []
    store.client.meta.events.register(
        "provide-client-params.s3.*", lambda params, model, **_: made.append(model.name)
    )
    return made


def _upload(store: ObjectStore, key: str, data: bytes, retention: Retention | None) -> Any:
    upload = store.begin_upload(key, retention=retention)
    for offset in range(0, len(data), MiB):
        upload.write(data[offset : offset + MiB])
    return upload


@pytest.fixture
def s3_like_aws(moto_aws: None) -> Iterator[S3Store]:
    with moto_answering_like_s3():
        store = S3Store(BUCKET, PREFIX, part_size=PART, concurrency=2)
        store.initialise()
        yield store


# -- a commit reads nothing back -------------------------------------------------------------------


@pytest.mark.parametrize("size", [100, PART, 2 * PART + 7], ids=["one-put", "one-full-part", "three-parts"])
def test_a_locked_commit_is_verified_without_reading_the_object(s3_like_aws: S3Store, size: int) -> None:
    store = s3_like_aws
    data = os.urandom(size)
    retention = _governance()
    made = _operations(store)

    upload = _upload(store, "objects/ab/evidence", data, retention)
    committed = upload.commit()

    assert not set(made) & OBJECT_READS, made
    assert "GetObjectRetention" in made
    # moto drops the lock headers of a multipart upload: the store put the lock on and read it back
    assert ("PutObjectRetention" in made) == (size > PART)
    head = store.head("objects/ab/evidence")  # as a reader sees it
    assert committed.version_id == head.version_id
    assert committed.size == head.size == size
    assert committed.checksum == head.checksum == upload.expected_checksum
    assert committed.retention is not None and head.retention is not None
    assert abs(committed.retention.retain_until - head.retention.retain_until) <= timedelta(seconds=1)
    assert committed.legal_hold is head.legal_hold is False


def test_the_create_once_records_of_a_station_are_verified_the_same_way(s3_like_aws: S3Store) -> None:
    store = s3_like_aws
    made = _operations(store)
    store.put_bytes("items/ev-x/manifest.json", b"{}", retention=_governance(), if_absent=True)
    # the create-once check heads the key (items/ is readable to the station); the new version is not
    # read: its lock is, and the key's versions are listed to confirm this write came first (a server
    # that ignores If-None-Match would have let a second writer through: docs/storage.md §5)
    assert made == ["HeadObject", "PutObject", "GetObjectRetention", "ListObjectVersions"]


def test_on_moto_as_it_is_the_lock_is_read_with_a_head_once_moto_showed_it_cannot(moto_aws: None) -> None:
    """The deviation itself: moto 5.2.5 answers GetObjectRetention with the object's bytes. The store
    takes that for NotImplemented (not a 500 to retry five times) and reads locks with HEAD from then
    on, which needs s3:GetObject: on such a store a station needs the read grant back."""
    store = S3Store(BUCKET, PREFIX, part_size=PART)
    store.initialise()
    made = _operations(store)
    first = store.put_bytes("objects/ab/one", b"one", retention=_governance())
    assert made == ["PutObject", "GetObjectRetention", "HeadObject"]
    made.clear()
    store.put_bytes("objects/ab/two", b"two", retention=_governance())
    assert made == ["PutObject", "HeadObject"]
    assert first.retention is not None and store.get_retention("objects/ab/one", first.version_id) is not None


@pytest.mark.parametrize("first_bytes", [b"<", b"  <?xml", b"x"], ids=["angle", "xml-like", "plain"])
def test_an_object_that_starts_like_xml_is_still_known_for_the_object(
    moto_aws: None, first_bytes: bytes
) -> None:
    """moto serves one byte of the object to the first lock read; a "<" there is still the object, not
    S3's XML answer (it once failed to parse, with random test data, one run in 256)."""
    store = S3Store(BUCKET, PREFIX, part_size=PART)
    store.initialise()
    made = _operations(store)
    stored = store.put_bytes(
        "objects/ab/one", first_bytes + b" rest of the recording", retention=_governance()
    )
    assert made == ["PutObject", "GetObjectRetention", "HeadObject"]
    assert stored.retention is not None


def test_a_commit_never_brings_the_object_back_whatever_the_server(moto_aws: None) -> None:
    """Constant memory at any size. moto as it is answers GetObjectRetention with the object itself,
    which botocore reads into memory (a 1 GiB ingest once peaked at 7 GiB): until a server has
    answered one as S3 does, the lock read asks for one byte, so moto sends one. moto also drops the
    lock of a multipart upload, which the store puts on and reads back, with HEAD once moto showed it
    has no GetObjectRetention."""
    store = S3Store(BUCKET, PREFIX, part_size=PART, concurrency=2)
    store.initialise()
    made = _operations(store)
    bodies: list[int] = []
    store.client.meta.events.register(
        "after-call.s3.*", lambda http_response, **_: bodies.append(len(http_response.content or b""))
    )

    upload = _upload(store, "objects/ab/clip", os.urandom(3 * PART + 11), _governance())
    committed = upload.commit()

    assert committed.retention is not None and "PutObjectRetention" in made
    assert made.count("GetObjectRetention") == 1, made  # once: then moto is known not to have it
    assert max(bodies) < 64 * 1024, f"a response of {max(bodies)} bytes: the object came back"


# -- exactly what S3 answers (Stubber) -------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _stubbed(client: Any) -> tuple[S3Store, Stubber]:
    return S3Store(BUCKET, client=client, part_size=PART, concurrency=1), Stubber(client)


def _retention_answer(retention: Retention) -> dict[str, Any]:
    return {"Retention": {"Mode": retention.mode, "RetainUntilDate": retention.retain_until}}


def test_a_put_is_verified_from_its_answer_and_the_retention_read() -> None:
    client = boto3.client("s3", region_name=REGION)
    store, stubber = _stubbed(client)
    retention, body = _governance(), b"ciphertext"
    with stubber:
        stubber.add_response("put_object", {"VersionId": "v1", "ChecksumSHA256": _b64(body)})
        stubber.add_response(
            "get_object_retention",
            _retention_answer(retention),
            {"Bucket": BUCKET, "Key": "objects/ab/x", "VersionId": "v1"},
        )
        info = store.put_bytes("objects/ab/x", body, retention=retention)
        stubber.assert_no_pending_responses()  # and no HEAD: the Stubber refuses any call not queued
    assert (info.version_id, info.size, info.checksum) == ("v1", len(body), _b64(body))
    assert info.retention == retention


def test_a_put_whose_answer_names_other_bytes_fails_before_anything_refers_to_it() -> None:
    client = boto3.client("s3", region_name=REGION)
    store, stubber = _stubbed(client)
    with stubber, pytest.raises(IntegrityError, match="not what was sent"):
        stubber.add_response("put_object", {"VersionId": "v1", "ChecksumSHA256": _b64(b"other bytes")})
        store.put_bytes("objects/ab/x", b"ciphertext", retention=_governance())


def _multipart(stubber: Stubber, parts: list[bytes], answer: dict[str, Any]) -> None:
    stubber.add_response("create_multipart_upload", {"UploadId": "u1"})
    for part in parts:  # S3's answer to a part: the part's MD5 and SHA-256
        stubber.add_response("upload_part", {"ETag": f'"{_md5(part)}"', "ChecksumSHA256": _b64(part)})
    stubber.add_response("complete_multipart_upload", answer)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_a_multipart_upload_is_verified_from_the_composite_checksum_in_the_answer() -> None:
    client = boto3.client("s3", region_name=REGION)
    store, stubber = _stubbed(client)
    retention = _governance()
    parts = [os.urandom(PART), b"tail"]
    composite = composite_checksum([hashlib.sha256(p).digest() for p in parts])
    with stubber:
        _multipart(stubber, parts, {"VersionId": "v1", "ChecksumSHA256": f"{composite}-2"})
        stubber.add_response("get_object_retention", _retention_answer(retention))
        info = _upload(store, "objects/ab/big", b"".join(parts), retention).commit()
        stubber.assert_no_pending_responses()
    assert (info.version_id, info.size, info.checksum) == ("v1", PART + 4, composite)


@pytest.mark.parametrize("reported", ["wrong-value", "wrong-count"])
def test_a_multipart_answer_that_is_not_the_parts_sent_fails(reported: str) -> None:
    client = boto3.client("s3", region_name=REGION)
    store, stubber = _stubbed(client)
    parts = [os.urandom(PART), b"tail"]
    composite = composite_checksum([hashlib.sha256(p).digest() for p in parts])
    answer = f"{_b64(b'x')}-2" if reported == "wrong-value" else f"{composite}-3"
    with stubber, pytest.raises(IntegrityError, match="not what was sent"):
        _multipart(stubber, parts, {"VersionId": "v1", "ChecksumSHA256": answer})
        stubber.add_response("abort_multipart_upload", {})
        _upload(store, "objects/ab/big", b"".join(parts), _governance()).commit()


def test_a_lock_the_store_dropped_is_applied_and_read_back() -> None:
    client = boto3.client("s3", region_name=REGION)
    store, stubber = _stubbed(client)
    retention, body = _governance(), b"ciphertext"
    with stubber:
        stubber.add_response("put_object", {"VersionId": "v1", "ChecksumSHA256": _b64(body)})
        stubber.add_client_error(
            "get_object_retention", "NoSuchObjectLockConfiguration", http_status_code=404
        )
        stubber.add_response("put_object_retention", {})
        stubber.add_response("get_object_retention", _retention_answer(retention))
        info = store.put_bytes("objects/ab/x", body, retention=retention)
        stubber.assert_no_pending_responses()
    assert info.retention == retention


def test_a_store_that_does_not_keep_the_lock_fails_the_commit() -> None:
    client = boto3.client("s3", region_name=REGION)
    store, stubber = _stubbed(client)
    body = b"ciphertext"
    with stubber, pytest.raises(IntegrityError, match="did not keep the retention"):
        stubber.add_response("put_object", {"VersionId": "v1", "ChecksumSHA256": _b64(body)})
        stubber.add_client_error(
            "get_object_retention", "NoSuchObjectLockConfiguration", http_status_code=404
        )
        stubber.add_response("put_object_retention", {})
        stubber.add_client_error(
            "get_object_retention", "NoSuchObjectLockConfiguration", http_status_code=404
        )
        store.put_bytes("objects/ab/x", body, retention=_governance())


# -- the lock reads, on every backend ---------------------------------------------------------------


@pytest.fixture(params=["local", "s3-like-aws", "s3-moto"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        local = LocalStore(tmp_path / "vault")
        local.initialise()
        yield local
        return
    request.getfixturevalue("moto_aws")
    with moto_answering_like_s3() if request.param == "s3-like-aws" else _unchanged():
        s3 = S3Store(BUCKET, PREFIX, part_size=PART)
        s3.initialise()
        yield s3


@contextmanager
def _unchanged() -> Iterator[None]:
    yield


def test_lock_reads_report_the_lock_and_refuse_a_missing_version(store: ObjectStore) -> None:
    locked = store.put_bytes("objects/ab/locked", b"x", retention=_governance())
    plain = store.put_bytes("objects/ab/plain", b"y", retention=None)

    retention = store.get_retention(locked.key, locked.version_id)
    assert retention is not None and retention.mode == "GOVERNANCE"
    assert store.get_retention(plain.key, plain.version_id) is None
    assert store.get_legal_hold(plain.key, plain.version_id) is False
    store.set_legal_hold(plain.key, plain.version_id, True)
    assert store.get_legal_hold(plain.key, plain.version_id) is True
    store.set_legal_hold(plain.key, plain.version_id, False)
    assert store.get_legal_hold(plain.key, plain.version_id) is False

    other = store.put_bytes("objects/ab/other", b"z", retention=None)
    with pytest.raises(NotFound):
        store.get_retention("objects/ab/missing", other.version_id)
    with pytest.raises(NotFound):
        store.get_legal_hold("objects/ab/missing", other.version_id)
