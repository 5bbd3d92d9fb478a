"""Real camera files (../shared/corpus): every one ingests, and comes back byte for byte."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from evidence.media import extract_media_info
from tests.station import Station, make_station
from tests.test_ingest_device import assert_no_plaintext_runs


def corpus_manifest(corpus: Path) -> dict[str, tuple[int, str]]:
    with (corpus / "MANIFEST.tsv").open(newline="") as handle:
        return {
            row["path"]: (int(row["bytes"]), row["sha256"]) for row in csv.DictReader(handle, delimiter="\t")
        }


@pytest.fixture(params=["local", "s3-over-http"])
def station(request: pytest.FixtureRequest, tmp_path: Path) -> Station:
    if request.param == "local":
        return make_station(tmp_path / "station")
    request.getfixturevalue("moto_endpoint")
    return make_station(
        tmp_path / "station", vault_url="s3://evidence-corpus/vault", part_size=5 * 1024 * 1024
    )


@pytest.mark.corpus
def test_whole_corpus_ingests_and_reads_back_identically(
    corpus: Path, station: Station, tmp_path: Path
) -> None:
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
        sealed = dict(station.vault.details(manifest).media)
        direct = extract_media_info(corpus / path).to_dict()
        # ingest parses through the open descriptor, so a parser's error text names that, not the file
        assert bool(sealed.pop("metadata_error")) == bool(direct.pop("metadata_error")), path
        assert sealed == direct, path
    assert_no_plaintext_runs(station, [corpus / p for p in expected])


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
