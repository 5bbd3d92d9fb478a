"""The whole life of evidence against a real S3 endpoint: Ceph RGW over HTTPS (``tests.rgw``),
reached the way a deployed station reaches AWS, MinIO or Ceph (``AWS_ENDPOINT_URL_S3``,
``AWS_CA_BUNDLE``; KMS, the second keyring, on moto's server through ``AWS_ENDPOINT_URL_KMS``). The
same story on moto's S3 proved nothing RGW does not, for a minute of the suite's CPU, and is no longer
told (``Endpoint`` still takes ``moto`` for a run by hand). One story, in the order people live it, through the
``evidence`` command (ingest, retention and fixity as Prefect flows): a storage admin sets up keys and
the vault; an officer docks a camera and it is wiped; items are linked by hand and from a
records-system feed; an investigator lists, reads, previews and exports them and holds the trial's
evidence; retention runs on a simulated clock; the hold is lifted; the chains of custody verify, and a
record altered behind the program's back is found. Claims about storage are checked against the
bucket itself, with plain boto3 against the same endpoint."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bagit
import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError
from PIL import Image
from typer.testing import CliRunner, Result

from cli.commands import app
from evidence import layout
from evidence.errors import AccessDenied, IntegrityError, NotFound
from storage.vault import IDENTITY_FILE
from tests.conftest import PROJECT_ROOT
from tests.factories import DEVICE_FOLDER, make_jpeg, make_mp4, random_file
from tests.rgw import unique_bucket
from tests.test_retention_flow import docked_days_ago

PREFIX = "vault"
MiB = 1024 * 1024
SEGMENT = 1 * MiB  # the default plaintext segment: a range across 1 MiB crosses two segments
SERIAL = "BWC-E2E01"
OFFICER_ID = "PC-4471"
TRIAL = "KNT-2026-000202"
DA_CASE = "KNT-2026-000101"
USERS = """
[users.pc-4471]
role = "officer"
[users.dc-2093]
role = "investigator"
[users.sa-1]
role = "storage-admin"
"""
OFFICER, INVESTIGATOR, ADMIN = "pc-4471", "dc-2093", "sa-1"
NO_LOCK_CODES = {"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"}
runner = CliRunner()

pytestmark = pytest.mark.slow


# -- the endpoint, the command and the bucket -------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    server: str
    """``moto`` or ``rgw``"""
    url: str
    bucket: str
    """A bucket of the story's own: RGW keeps every bucket of the run."""


@pytest.fixture(params=["rgw"])
def s3_endpoint(
    request: pytest.FixtureRequest, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> Endpoint:
    """S3 on a clean moto server or on Ceph RGW over HTTPS, and KMS on the moto server, named through
    the per-service variables a deployment would set."""
    import requests

    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    url = moto_server
    if request.param == "rgw":
        rgw = request.getfixturevalue("rgw_env")
        url = rgw.https_url
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_server)
    return Endpoint(request.param, url, unique_bucket("force-evidence"))


def run(*args: str, user: str | None = None) -> Result:
    return runner.invoke(app, (["--user", user] if user else []) + list(args))


def ok(*args: str, user: str | None = None) -> Result:
    result = run(*args, user=user)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def ok_json(*args: str, user: str | None = None) -> Any:
    return json.loads(ok(*args, "--json", user=user).stdout)


