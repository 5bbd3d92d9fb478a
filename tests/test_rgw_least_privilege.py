"""Least privilege on a real server: the ingest station as its own Ceph RGW user under the bucket
policy ``infra/policies/rgw-bucket-policy.json`` (docs/deployment.md §4.6).

RGW decides these requests itself: no evaluator of ours stands in between. The story: the storage
admin (the bucket's owner) initialises the vault in a fresh bucket, gives it a default retention and
applies the policy; a station with its own RGW user ingests a device (a photo, a video, a recording
bigger than one part) with ``--wipe``; then, with the station's credentials and plain boto3, RGW
refuses it every read of the content it stored, every delete, a legal hold, a governance bypass, a
lock change and an ACL that would have made the content public; the objects are all still there, and
the investigator reads them back byte for byte.

The other tests pin the RGW 16 behaviours the document is built on (docs/deployment.md §4.6): without
its Deny statements RGW's object ACLs let a station read and unlock what it wrote, and the bucket's
owner cannot read it; the object-lock and ``If-None-Match`` condition keys are never set;
``aws:SecureTransport`` is set only over HTTPS; ``NotAction`` is not honoured in a Deny; a policy
naming an action RGW does not know is refused whole.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner, Result

from cli.commands import app
from evidence import layout
from storage.vault import ID_KEY_FILE, IDENTITY_FILE, RECIPIENT_FILE
from tests.factories import DEVICE_FOLDER, make_jpeg, make_mp4, random_file
from tests.rgw import RgwServer, unique_bucket

POLICY = Path(__file__).resolve().parent.parent / "infra" / "policies" / "rgw-bucket-policy.json"
MiB = 1024 * 1024
SERIAL = "BWC-RGW01"
INVESTIGATOR = "dc-2093"
runner = CliRunner()

pytestmark = pytest.mark.slow


# -- the deployment, as docs/deployment.md §4.6 sets it up -----------------------------------------


def deployed_policy(bucket: str, **users: str) -> str:
    """The project's document with its placeholders replaced, as a deployment does with sed:
    ``station``, ``investigator``, ``admin`` and ``break_glass`` name RGW user ids."""
    text = POLICY.read_text(encoding="utf-8").replace("arn:aws:s3:::evidence-vault", f"arn:aws:s3:::{bucket}")
    placeholders = {
        "station": "evidence-ingest-station",
        "investigator": "evidence-investigator",
        "admin": "evidence-storage-admin",
        "break_glass": "evidence-break-glass",
    }
    for role, uid in users.items():
        text = text.replace(f"arn:aws:iam:::user/{placeholders[role]}", f"arn:aws:iam:::user/{uid}")
    left = [
        uid for uid in ("evidence-vault", *placeholders.values()) if uid not in users.values() and uid in text
    ]
    assert not left, f"placeholders left: {left}"
    return text


def owner_id(rgw: RgwServer) -> str:
    """The RGW user id of the test server's bucket owner, who plays the storage admin."""
    return str(rgw.client().list_buckets()["Owner"]["ID"])


def new_uid(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:10]}"  # RGW is not reset between tests


