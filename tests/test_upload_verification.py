"""Every upload is verified against the server's own account of what it stored (docs/storage.md §3.5),
on moto and on Ceph RGW, whatever botocore's payload signing.

Between the station and the server sits :class:`tests.tamper_proxy.TamperingProxy`, over HTTPS, as a
faulty network or a hostile middlebox would: it flips a byte of every upload, or falsifies the
server's answers (the ETag of a put or a part, the checksum of a put, the ETag of a completed
multipart upload or of a version listing). Each must fail the commit with an integrity error named
as such, at the store and through ``evidence ingest --wipe``, which then wipes nothing and references
nothing. The same path with no fault armed succeeds, so each test can fail.

Payload signing is set in the AWS config file (``s3.payload_signing_enabled``) and checked on the
requests themselves: signed, the server can refuse damaged bytes by their SHA-256 alone (RGW does:
``XAmzContentSHA256Mismatch``); unsigned (botocore's choice over HTTPS when a request carries
Content-MD5), only the store's own checks stand between a damaged upload and a wiped device.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from cli.commands import app
from evidence.errors import IntegrityError
from storage.base import Retention
from storage.s3 import S3Store
from tests.factories import make_jpeg, random_file
from tests.rgw import remove_bucket
from tests.tamper_proxy import TamperingProxy
from tests.tls import TlsFiles, loopback_certificate

MiB = 1024 * 1024
PART = 5 * MiB
ONE_PUT = 300 * 1024 + 7
MULTIPART = 2 * PART + 12345  # three parts
MOTO_REGION = "eu-west-2"
SERIAL = "BWC-TAMPER01"
UPLOADS = ("PutObject", "UploadPart")
runner = CliRunner()


def _governance(days: float = 1) -> Retention:
    from datetime import UTC, datetime, timedelta

    return Retention("GOVERNANCE", datetime.now(UTC) + timedelta(days=days))


# -- the servers, the proxy and the station's configuration ---------------------------------------------


@dataclass(frozen=True)
class Upstream:
    name: str
    url: str
    access_key: str
    secret_key: str
    region: str
    ca_bundle: Path | None = None
    buckets: list[str] = field(default_factory=list)

    def client(self) -> Any:
        """A plain boto3 client straight to the server (not through the proxy): the bucket's owner."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            verify=str(self.ca_bundle) if self.ca_bundle else None,
        )

    def new_bucket(self) -> str:
        from tests.rgw import unique_bucket

        bucket = unique_bucket("verify")
        parameters: dict[str, Any] = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}
        if self.region != "us-east-1":
            parameters["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client().create_bucket(**parameters)
        self.buckets.append(bucket)
        return bucket

    def remove_buckets(self) -> None:
        """Every bucket a test made, emptied (governance bypassed, as its owner) and removed: RGW keeps
        objects in a memory store of a few GiB shared by the whole session."""
        s3 = self.client()
        for bucket in self.buckets:
            remove_bucket(s3, bucket)


@pytest.fixture(params=["moto", "rgw"])
def upstream(request: pytest.FixtureRequest) -> Iterator[Upstream]:
    if request.param == "moto":
        server = Upstream("moto", request.getfixturevalue("moto_server"), "testing", "testing", MOTO_REGION)
    else:
        rgw = request.getfixturevalue("rgw")
        # plain HTTP behind the proxy, which is what terminates the station's TLS
        server = Upstream("rgw", rgw.http_url, rgw.access_key, rgw.secret_key, rgw.region)
    yield server
    server.remove_buckets()


@pytest.fixture(scope="module")
def proxy_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return loopback_certificate(tmp_path_factory.mktemp("proxy-tls"), "tampering-proxy")


@pytest.fixture
def proxy(upstream: Upstream, proxy_tls: TlsFiles) -> Iterator[TamperingProxy]:
    with TamperingProxy(upstream.url, proxy_tls) as running:
        yield running


@pytest.fixture(params=["signed", "unsigned"])
def signing(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def station(
    upstream: Upstream, proxy: TamperingProxy, signing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """boto3 as a station has it, pointed at the proxy over HTTPS; payload signing as asked."""
    config = tmp_path / "aws-config"
    config.write_text(
        f"[default]\ns3 =\n    payload_signing_enabled = {'true' if signing == 'signed' else 'false'}\n",
        encoding="utf-8",
    )
    for name, value in {
        "AWS_CONFIG_FILE": str(config),
        "AWS_ENDPOINT_URL_S3": proxy.url,
        "AWS_CA_BUNDLE": str(proxy.ca_bundle),
        "AWS_ACCESS_KEY_ID": upstream.access_key,
        "AWS_SECRET_ACCESS_KEY": upstream.secret_key,
        "AWS_DEFAULT_REGION": upstream.region,
    }.items():
        monkeypatch.setenv(name, value)
    return signing


class Requests:
    """The upload requests a client sent: their integrity headers, as the server received them."""

    def __init__(self, client: Any) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        client.meta.events.register("before-send.s3.*", self._note)

    def _note(self, request: Any, **kwargs: Any) -> None:
        operation = str(kwargs.get("event_name", "")).rsplit(".", 1)[-1]
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()
        }
        self.seen.append((operation, headers))

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.seen]

    def uploads(self) -> list[dict[str, str]]:
        return [headers for operation, headers in self.seen if operation in UPLOADS]


def _store(bucket: str) -> S3Store:
    """The project's store with the project's own client (``storage.s3.default_client``)."""
    return S3Store(bucket, "vault", part_size=PART, concurrency=2)


def _upload(store: S3Store, key: str, data: bytes, retention: Retention | None) -> Any:
    upload = store.begin_upload(key, retention=retention)
    for offset in range(0, len(data), MiB):
        upload.write(data[offset : offset + MiB])
    return upload


def _assert_signing(requests: Requests, signing: str) -> None:
    """The setting took: every upload's body was signed (its SHA-256 in x-amz-content-sha256), or
    none was."""
    payloads = {headers.get("x-amz-content-sha256") for headers in requests.uploads()}
    assert payloads, "no upload was sent"
    if signing == "signed":
        assert all(p and len(p) == 64 for p in payloads), payloads
    else:
        assert payloads == {"UNSIGNED-PAYLOAD"}, payloads


def _assert_integrity_failure(error: BaseException) -> None:
    message = str(error)
    assert "integrity" in message and ("damaged" in message or "not what was sent" in message), message
    assert "not available" not in message and "retry later" not in message, message


def _left_behind(upstream: Upstream, bucket: str, key: str, size: int) -> list[dict[str, Any]]:
    """What a failed commit left under its key: no upload may stay open, and any version the server
    did store is locked by the headers it was sent with (nothing refers to it; it stays until its
    lock ends). moto and RGW 16 drop the lock headers of a multipart upload, and the store locks such
    an object only once it is verified."""
    s3 = upstream.client()
    object_key = f"vault/{key}"
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix=object_key).get("Uploads", []) == []
    versions = [v for v in s3.list_object_versions(Bucket=bucket, Prefix=object_key).get("Versions", [])]
    if size <= PART:
        for version in versions:  # a HEAD, as the owner: moto 5.2.5 has no GetObjectRetention
            head = s3.head_object(Bucket=bucket, Key=object_key, VersionId=version["VersionId"])
            assert head["ObjectLockMode"] == "GOVERNANCE", version
    return versions