class Bucket:
    """The vault's bucket as anyone with credentials sees it: plain boto3, no project code."""

    def __init__(self, name: str) -> None:
        self.name = name
        # a session of its own: boto3's default one keeps the credentials it first found (moto's)
        self.s3 = boto3.session.Session().client(
            "s3",
            verify=os.environ.get("AWS_CA_BUNDLE") or None,  # RGW's own certificate, over HTTPS
            # a body's checksum in a header, not in an aws-chunked trailer: RGW 16 answers a PUT with
            # a trailer over HTTPS with MissingContentLength
            config=botocore.config.Config(request_checksum_calculation="when_required"),
        )

    def key(self, vault_key: str) -> str:
        return f"{PREFIX}/{vault_key}"

    def versions(self, vault_prefix: str = "") -> list[dict[str, Any]]:
        """Every version and delete marker under the prefix (``IsDeleteMarker`` added)."""
        found: list[dict[str, Any]] = []
        for page in self.s3.get_paginator("list_object_versions").paginate(
            Bucket=self.name, Prefix=self.key(vault_prefix)
        ):
            found += [{**v, "IsDeleteMarker": False} for v in page.get("Versions", [])]
            found += [{**m, "IsDeleteMarker": True} for m in page.get("DeleteMarkers", [])]
        return found

    def version_set(self, vault_prefix: str = "") -> set[tuple[str, str]]:
        return {(v["Key"], v["VersionId"]) for v in self.versions(vault_prefix)}

    def get(self, vault_key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.name, Key=self.key(vault_key))["Body"].read())

    def head(self, version: dict[str, Any]) -> dict[str, Any]:
        return dict(self.s3.head_object(Bucket=self.name, Key=version["Key"], VersionId=version["VersionId"]))

    def legal_hold(self, version: dict[str, Any]) -> str:
        """``ON``, ``OFF``, or ``unset`` for a version no hold was ever put on (moto answers with no
        status; S3 with NoSuchObjectLockConfiguration, RGW with ObjectLockConfigurationNotFoundError)."""
        try:
            answer = self.s3.get_object_legal_hold(
                Bucket=self.name, Key=version["Key"], VersionId=version["VersionId"]
            )
        except ClientError as err:
            if err.response["Error"]["Code"] in NO_LOCK_CODES:
                return "unset"
            raise
        return str(answer.get("LegalHold", {}).get("Status", "unset"))

    def manifest(self, evidence_id: str) -> dict[str, Any]:
        return dict(json.loads(self.get(layout.manifest_key(evidence_id))))

    def item_keys(self, manifest: dict[str, Any]) -> list[str]:
        """The vault keys of an item's stored objects: manifest, content and (if any) thumbnail."""
        keys = [layout.manifest_key(manifest["evidence_id"]), manifest["content"]["key"]]
        if manifest.get("thumbnail"):
            keys.append(manifest["thumbnail"]["key"])
        return keys

    def item_versions(self, manifest: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            v for key in self.item_keys(manifest) for v in self.versions(key) if v["Key"] == self.key(key)
        ]


# -- a camera docked after its shift ------------------------------------------------------------------