class Machines:
    """The three machines of a deployment, each with its own data folder and RGW credentials."""

    def __init__(self, rgw: RgwServer, root: Path, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rgw, self.root, self.bucket, self.monkeypatch = rgw, root, bucket, monkeypatch
        self.credentials: dict[str, tuple[str, str]] = {"admin": (rgw.access_key, rgw.secret_key)}
        for name in ("admin", "station", "investigator"):
            (root / name).mkdir()

    def become(self, role: str) -> None:
        """The environment of ``role``'s machine: its folder, its S3 credentials, the vault."""
        for name, value in self.rgw.environment().items():
            self.monkeypatch.setenv(name, value)
        access_key, secret_key = self.credentials[role]
        self.monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
        self.monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
        for name, value in {
            "EVIDENCE_DATA_DIR": str(self.root / role),
            "EVIDENCE_VAULT_URL": f"s3://{self.bucket}",
            "EVIDENCE_STATION_ID": f"{role}-host",
            "EVIDENCE_SETTLE_SECONDS": "0",
            "EVIDENCE_PART_SIZE": str(5 * MiB),
        }.items():
            self.monkeypatch.setenv(name, value)

    def s3(self, role: str) -> Any:
        """A fresh plain boto3 client as ``role``. Fresh for each refused request: after RGW refuses a
        request that carries a body, the next request on that connection gets no answer until the
        client's read timeout (botocore then retries it, and a PUT is stored twice)."""
        access_key, secret_key = self.credentials[role]
        return self.rgw.client(access_key, secret_key, request_checksum_calculation="when_required")


def ok(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def refused_by_rgw(call: Callable[..., Any], **params: Any) -> bool:
    """``call(**params)`` was refused by the server with 403 (HEAD answers carry no error code)."""
    try:
        call(**params)
    except ClientError as err:
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status == 403 and err.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def dock(device: Path) -> dict[str, bytes]:
    """A photo and a video (each stored with a thumbnail) and a recording of two upload parts."""
    folder = device / DEVICE_FOLDER
    make_jpeg(folder / "IMG_0001.JPG", size=(320, 240), serial=SERIAL, seed=91)
    make_mp4(folder / "VID_0001.MP4", seed=92)
    random_file(device / "long-recording.bin", 5 * MiB + 300 * 1024, seed=93)
    return {str(p.relative_to(device)): p.read_bytes() for p in sorted(device.rglob("*")) if p.is_file()}


# -- the station's ingest, and what RGW refuses it -------------------------------------------------


@pytest.mark.slow
def test_station_ingests_as_its_own_rgw_user_and_rgw_refuses_it_reads_and_deletes(
    rgw: RgwServer, prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = unique_bucket()
    machines = Machines(rgw, tmp_path, bucket, monkeypatch)
    station_uid, investigator_uid = new_uid("station"), new_uid("investigator")
    machines.credentials["station"] = rgw.create_user(station_uid)
    machines.credentials["investigator"] = rgw.create_user(investigator_uid)

    # -- the storage admin: the bucket with its default retention and policy, keys, the vault ----------
    # In this order: once `vault init` has blocked public policies, RGW 16 refuses any policy with an
    # Allow in it, whoever it names (docs/deployment.md §4.6).
    machines.become("admin")
    admin = machines.s3("admin")
    admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    # RGW 16 drops the lock headers of a multipart upload: the bucket's default retention locks it,
    # and the station needs no s3:PutObjectRetention (denied: RGW cannot bound it)
    admin.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 31}},
        },
    )
    admin.put_bucket_policy(
        Bucket=bucket,
        Policy=deployed_policy(
            bucket,
            station=station_uid,
            investigator=investigator_uid,
            admin=owner_id(rgw),
            break_glass=new_uid("break-glass"),
        ),
    )
    ok("keys", "init")
    ok("vault", "init")
    ok("vault", "check")
    admin_keys = tmp_path / "admin" / "keys"
    ok("keys", "station-bundle", str(tmp_path / "station" / "keys"))
    investigator_keys = tmp_path / "investigator" / "keys"
    investigator_keys.mkdir()
    for name in (IDENTITY_FILE, RECIPIENT_FILE, ID_KEY_FILE):
        shutil.copyfile(admin_keys / name, investigator_keys / name)

    # -- the station: its own signing key, then a device docked and wiped -----------------------------
    machines.become("station")
    ok("keys", "init")
    assert not (tmp_path / "station" / "keys" / IDENTITY_FILE).exists()
    device = tmp_path / "dock" / SERIAL
    originals = dock(device)
    report = json.loads(ok("ingest", str(device), "--wipe", "--device", SERIAL, "--json").stdout)
    assert report["rejected"] == [] and report["duplicates"] == []
    ingested = {entry["source_path"]: entry for entry in report["ingested"]}
    assert set(ingested) == set(originals)
    assert all(entry["wiped"] for entry in ingested.values())
    assert [p for p in device.rglob("*") if p.is_file()] == [], "every verified file is wiped"

    # what it stored, as the station may read it: its manifests (items/ is readable to it)
    station = machines.s3("station")
    manifests = {
        path: json.loads(
            station.get_object(Bucket=bucket, Key=layout.manifest_key(entry["evidence_id"]))["Body"].read()
        )
        for path, entry in ingested.items()
    }
    recording = manifests["long-recording.bin"]
    stored = [m["content"] for m in manifests.values()] + [
        m["thumbnail"] for m in manifests.values() if m["thumbnail"]
    ]
    assert len(stored) == 5 and all(o["key"].startswith("objects/") for o in stored)
    versions_before = {
        (v["Key"], v["VersionId"]) for v in admin.list_object_versions(Bucket=bucket).get("Versions", [])
    }

    # docking the same files again: duplicates, found and checked (their locks read, not their bytes)
    redock = tmp_path / "redock" / SERIAL
    for path, data in originals.items():
        (redock / path).parent.mkdir(parents=True, exist_ok=True)
        (redock / path).write_bytes(data)
    again = json.loads(ok("ingest", str(redock), "--device", SERIAL, "--json").stdout)
    assert again["ingested"] == [] and len(again["duplicates"]) == len(originals)

    # -- RGW refuses the station what its policy does not grant ---------------------------------------
    for obj in stored:
        key, version = obj["key"], obj["version_id"]
        # a positive control: the station's credentials work, for what the ingest needed
        lock = machines.s3("station").get_object_retention(Bucket=bucket, Key=key, VersionId=version)
        assert lock["Retention"]["Mode"] == "GOVERNANCE"
        for params in ({"Key": key}, {"Key": key, "VersionId": version}):
            assert refused_by_rgw(machines.s3("station").get_object, Bucket=bucket, **params), params
            assert refused_by_rgw(machines.s3("station").head_object, Bucket=bucket, **params), params
            assert refused_by_rgw(machines.s3("station").delete_object, Bucket=bucket, **params), params
        versioned = {"Bucket": bucket, "Key": key, "VersionId": version}
        assert refused_by_rgw(
            machines.s3("station").delete_object, **versioned, BypassGovernanceRetention=True
        )
        assert refused_by_rgw(machines.s3("station").get_object, **versioned, Range="bytes=0-15"), (
            "not even a few bytes"
        )
    key, version = recording["content"]["key"], recording["content"]["version_id"]
    versioned = {"Bucket": bucket, "Key": key, "VersionId": version}
    soon = datetime.now(UTC) + timedelta(days=1)
    later = datetime.now(UTC) + timedelta(days=3650)
    assert refused_by_rgw(
        machines.s3("station").put_object_legal_hold, **versioned, LegalHold={"Status": "ON"}
    )
    assert refused_by_rgw(
        machines.s3("station").put_object_retention,
        **versioned,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon},
        BypassGovernanceRetention=True,
    ), "a governance bypass"
    assert refused_by_rgw(
        machines.s3("station").put_object_retention,
        **versioned,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later},
    ), "a lock change"
    assert refused_by_rgw(machines.s3("station").put_object_acl, Bucket=bucket, Key=key, ACL="public-read"), (
        "content made public, to be read anonymously"
    )
    assert refused_by_rgw(machines.s3("station").put_object, Bucket=bucket, Key="links/x.json", Body=b"{}"), (
        "outside the vault's prefixes"
    )

    # -- everything is still there, locked, unchanged: the investigator reads it back ------------------
    after = admin.list_object_versions(Bucket=bucket)
    assert not after.get("DeleteMarkers"), "no delete marker hides anything"
    assert {(v["Key"], v["VersionId"]) for v in after.get("Versions", [])} == versions_before
    investigator = machines.s3("investigator")
    for obj in stored:
        head = admin.head_object(Bucket=bucket, Key=obj["key"], VersionId=obj["version_id"])
        assert head["ObjectLockMode"] == "GOVERNANCE", obj["key"]
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC), obj["key"]
        assert head.get("ObjectLockLegalHoldStatus") != "ON"
        body = investigator.get_object(Bucket=bucket, Key=obj["key"], VersionId=obj["version_id"])["Body"]
        assert hashlib.sha256(body.read()).hexdigest() == obj["sha256"], obj["key"]

    machines.become("investigator")
    (tmp_path / "investigator" / "users.toml").write_text(
        f'[users.{INVESTIGATOR}]\nrole = "investigator"\n', encoding="utf-8"
    )
    ok("keys", "init")  # the workstation's own signing key, for the custody record of the read
    out = tmp_path / "recording.bin"
    ok("--user", INVESTIGATOR, "get", ingested["long-recording.bin"]["evidence_id"], "--out", str(out))
    assert out.read_bytes() == originals["long-recording.bin"]