# -- at the store ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [ONE_PUT, MULTIPART], ids=["one-put", "multipart"])
def test_through_the_proxy_an_honest_upload_commits_and_reads_back(
    upstream: Upstream, proxy: TamperingProxy, station: str, size: int
) -> None:
    store = _store(upstream.new_bucket())
    requests = Requests(store.client)
    data = os.urandom(size)

    committed = _upload(store, "objects/ab/clip", data, _governance()).commit()

    assert committed.size == size and committed.retention is not None
    assert b"".join(store.get("objects/ab/clip", version_id=committed.version_id)) == data
    assert not proxy.applied
    _assert_signing(requests, station)
    # the answer's own account sufficed, except where RGW completes a multipart upload without an ETag
    listed = "ListObjectVersions" in requests.operations()
    assert listed == (upstream.name == "rgw" and size > PART), requests.operations()


@pytest.mark.parametrize("size", [ONE_PUT, MULTIPART], ids=["one-put", "multipart"])
def test_bytes_damaged_in_transit_fail_the_commit(
    upstream: Upstream, proxy: TamperingProxy, station: str, size: int
) -> None:
    bucket = upstream.new_bucket()
    store = _store(bucket)
    requests = Requests(store.client)
    proxy.arm("upload-body")

    with pytest.raises(IntegrityError) as failed:
        _upload(store, "objects/ab/clip", os.urandom(size), _governance()).commit()

    assert proxy.applied["upload-body"] >= 1
    _assert_integrity_failure(failed.value)
    _assert_signing(requests, station)
    proxy.disarm()
    left = _left_behind(upstream, bucket, "objects/ab/clip", size)
    if upstream.name == "rgw":
        # RGW checks Content-MD5 (BadDigest) or, signed, the payload's SHA-256: it stored nothing
        assert left == []
        assert ("XAmzContentSHA256Mismatch" if station == "signed" else "BadDigest") in str(failed.value)