def dock_camera(root: Path, recent: datetime) -> dict[str, bytes]:
    """A body-worn camera as it mounts: three photos and a video from the hours around ``recent``, and
    a long recording in an unknown format, bigger than one upload part (a multipart upload) and
    spanning several encryption segments. Returns each file's bytes by its path on the device."""
    folder = root / DEVICE_FOLDER
    make_jpeg(folder / "IMG_0001.JPG", size=(320, 240), serial=SERIAL, taken=recent, seed=61)
    make_jpeg(
        folder / "IMG_0002.JPG", size=(320, 240), serial=SERIAL, taken=recent - timedelta(hours=4), seed=62
    )
    make_jpeg(
        folder / "IMG_0003.JPG", size=(320, 240), serial=SERIAL, taken=recent + timedelta(minutes=1), seed=63
    )
    make_mp4(folder / "VID_0001.MP4", creation_time=recent + timedelta(minutes=2), seed=64)
    random_file(root / "long-recording.bin", 5 * MiB + 300 * 1024, seed=65)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def feed_csv(path: Path, taken: datetime) -> Path:
    """The records system's export: one domestic-abuse incident attended by the officer at ``taken``."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["incident_ref", "officer_id", "start", "end", "category"])
        writer.writerow(
            [
                DA_CASE,
                OFFICER_ID,
                (taken - timedelta(minutes=10)).isoformat(),
                (taken + timedelta(minutes=20)).isoformat(),
                "domestic-abuse",
            ]
        )
    return path


# -- the story -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_life_of_evidence_against_an_s3_endpoint(
    s3_endpoint: Endpoint, prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    story_began = datetime.now(UTC)  # the worker's Prefect API also holds the other server's story
    data_dir = tmp_path / "station"
    data_dir.mkdir()
    (data_dir / "users.toml").write_text(USERS, encoding="utf-8")
    (data_dir / "devices.toml").write_text(
        f'[devices."{SERIAL}"]\nofficer = "{OFFICER_ID}"\ntype = "body-worn"\n', encoding="utf-8"
    )
    kms_key = boto3.client("kms").create_key(Description="evidence data keys")["KeyMetadata"]["Arn"]
    for name, value in {
        "EVIDENCE_DATA_DIR": str(data_dir),
        "EVIDENCE_VAULT_URL": f"s3://{s3_endpoint.bucket}/{PREFIX}",
        "EVIDENCE_KMS_KEY_ID": kms_key,
        "EVIDENCE_STATION_ID": "dock-e2e",
        "EVIDENCE_SETTLE_SECONDS": "0",
        "EVIDENCE_PART_SIZE": str(5 * MiB),
    }.items():
        monkeypatch.setenv(name, value)
    bucket = Bucket(s3_endpoint.bucket)
    assert bucket.s3.meta.endpoint_url == s3_endpoint.url

    # -- a storage admin sets up keys and the bucket -------------------------------------------------
    created = ok("keys", "init").stdout
    for name in ("vault-identity.key", "vault-recipient.pub", "vault-id.key", "signing.key"):
        assert name in created
    assert "created" in ok("vault", "init").stdout
    assert bucket.s3.get_bucket_versioning(Bucket=bucket.name)["Status"] == "Enabled"
    lock = bucket.s3.get_object_lock_configuration(Bucket=bucket.name)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    blocked = bucket.s3.get_public_access_block(Bucket=bucket.name)["PublicAccessBlockConfiguration"]
    # on RGW 16, BlockPublicAcls refuses every PutObject: the vault keeps public ACLs out otherwise
    expected_off = {"BlockPublicAcls"} if s3_endpoint.server == "rgw" else set()
    assert {flag for flag, on in blocked.items() if not on} == expected_off
    descriptor = json.loads(bucket.get(layout.VAULT_DESCRIPTOR_KEY))
    assert sorted(r.split(":")[0] for r in descriptor["recipients"]) == ["aws-kms", "x25519"]
    ok("vault", "check")

    # -- an officer docks the camera: everything stored, verified, locked; the device wiped ---------------
    # The shift was 33 days ago and the dock 30 days ago (the vault's clock is set back for it): so
    # the policy at the real date lets the footage go when the story comes to retention, as a simulated
    # clock alone never may.
    device = tmp_path / "dock" / SERIAL
    shift = datetime.now(UTC).replace(microsecond=0) - timedelta(days=33)
    originals = dock_camera(device, shift)
    with docked_days_ago(30):
        doc = ok_json("ingest", str(device), "--wipe")
    assert doc["duplicates"] == [] and doc["rejected"] == []
    by_path = {entry["source_path"]: entry for entry in doc["ingested"]}
    assert set(by_path) == set(originals)
    ids = {path: entry["evidence_id"] for path, entry in by_path.items()}
    for path, entry in by_path.items():
        assert entry["wiped"] is True, path
        assert entry["size"] == len(originals[path])
        assert entry["sha256"] == hashlib.sha256(originals[path]).hexdigest()
    assert [p for p in device.rglob("*") if p.is_file()] == [], "every verified file is wiped"

    plain, da, held = (ids[f"{DEVICE_FOLDER}/IMG_000{n}.JPG"] for n in (1, 2, 3))
    video, recording = ids[f"{DEVICE_FOLDER}/VID_0001.MP4"], ids["long-recording.bin"]
    manifests = {evidence_id: bucket.manifest(evidence_id) for evidence_id in ids.values()}
    for manifest in manifests.values():  # both keyrings wrap every item key
        assert sorted(r["type"] for r in manifest["recipients"]) == ["aws-kms", "x25519"]
        assert manifest["device_serial"] == SERIAL and manifest["officer_id"] == OFFICER_ID
    assert manifests[recording]["thumbnail"] is None and manifests[video]["thumbnail"] is not None

    # in the bucket: every object of every item, one version each, under a GOVERNANCE lock for 31 days
    stored = {evidence_id: bucket.item_versions(m) for evidence_id, m in manifests.items()}
    for evidence_id, versions in stored.items():
        assert len(versions) == len(bucket.item_keys(manifests[evidence_id])), evidence_id
        ingested = datetime.fromisoformat(manifests[evidence_id]["ingested_at"])
        for version in versions:
            head = bucket.head(version)
            assert head["ObjectLockMode"] == "GOVERNANCE", version["Key"]
            days = (head["ObjectLockRetainUntilDate"] - ingested) / timedelta(days=1)
            assert 30 < days <= 31, version["Key"]
            assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC), "still in force"
    content = manifests[recording]["content"]
    assert bucket.head(bucket.versions(content["key"])[0])["ETag"].endswith('-2"'), "a two-part upload"
    assert_no_original_bytes_in_bucket(bucket, originals)

    # docking the same files again stores nothing new
    versions_before = bucket.version_set()
    redock = tmp_path / "redock" / SERIAL
    for path, data in originals.items():
        (redock / path).parent.mkdir(parents=True, exist_ok=True)
        (redock / path).write_bytes(data)
    again = ok_json("ingest", str(redock))
    assert again["ingested"] == [] and sorted(e["evidence_id"] for e in again["duplicates"]) == sorted(
        ids.values()
    )
    assert bucket.version_set() == versions_before

    # -- links: the officer by hand, the records system's feed by officer and time -----------------------
    linked = ok_json(
        "link", held, video, recording, "--incident", TRIAL, "--reason", "attended the call", user=OFFICER
    )
    assert sorted(linked["changed"]) == sorted([held, video, recording])
    listed = {
        i["evidence_id"]: i
        for i in ok_json("items", "list", "--officer", OFFICER_ID, user=INVESTIGATOR)["items"]
    }
    assert set(listed) == set(ids.values())
    feed = ok_json(
        "link-feed", str(feed_csv(tmp_path / "incidents.csv", _recorded(listed[da]))), user=INVESTIGATOR
    )
    assert [(x["evidence_id"], x["incident"]) for x in feed["linked"]] == [(da, DA_CASE)]
    assert feed["undated"] == [recording] and feed["ambiguous"] == [] and feed["rejected_rows"] == []

    shown = ok_json("incident", "show", TRIAL, user=INVESTIGATOR)
    assert shown["incident"] == TRIAL
    assert sorted(i["evidence_id"] for i in shown["items"]) == sorted([held, video, recording])
    assert all(i["officer_id"] == OFFICER_ID and i["device_serial"] == SERIAL for i in shown["items"])
    da_shown = ok_json("incident", "show", DA_CASE, user=INVESTIGATOR)["items"]
    assert [(i["evidence_id"], i["categories"]) for i in da_shown] == [(da, ["domestic-abuse"])]
    [link_event] = [e for e in custody_doc(da)["events"] if e["type"] == "link"]
    assert (link_event["actor"], link_event["details"]["source"]) == (INVESTIGATOR, "feed")
    assert link_event["details"]["category"] == "domestic-abuse"

    # -- an investigator reads items back: verified, byte for byte ------------------------------------
    out = tmp_path / "exhibit-1.mp4"
    ok("get", video, "--out", str(out), "--purpose", "interview preparation", user=INVESTIGATOR)
    assert out.read_bytes() == originals[f"{DEVICE_FOLDER}/VID_0001.MP4"]
    access = custody_doc(video)["events"][-1]
    assert (access["type"], access["actor"], access["details"]["action"]) == ("access", INVESTIGATOR, "get")

    # on a workstation with KMS decrypt rights and no X25519 identity, KMS alone opens the item
    identity = data_dir / "keys" / IDENTITY_FILE
    identity.rename(tmp_path / "identity-elsewhere")
    try:
        ok("get", held, "--out", str(tmp_path / "held.jpg"), user=INVESTIGATOR)
    finally:
        (tmp_path / "identity-elsewhere").rename(identity)
    assert (tmp_path / "held.jpg").read_bytes() == originals[f"{DEVICE_FOLDER}/IMG_0003.JPG"]

    # a range across a segment boundary, and the last byte: only those plaintext bytes
    long = originals["long-recording.bin"]
    straddle = run("get", recording, "--range", f"{SEGMENT - 5}-{SEGMENT + 4}", user=INVESTIGATOR)
    assert straddle.exit_code == 0, straddle.output
    assert straddle.stdout_bytes == long[SEGMENT - 5 : SEGMENT + 5]
    tail = tmp_path / "tail.bin"
    ok("get", recording, "--range", "-1", "--out", str(tail), user=INVESTIGATOR)
    assert tail.read_bytes() == long[-1:]
    ranged = custody_doc(recording)["events"][-1]
    assert ranged["details"]["range"] == f"{len(long) - 1}-{len(long) - 1}"

    # previews of the trial's items
    previews = tmp_path / "previews"
    ok("thumbs", "--incident", TRIAL, "--out", str(previews), user=INVESTIGATOR)
    assert sorted(p.name for p in previews.iterdir()) == sorted(f"{i}.jpg" for i in (held, video))
    for preview in previews.iterdir():
        with Image.open(preview) as image:
            assert image.format == "JPEG" and max(image.size) <= 320

    # -- the trial's evidence exported as a BagIt bag ---------------------------------------------------
    bag_dir = tmp_path / "bag"
    exported = ok_json(
        "export", "--incident", TRIAL, "--purpose", "CPS file", "--out", str(bag_dir), user=INVESTIGATOR
    )
    bag = bagit.Bag(str(bag_dir))
    bag.validate()
    assert bag.info["External-Identifier"] == TRIAL and bag.info["Evidence-Item-Count"] == "3"
    source_of = {evidence_id: path for path, evidence_id in ids.items()}
    assert sorted(i["evidence_id"] for i in exported["items"]) == sorted([held, video, recording])
    for item in exported["items"]:
        original = originals[source_of[item["evidence_id"]]]
        assert (bag_dir / item["path"]).read_bytes() == original
        assert (
            bag.entries[item["path"]]["sha256"]
            == item["sha256"]
            == by_path[source_of[item["evidence_id"]]]["sha256"]
        )
        report = json.loads((bag_dir / "data" / "reports" / f"{item['evidence_id']}.json").read_text())
        assert report["custody"]["intact"] is True and report["links"]["current"] == [TRIAL]
        assert report["accesses"][-1]["details"]["purpose"] == "CPS file"

    # -- a legal hold on the trial's evidence: every version held in the bucket -----------------------
    held_doc = ok_json(
        "hold", "set", "--incident", TRIAL, "--reason", "Crown Court trial listed", user=INVESTIGATOR
    )
    assert sorted((i["evidence_id"], i["status"]) for i in held_doc["items"]) == sorted(
        (i, "held") for i in (held, video, recording)
    )
    for evidence_id in (held, video, recording):
        assert [bucket.legal_hold(v) for v in bucket.item_versions(manifests[evidence_id])] == ["ON"] * len(
            stored[evidence_id]
        ), evidence_id
    assert {bucket.legal_hold(v) for v in bucket.item_versions(manifests[plain])} == {"unset"}
    # storage itself refuses: not even the governance bypass deletes a held version
    target = bucket.item_versions(manifests[held])[0]
    with pytest.raises(ClientError) as refused:
        bucket.s3.delete_object(
            Bucket=bucket.name,
            Key=target["Key"],
            VersionId=target["VersionId"],
            BypassGovernanceRetention=True,
        )
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert target in bucket.item_versions(manifests[held])

    # the photo turns out not to be relevant, but the hold stays until the court is done with it
    ok("unlink", held, "--incident", TRIAL, "--reason", "not relevant to the charge", user=INVESTIGATOR)

    # -- retention on a simulated clock ---------------------------------------------------------------
    start = _recorded(listed[plain])
    day_30, day_32 = (start + timedelta(days=d) for d in (30, 32))
    before = bucket.version_set()
    early = retention(day_30)
    assert plain not in early["items"] and early["counts"] == {"keep": 2, "would extend lock": 3}
    assert early["simulated"] is True
    # time passes for the storage locks of the two photos the policy will let go
    let_locks_lapse(bucket, [v for i in (plain, held) for v in bucket.item_versions(manifests[i])])
    dry = retention(day_32)
    assert dry["items"][plain]["outcome"].startswith("would dispose of 3 stored version(s)")
    assert dry["items"][held]["outcome"] == "kept past its date: legal hold"
    assert dry["items"][da]["outcome"].startswith("would extend the storage lock")
    assert dry["counts"] == {"held past date": 1, "would dispose": 1, "would extend lock": 3}
    assert bucket.version_set() == before, "a dry run changes nothing in the bucket"

    applied = retention(day_32, "--apply")
    assert applied["items"][plain]["outcome"] == "disposed: 3 stored version(s) deleted, key destroyed"
    assert applied["items"][held]["outcome"] == "kept past its date: legal hold"
    assert applied["items"][da]["outcome"].startswith("storage lock extended")
    assert applied["counts"] == {"disposed": 1, "held past date": 1, "lock extended": 3}
    assert_disposed(bucket, manifests[plain])
    for evidence_id in (da, held, video, recording):
        assert len(bucket.item_versions(manifests[evidence_id])) == len(stored[evidence_id]), evidence_id
    # the domestic-abuse item's lock now reaches the policy's date, for every version and its chain
    da_until = datetime.fromisoformat(custody_doc(da)["events"][-1]["details"]["retain_until"])
    assert da_until > datetime.now(UTC) + timedelta(days=9 * 365)
    for version in bucket.item_versions(manifests[da]) + bucket.versions(layout.custody_prefix(da)):
        assert bucket.head(version)["ObjectLockRetainUntilDate"] >= da_until - timedelta(seconds=1), version[
            "Key"
        ]

    # asking for the disposed item: one clear line and exit 6, nothing written
    command = [
        sys.executable,
        "-m",
        "cli",
        "--user",
        INVESTIGATOR,
        "get",
        plain,
        "--out",
        str(out.with_name("x")),
    ]
    environment = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    gone = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    assert gone.returncode == NotFound.exit_code, gone.stderr
    assert "was disposed of on" in gone.stderr and "non-evidential" in gone.stderr
    assert "Traceback" not in gone.stderr and len(gone.stderr.strip().splitlines()) == 1
    assert not out.with_name("x").exists()

    # -- the verdict: the hold is lifted, and the next run disposes of what it protected -----------------
    refused_release = run("hold", "release", "--incident", TRIAL, "--reason", "verdict", user=INVESTIGATOR)
    assert isinstance(refused_release.exception, AccessDenied)
    released = ok_json("hold", "release", "--incident", TRIAL, "--reason", "verdict given", user=ADMIN)
    assert sorted((i["evidence_id"], i["status"]) for i in released["items"]) == sorted(
        (i, "released") for i in (held, video, recording)
    )
    for evidence_id in (held, video, recording):
        assert {bucket.legal_hold(v) for v in bucket.item_versions(manifests[evidence_id])} == {"OFF"}
    after_release = retention(day_32, "--apply")
    assert after_release["items"][held]["outcome"].startswith("disposed: 3 stored version(s) deleted")
    assert after_release["counts"] == {"disposed": 1, "disposed before": 1, "keep": 3}
    assert_disposed(bucket, manifests[held])
    for evidence_id in (da, video, recording):  # linked evidence stays
        assert len(bucket.item_versions(manifests[evidence_id])) == len(stored[evidence_id]), evidence_id

    # -- custody: every chain verifies, the disposed ones too ---------------------------------------------
    for evidence_id in ids.values():
        chain = custody_doc(evidence_id)
        assert chain["intact"] is True and chain["problems"] == [], evidence_id
    plain_chain = custody_doc(plain)["events"]
    assert [(e["type"], e["details"].get("action")) for e in plain_chain] == [
        ("ingest", None), ("access", "list"), ("disposal", None),
    ]  # fmt: skip
    assert (plain_chain[-1]["actor"], plain_chain[-1]["details"]["rule"]) == (ADMIN, "non-evidential")
    assert plain_chain[-1]["details"]["simulated_now"] == day_32.isoformat(), "the clock is on record"
    assert [e["type"] for e in custody_doc(held)["events"] if e["type"] != "access"] == [
        "ingest", "link", "export", "hold", "unlink", "release", "disposal",
    ]  # fmt: skip

    # -- fixity: every remaining item re-read and decrypted; then a record is altered in the bucket -------
    fixity = ok_json("fixity", "--all", user=ADMIN)
    assert fixity["counts"] == {"ok (plaintext)": 3}
    assert sorted(i["evidence_id"] for i in fixity["items"]) == sorted([da, video, recording])

    record_key = bucket.key(layout.custody_key(video, 1))
    original_record = bucket.get(layout.custody_key(video, 1))
    assert b"attended the call" in original_record
    bucket.s3.put_object(
        Bucket=bucket.name,
        Key=record_key,
        Body=original_record.replace(b"attended the call", b"was never there"),
    )
    tampered = run("--user", INVESTIGATOR, "custody", video, "--json")
    assert tampered.exit_code == IntegrityError.exit_code, tampered.output
    problems: dict[int, str] = {}
    for problem in json.loads(tampered.stdout)["problems"]:
        problems[problem["position"]] = problems.get(problem["position"], "") + problem["message"] + "; "
    assert "altered" in problems[1] and "overwritten" in problems[1], problems
    table = run("--user", INVESTIGATOR, "custody", video)
    assert table.exit_code == IntegrityError.exit_code and "BROKEN" in table.output

    failing = run("--user", ADMIN, "fixity", "--all", "--json")
    assert failing.exit_code == IntegrityError.exit_code, failing.output
    results = {i["evidence_id"]: i for i in json.loads(failing.stdout)["items"]}
    assert (
        results[video]["result"] == "failed"
        and "custody chain broken at event 1" in results[video]["problem"]
    )
    assert results[da]["result"] == results[recording]["result"] == "ok"

    # -- and it all ran as Prefect flows: two ingests, four retention runs, two fixity runs ---------------
    ingests = {r.parameters["device_dir"]: r for r in flow_runs("ingest-device", story_began)}
    assert ingests[str(device)].parameters["wipe"] is True
    assert ingests[str(device)].state_name == ingests[str(redock)].state_name == "Completed"
    runs = [r for r in flow_runs("retention", story_began) if r.parameters["user"] == ADMIN]
    assert sorted((r.parameters["now"], r.parameters["apply"]) for r in runs) == sorted(
        [(day_30.isoformat(), False), (day_32.isoformat(), False)] + [(day_32.isoformat(), True)] * 2
    )
    assert {r.state_name for r in runs} == {"Completed"}
    assert len([r for r in flow_runs("fixity", story_began) if r.parameters["user"] == ADMIN]) == 2


# -- helpers for the story ----------------------------------------------------------------------------


def flow_runs(flow_name: str, since: datetime) -> list[Any]:
    """The runs of one flow recorded by the session's Prefect API since ``since``."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read() -> list[Any]:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
            return [run for run in runs if run.created is not None and run.created >= since]

    return asyncio.run(read())