# -- the RGW 16 behaviours the document is built on -------------------------------------------------


@pytest.fixture
def scratch(rgw: RgwServer) -> tuple[RgwServer, str, str, tuple[str, str]]:
    """A fresh Object-Locked bucket of the owner's, and a new RGW user: (server, bucket, uid, keys)."""
    bucket = unique_bucket("policy")
    rgw.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    uid = new_uid("writer")
    return rgw, bucket, uid, rgw.create_user(uid)


def put_policy(rgw: RgwServer, bucket: str, *statements: dict[str, Any]) -> None:
    document = {"Version": "2012-10-17", "Statement": list(statements)}
    rgw.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))


def test_rgw_lets_the_writer_of_an_object_read_and_unlock_it_unless_the_policy_denies_it(
    scratch: tuple[RgwServer, str, str, tuple[str, str]],
) -> None:
    """Why the document pairs every Allow with Denies: RGW makes whoever wrote an object its owner,
    and its object ACL then lets the writer read it, hold it and bypass its governance lock, with no
    grant in any policy; and the bucket's owner cannot read it without one."""
    rgw, bucket, uid, (access_key, secret_key) = scratch
    put_policy(
        rgw,
        bucket,
        {
            "Sid": "WriteOnly",
            "Effect": "Allow",
            "Principal": {"AWS": [f"arn:aws:iam:::user/{uid}"]},
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/objects/*",
        },
    )

    def writer() -> Any:
        return rgw.client(access_key, secret_key, request_checksum_calculation="when_required")

    until = datetime.now(UTC) + timedelta(days=31)
    stored = writer().put_object(
        Bucket=bucket,
        Key="objects/a",
        Body=b"ciphertext",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )
    versioned = {"Bucket": bucket, "Key": "objects/a", "VersionId": stored["VersionId"]}
    assert writer().get_object(**versioned)["Body"].read() == b"ciphertext"
    writer().put_object_legal_hold(**versioned, LegalHold={"Status": "ON"})
    writer().put_object_legal_hold(**versioned, LegalHold={"Status": "OFF"})
    writer().put_object_retention(
        **versioned,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(days=1)},
        BypassGovernanceRetention=True,
    )
    assert refused_by_rgw(writer().delete_object, **versioned), "deletes are the bucket's"
    assert refused_by_rgw(rgw.client().get_object, **versioned), "the bucket owner cannot read it"


def test_rgw_sets_no_object_lock_or_if_none_match_condition_keys(
    scratch: tuple[RgwServer, str, str, tuple[str, str]],
) -> None:
    """Why the document has no lock bounds and no create-once rule: a Deny conditioned on a lock key
    never applies (here: COMPLIANCE for ten years is stored), and one on ``s3:if-none-match`` being
    absent applies to every put, If-None-Match or not."""
    rgw, bucket, uid, (access_key, secret_key) = scratch
    principal = {"AWS": [f"arn:aws:iam:::user/{uid}"]}
    objects = f"arn:aws:s3:::{bucket}/objects/*"
    put_policy(
        rgw,
        bucket,
        {
            "Sid": "Write",
            "Effect": "Allow",
            "Principal": principal,
            "Action": "s3:PutObject",
            "Resource": objects,
        },
        {
            "Sid": "NoComplianceLocks",
            "Effect": "Deny",
            "Principal": principal,
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {"StringEquals": {"s3:object-lock-mode": "COMPLIANCE"}},
        },
        {
            "Sid": "NoLongLocks",
            "Effect": "Deny",
            "Principal": principal,
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {"NumericGreaterThan": {"s3:object-lock-remaining-retention-days": "32"}},
        },
        {
            "Sid": "CreateOnceNeedsIfNoneMatch",
            "Effect": "Deny",
            "Principal": principal,
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/objects/once/*",
            "Condition": {"Null": {"s3:if-none-match": "true"}},
        },
    )

    def writer() -> Any:
        return rgw.client(access_key, secret_key, request_checksum_calculation="when_required")

    # stored, both: the Denies did not apply (COMPLIANCE for a minute only: a scratch object must expire)
    minute = datetime.now(UTC) + timedelta(minutes=1)
    writer().put_object(
        Bucket=bucket,
        Key="objects/c",
        Body=b"x",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=minute,
    )
    long_lock = datetime.now(UTC) + timedelta(days=400)
    writer().put_object(
        Bucket=bucket,
        Key="objects/g",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=long_lock,
    )
    # and this one refused, though it carries If-None-Match
    assert refused_by_rgw(
        writer().put_object, Bucket=bucket, Key="objects/once/a", Body=b"x", IfNoneMatch="*"
    )


def test_rgw_policy_language_as_the_document_uses_it(
    scratch: tuple[RgwServer, str, str, tuple[str, str]],
) -> None:
    """``aws:SecureTransport`` exists only over HTTPS (so the document denies with BoolIfExists, where
    AWS's ``Bool false`` never matches); NotAction in a Deny is not honoured (so the document lists
    every action it denies); NotResource and NotPrincipal are; a policy naming an action RGW 16 does
    not know is refused whole."""
    rgw, bucket, uid, (access_key, secret_key) = scratch
    principal = {"AWS": [f"arn:aws:iam:::user/{uid}"]}
    everything = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    allow = {
        "Sid": "Write",
        "Effect": "Allow",
        "Principal": principal,
        "Action": ["s3:PutObject", "s3:GetObject"],
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }

    def writer(https: bool = True) -> Any:
        if https:
            return rgw.client(access_key, secret_key, request_checksum_calculation="when_required")
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=rgw.http_url,
            region_name=rgw.region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
        )

    put_policy(rgw, bucket, allow)
    writer().put_object(Bucket=bucket, Key="items/a", Body=b"x")
    for condition, plain_http_refused in (
        ({"Bool": {"aws:SecureTransport": "false"}}, False),
        ({"BoolIfExists": {"aws:SecureTransport": "false"}}, True),
    ):
        deny = {"Sid": "Tls", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": everything}
        put_policy(rgw, bucket, allow, deny | {"Condition": condition})
        assert not refused_by_rgw(writer().get_object, Bucket=bucket, Key="items/a")
        assert refused_by_rgw(writer(https=False).get_object, Bucket=bucket, Key="items/a") is (
            plain_http_refused
        ), condition

    stored = writer().put_object(
        Bucket=bucket,
        Key="objects/a",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1),
    )
    versioned = {"Bucket": bucket, "Key": "objects/a", "VersionId": stored["VersionId"]}
    put_policy(
        rgw,
        bucket,
        allow,
        {
            "Sid": "OnlyWriteAndRead",
            "Effect": "Deny",
            "Principal": principal,
            "NotAction": ["s3:PutObject", "s3:GetObject"],
            "Resource": everything,
        },
        {
            "Sid": "ReadOnlyItems",
            "Effect": "Deny",
            "Principal": principal,
            "Action": "s3:GetObject",
            "NotResource": f"arn:aws:s3:::{bucket}/items/*",
        },
    )
    # NotAction: the writer still holds the version it wrote, which the Deny should have refused
    assert not refused_by_rgw(writer().put_object_legal_hold, **versioned, LegalHold={"Status": "OFF"})
    assert refused_by_rgw(writer().get_object, Bucket=bucket, Key="objects/a"), "NotResource holds"
    with pytest.raises(ClientError) as unknown:
        rgw.client().put_bucket_policy(
            Bucket=bucket,
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        allow,
                        {
                            "Sid": "AwsOnly",
                            "Effect": "Deny",
                            "Principal": principal,
                            "Action": "s3:PutEncryptionConfiguration",
                            "Resource": f"arn:aws:s3:::{bucket}",
                        },
                    ],
                }
            ),
        )
    assert unknown.value.response["Error"]["Code"] == "InvalidArgument"
    put_policy(
        rgw,
        bucket,
        allow,
        {
            "Sid": "Outsiders",
            "Effect": "Deny",
            "NotPrincipal": principal,
            "Action": "s3:*",
            "Resource": everything,
        },
    )
    # the owner too (and so, here, nobody may change this policy again)
    assert refused_by_rgw(rgw.client().get_object, Bucket=bucket, Key="items/a")


def test_lock_reads_of_a_version_without_a_lock_answer_none_on_rgw(rgw: RgwServer) -> None:
    """RGW 16 answers GetObjectRetention and GetObjectLegalHold of a version without a retention or a
    hold with 404 ``ObjectLockConfigurationNotFoundError`` (S3: ``NoSuchObjectLockConfiguration``).
    That is "no lock", not "no such object": a multipart upload whose lock RGW dropped is then locked
    with PutObjectRetention, not reported missing."""
    from storage.s3 import S3Store

    bucket = unique_bucket("locks")
    client = rgw.client(request_checksum_calculation="when_required")
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    stored = client.put_object(Bucket=bucket, Key="objects/ab/unlocked", Body=b"x")
    store = S3Store(bucket, client=client)
    assert store.get_retention("objects/ab/unlocked", stored["VersionId"]) is None
    assert store.get_legal_hold("objects/ab/unlocked", stored["VersionId"]) is False


def test_rgw_refuses_any_allow_once_public_policies_are_blocked(
    scratch: tuple[RgwServer, str, str, tuple[str, str]],
) -> None:
    """Why the policy goes in before `vault init`: with BlockPublicPolicy, RGW 16 takes every Allow
    for a public grant, even one naming a single user, and refuses the policy; a Deny-only policy goes
    in, and a policy already in place keeps granting (RestrictPublicBuckets does not stop it)."""
    rgw, bucket, uid, (access_key, secret_key) = scratch
    named = {"AWS": [f"arn:aws:iam:::user/{uid}"]}
    allow = {
        "Sid": "Write",
        "Effect": "Allow",
        "Principal": named,
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    deny = allow | {"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteObject"}
    put_policy(rgw, bucket, allow)
    rgw.client().put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": False,  # True would refuse every PutObject on RGW 16
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    writer = rgw.client(access_key, secret_key, request_checksum_calculation="when_required")
    writer.put_object(Bucket=bucket, Key="objects/a", Body=b"x")  # the policy in place still grants
    policy = json.dumps({"Version": "2012-10-17", "Statement": [allow]})
    assert refused_by_rgw(rgw.client().put_bucket_policy, Bucket=bucket, Policy=policy)
    put_policy(rgw, bucket, deny)