FALSE_ANSWERS = {
    "put-etag": (ONE_PUT, ("upload-etag",)),
    "put-checksum": (ONE_PUT, ("upload-checksum",)),
    "part-etag": (MULTIPART, ("upload-etag",)),
    "completion-etag": (MULTIPART, ("complete-etag",)),
    "listing-etag": (MULTIPART, ("complete-etag-empty", "listing-etag")),
}


@pytest.mark.parametrize("case", list(FALSE_ANSWERS))
def test_a_false_answer_fails_the_commit(
    upstream: Upstream, proxy: TamperingProxy, station: str, case: str
) -> None:
    size, faults = FALSE_ANSWERS[case]
    bucket = upstream.new_bucket()
    store = _store(bucket)
    proxy.arm(*faults)

    with pytest.raises(IntegrityError) as failed:
        _upload(store, "objects/ab/clip", os.urandom(size), _governance()).commit()

    assert all(proxy.applied[fault] >= 1 for fault in faults), proxy.applied
    _assert_integrity_failure(failed.value)
    proxy.disarm()
    _left_behind(upstream, bucket, "objects/ab/clip", size)


# -- the ladder, rung by rung ---------------------------------------------------------------------------


@pytest.mark.parametrize("signing", ["unsigned"], indirect=True)
def test_an_answer_without_an_etag_is_completed_by_the_version_listing(
    upstream: Upstream, proxy: TamperingProxy, station: str
) -> None:
    """RGW 16 completes a multipart upload with an empty ETag; on moto the proxy empties it. The
    version's entry in a listing of its key (no read of the object) then shows what was stored."""
    store = _store(upstream.new_bucket())
    requests = Requests(store.client)
    if upstream.name == "moto":
        proxy.arm("complete-etag-empty")
    data = os.urandom(MULTIPART)

    committed = _upload(store, "objects/ab/clip", data, _governance()).commit()

    assert "ListObjectVersions" in requests.operations()
    # never a read of the object (moto, which has no GetObjectRetention, has its lock read by HEAD)
    reads = {"GetObject"} if upstream.name == "moto" else {"GetObject", "HeadObject"}
    assert not reads & set(requests.operations()), requests.operations()
    assert committed.size == len(data)
    assert upstream.name == "rgw" or proxy.applied["complete-etag-empty"] == 1