def _recorded(item: dict[str, Any]) -> datetime:
    assert item["recorded_at"], item
    return datetime.fromisoformat(item["recorded_at"])


def custody_doc(evidence_id: str) -> dict[str, Any]:
    result = run("--user", INVESTIGATOR, "custody", evidence_id, "--json")
    doc: dict[str, Any] = json.loads(result.stdout)
    assert result.exit_code == (0 if doc["intact"] else IntegrityError.exit_code)
    return doc


def retention(moment: datetime, *flags: str) -> dict[str, Any]:
    doc = ok_json("retention", "run", "--now", moment.isoformat(), *flags, user=ADMIN)
    assert doc["applied"] is ("--apply" in flags)
    doc["items"] = {line["evidence_id"]: line for line in doc["items"]}
    return dict(doc)


def let_locks_lapse(bucket: Bucket, versions: list[dict[str, Any]]) -> None:
    """Time passes for the versions' storage locks: each retain-until is brought to a moment ahead, as
    the governance bypass could set it (the program never uses it, and nothing else has it), and the
    moment is let pass. Not a moment past: RGW, like S3, refuses a retain-until in the past."""
    lapses = datetime.now(UTC)
    for version in versions:
        lapses = datetime.now(UTC) + timedelta(seconds=2)
        bucket.s3.put_object_retention(
            Bucket=bucket.name,
            Key=version["Key"],
            VersionId=version["VersionId"],
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": lapses},
            BypassGovernanceRetention=True,
        )
    while datetime.now(UTC) <= lapses:
        time.sleep(0.1)


