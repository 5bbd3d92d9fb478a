"""Real camera files (../shared/corpus): every one ingests, and comes back byte for byte, on the local
store and on a real S3 server (Ceph RGW). moto's server is left out here: the corpus over its HTTP took
two minutes of the suite's CPU to prove again what RGW proves."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from evidence.media import extract_media_info
from tests.factories import random_file
from tests.rgw import RgwServer, unique_bucket
from tests.station import Station, make_station
from tests.test_ingest_device import assert_no_plaintext_runs

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part: a file a little bigger goes up in two


def corpus_manifest(corpus: Path) -> dict[str, tuple[int, str]]:
    with (corpus / "MANIFEST.tsv").open(newline="") as handle:
        return {
            row["path"]: (int(row["bytes"]), row["sha256"]) for row in csv.DictReader(handle, delimiter="\t")
        }


@pytest.mark.corpus
@pytest.mark.slow
def test_whole_corpus_ingests_and_reads_back_identically(corpus: Path, tmp_path: Path) -> None:
    station = make_station(tmp_path / "station")
    expected = corpus_manifest(corpus)
    report = station.ingest(corpus, serial="CORPUS-01")

    assert report.complete
    assert not report.by_status("rejected", "deferred", "failed")
    by_path = {o.source_path: o for o in report.by_status("ingested", "duplicate")}
    assert set(expected) <= set(by_path), f"not ingested: {sorted(set(expected) - set(by_path))}"
    for n, (path, (size, sha256)) in enumerate(sorted(expected.items())):
        outcome = by_path[path]
        assert (outcome.size, outcome.sha256) == (size, sha256), path
        manifest = station.vault.manifest(str(outcome.evidence_id))
        out = tmp_path / "out" / f"{n}"
        station.vault.export_original(manifest, out)
        assert out.read_bytes() == (corpus / path).read_bytes(), path
        assert_media_sealed_as_read(station, manifest, corpus / path)
    assert_no_plaintext_runs(station, [corpus / p for p in expected])


def assert_media_sealed_as_read(station: Station, manifest: Any, original: Path) -> None:
    sealed = dict(station.vault.details(manifest).media)
    direct = extract_media_info(original).to_dict()
    # ingest parses through the open descriptor, so a parser's error text names that, not the file
    assert bool(sealed.pop("metadata_error")) == bool(direct.pop("metadata_error")), original
    assert sealed == direct, original


@pytest.mark.corpus
def test_broken_files_are_flagged_not_dropped(corpus: Path, tmp_path: Path) -> None:
    station = make_station(tmp_path / "station")
    report = station.ingest(corpus / "photos", serial="CORPUS-01")
    flagged = {o.source_path for o in report.outcomes if "metadata-unreadable" in o.flags}
    assert len(report.by_status("ingested")) == len(list((corpus / "photos").iterdir()))
    # whatever the extractor could not read is still stored, and says so
    for path in flagged:
        outcome = next(o for o in report.outcomes if o.source_path == path)
        assert outcome.evidence_id is not None


@pytest.mark.corpus
@pytest.mark.slow
def test_the_corpus_docked_with_wipe_to_rgw_comes_back_identical_and_locked(
    corpus: Path, rgw_env: RgwServer, tmp_path: Path
) -> None:
    """On a real S3 server, Ceph RGW over HTTPS: the corpus and a recording longer than one upload part
    (a multipart upload) docked with wipe. Every file is wiped, every item reads back with the SHA-256
    the corpus manifest gives and the media record read from the file, no stored object holds a run of
    an original, and RGW itself refuses to delete a stored version."""
    expected = {path: sha256 for path, (_size, sha256) in corpus_manifest(corpus).items()}
    corpus_files = set(expected)
    device = tmp_path / "dock" / "CORPUS-RGW"
    shutil.copytree(corpus, device)
    recording = random_file(device / "long-recording.bin", PART + 700 * 1024, seed=71)
    expected["long-recording.bin"] = hashlib.sha256(recording.read_bytes()).hexdigest()
    bucket = unique_bucket("corpus")
    station = make_station(tmp_path / "station", vault_url=f"s3://{bucket}/vault", part_size=PART)

    report = station.ingest(device, serial="CORPUS-RGW", wipe=True)

    assert report.complete
    assert not report.by_status("rejected", "deferred", "failed")
    by_path = {o.source_path: o for o in report.by_status("ingested", "duplicate")}
    assert set(expected) <= set(by_path), f"not ingested: {sorted(set(expected) - set(by_path))}"
    assert all(o.wiped for o in by_path.values())
    assert [p for p in device.rglob("*") if p.is_file()] == [], "every verified file is wiped"
    for path, sha256 in sorted(expected.items()):
        manifest = station.vault.manifest(str(by_path[path].evidence_id))
        read_back = hashlib.sha256(b"".join(station.vault.read_original(manifest))).hexdigest()
        assert read_back == sha256, path
        if path in corpus_files:
            assert_media_sealed_as_read(station, manifest, corpus / path)
    assert_no_plaintext_runs(station, [corpus / p for p in corpus_files])

    # on RGW itself, through plain boto3: the recording went up in two parts, and its locked content
    # version cannot be deleted (no governance bypass asked for)
    content = station.vault.manifest(str(by_path["long-recording.bin"].evidence_id)).content
    s3 = boto3.session.Session().client("s3")
    head = s3.head_object(Bucket=bucket, Key=f"vault/{content.key}", VersionId=content.version_id)
    assert head["ETag"].endswith('-2"') and head["ObjectLockMode"] == "GOVERNANCE"
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key=f"vault/{content.key}", VersionId=content.version_id)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    still = s3.head_object(Bucket=bucket, Key=f"vault/{content.key}", VersionId=content.version_id)
    assert still["VersionId"] == content.version_id