@pytest.mark.parametrize("signing", ["unsigned"], indirect=True)
def test_no_account_of_the_stored_bytes_fails_the_commit(
    upstream: Upstream, proxy: TamperingProxy, station: str
) -> None:
    """Neither the answer nor the listing says what was stored: the commit fails, never "no checksum,
    so it passed"."""
    bucket = upstream.new_bucket()
    store = _store(bucket)
    proxy.arm("complete-etag-empty", "listing-etag-empty")

    with pytest.raises(IntegrityError, match=r"integrity not proven.*no account of the bytes it stored"):
        _upload(store, "objects/ab/clip", os.urandom(MULTIPART), _governance()).commit()

    assert proxy.applied["listing-etag-empty"] >= 1
    proxy.disarm()
    _left_behind(upstream, bucket, "objects/ab/clip", MULTIPART)


@pytest.mark.parametrize("signing", ["unsigned"], indirect=True)
def test_every_upload_carries_content_md5_and_sha256_while_the_server_keeps_it(
    upstream: Upstream, proxy: TamperingProxy, station: str
) -> None:
    """Content-MD5 on every PutObject and UploadPart, on every server. SHA-256 until an answer shows
    the server keeps none (RGW ignores x-amz-checksum-*): from then on the cheaper CRC32, which only
    keeps botocore from adding a checksum of its own."""
    store = _store(upstream.new_bucket())
    requests = Requests(store.client)

    _upload(store, "objects/ab/first", os.urandom(MULTIPART), _governance()).commit()
    first = requests.uploads()
    store.put_bytes("objects/ab/second", os.urandom(ONE_PUT), retention=_governance())
    _upload(store, "objects/ab/third", os.urandom(MULTIPART), _governance()).commit()
    later = requests.uploads()[len(first) :]

    assert len(first) == 3 and len(later) == 4
    assert all("content-md5" in headers for headers in first + later)
    assert all("x-amz-checksum-sha256" in headers for headers in first)
    if upstream.name == "rgw":
        assert store.keeps_checksums is False
        assert all("x-amz-checksum-crc32" in h and "x-amz-checksum-sha256" not in h for h in later)
    else:
        assert store.keeps_checksums is True
        assert all("x-amz-checksum-sha256" in headers for headers in later)


# -- exactly what a server answers (Stubber) ------------------------------------------------------------


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_an_etag_that_is_not_the_md5_sent_fails_the_commit() -> None:
    client = boto3.client("s3", region_name=MOTO_REGION)
    store = S3Store("stubbed", client=client, part_size=PART)
    with Stubber(client) as stubber, pytest.raises(IntegrityError, match=r"integrity check failed.*ETag"):
        stubber.add_response("put_object", {"VersionId": "v1", "ETag": f'"{_md5(b"other")}"'})
        store.put_bytes("objects/ab/x", b"ciphertext", retention=_governance())


def test_under_sse_kms_the_etag_is_no_evidence_and_the_checksum_decides() -> None:
    """S3 says the ETag of an SSE-KMS object is not its MD5: it is neither compared nor counted."""
    import base64

    client = boto3.client("s3", region_name=MOTO_REGION)
    store = S3Store("stubbed", client=client, part_size=PART)
    body, retention = b"ciphertext", _governance()
    checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
    kms = {"ServerSideEncryption": "aws:kms", "ETag": '"0123456789abcdef0123456789abcdef"'}
    with Stubber(client) as stubber:
        stubber.add_response("put_object", {"VersionId": "v1", "ChecksumSHA256": checksum, **kms})
        stubber.add_response(
            "get_object_retention",
            {"Retention": {"Mode": retention.mode, "RetainUntilDate": retention.retain_until}},
        )
        assert store.put_bytes("objects/ab/x", body, retention=retention).checksum == checksum
    with Stubber(client) as stubber, pytest.raises(IntegrityError, match="no account"):
        stubber.add_response("put_object", {"VersionId": "v2", **kms})
        stubber.add_response(
            "list_object_versions",
            {"Versions": [{"Key": "objects/ab/y", "VersionId": "v2", "ETag": kms["ETag"], "Size": 10}]},
        )
        store.put_bytes("objects/ab/y", body, retention=retention)