def assert_disposed(bucket: Bucket, manifest: dict[str, Any]) -> None:
    """No version and no delete marker of any of the item's objects is left; its chain is, locked
    for years past the disposal."""
    for key in bucket.item_keys(manifest):
        assert bucket.versions(key) == [], key
    chain = bucket.versions(layout.custody_prefix(manifest["evidence_id"]))
    assert chain and not any(v["IsDeleteMarker"] for v in chain)
    for version in chain:
        until = bucket.head(version)["ObjectLockRetainUntilDate"]
        assert until > datetime.now(UTC) + timedelta(days=6 * 365), version["Key"]


def assert_no_original_bytes_in_bucket(bucket: Bucket, originals: dict[str, bytes]) -> None:
    """No stored version holds any 64-byte run of any original (as tests/test_ingest_device.py checks
    through the store, here read straight from the bucket)."""
    blocks = {data[i : i + 32] for data in originals.values() for i in range(0, len(data) - 31, 32)}
    checked = 0
    for version in bucket.versions():
        answer = bucket.s3.get_object(Bucket=bucket.name, Key=version["Key"], VersionId=version["VersionId"])
        stored = answer["Body"].read()
        view = memoryview(stored)
        hits = [i for i in range(len(stored) - 31) if view[i : i + 32].tobytes() in blocks]
        assert not hits, f"{version['Key']} contains original bytes at offsets {hits[:5]}"
        checked += 1
    assert checked > 10