def test_a_version_missing_from_its_listing_fails_the_commit() -> None:
    client = boto3.client("s3", region_name=MOTO_REGION)
    store = S3Store("stubbed", client=client, part_size=PART)
    with Stubber(client) as stubber, pytest.raises(IntegrityError, match="not in its listing"):
        stubber.add_response("put_object", {"VersionId": "v1"})
        stubber.add_response(
            "list_object_versions",
            {"Versions": [{"Key": "objects/ab/x", "VersionId": "v0", "ETag": f'"{_md5(b"x")}"', "Size": 1}]},
        )
        store.put_bytes("objects/ab/x", b"x", retention=_governance())


# -- through `evidence ingest --wipe` -------------------------------------------------------------------


def _dock(root: Path) -> dict[str, bytes]:
    """Two photos and a recording bigger than one part (a multipart upload)."""
    device = root / SERIAL
    make_jpeg(device / "DCIM" / "IMG_0001.JPG", size=(320, 240), serial=SERIAL, seed=91)
    make_jpeg(device / "DCIM" / "IMG_0002.JPG", size=(320, 240), serial=SERIAL, seed=92)
    random_file(device / "long-recording.bin", PART + 300 * 1024, seed=93)
    return {str(p.relative_to(device)): p.read_bytes() for p in sorted(device.rglob("*")) if p.is_file()}


def _on_device(device: Path) -> dict[str, bytes]:
    return {str(p.relative_to(device)): p.read_bytes() for p in sorted(device.rglob("*")) if p.is_file()}


def _ingest(device: Path) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(
        app, ["ingest", str(device), "--device", SERIAL, "--officer", "PC-1", "--wipe", "--json"]
    )
    assert result.stdout.strip(), (result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["upload-body", "upload-etag"])
def test_ingest_through_a_tampering_proxy_fails_for_integrity_and_wipes_nothing(
    upstream: Upstream,
    proxy: TamperingProxy,
    station: str,
    fault: str,
    prefect_harness: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = upstream.new_bucket()
    for name, value in {
        "EVIDENCE_DATA_DIR": str(tmp_path / "station"),
        "EVIDENCE_VAULT_URL": f"s3://{bucket}/vault",
        "EVIDENCE_STATION_ID": "dock-tamper",
        "EVIDENCE_SETTLE_SECONDS": "0",
        "EVIDENCE_PART_SIZE": str(PART),
    }.items():
        monkeypatch.setenv(name, value)
    for command in (["keys", "init"], ["vault", "init"]):
        done = runner.invoke(app, command)
        assert done.exit_code == 0, (command, done.output)
    device = tmp_path / "dock" / SERIAL
    originals = _dock(device.parent)

    proxy.arm(fault)
    exit_code, doc = _ingest(device)

    assert proxy.applied[fault] >= 1
    assert exit_code == 9, doc  # some files failed and stayed on the device (README, exit codes)
    assert doc["ingested"] == [] and doc["duplicates"] == []
    assert {entry["source_path"] for entry in doc["rejected"]} == set(originals)
    for entry in doc["rejected"]:
        assert entry["reason"].startswith("failed: ") and entry["reason"].endswith("left on the device")
        _assert_integrity_failure(Exception(entry["reason"]))
    assert _on_device(device) == originals, "nothing was wiped"
    s3 = upstream.client()
    assert s3.list_objects_v2(Bucket=bucket, Prefix="vault/items/").get("KeyCount", 0) == 0, "no item"

    if fault == "upload-body":
        # the same run, nothing tampered with: everything stored, verified and wiped
        proxy.disarm()
        exit_code, doc = _ingest(device)
        assert exit_code == 0, doc
        assert {entry["source_path"] for entry in doc["ingested"]} == set(originals)
        assert all(entry["wiped"] for entry in doc["ingested"])
        assert _on_device(device) == {}
