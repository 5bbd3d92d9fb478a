"""The large-file benchmark keeps working: a small file through the modes that need no S3 server, the
report built from them, and the checks that stop a run before it starts. No timing is asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench.large_file import Measurement
from bench.run_all import (
    BenchmarkError,
    Sample,
    build_report,
    check_resources,
    parse_size,
    render_markdown,
    results_stem,
    run_child,
    write_results,
)
from flows.simulate import random_file

SIZE = 8 * 1024 * 1024


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    return random_file(tmp_path / "device" / "bench.bin", SIZE, seed=1)


def test_local_modes_measure_the_file_and_report_ratios(tmp_path: Path, bench_file: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    limit = run_child("one-pass-limit", bench_file, workdir=workdir)
    local = run_child("ingest-local", bench_file, workdir=workdir)

    for measurement in (limit, local):
        assert measurement.size == SIZE
        assert measurement.seconds > 0
        assert 0 < measurement.setup_rss_kib <= measurement.peak_rss_kib
    assert limit.status is None
    assert local.status == "ingested"
    assert {"hash + encrypt", "upload write", "upload commit", "verify"} <= local.phases.keys()
    assert sum(local.phases.values()) <= local.seconds
    assert list(workdir.iterdir()) == [], "the station and local vault are removed after the run"

    samples = {("one-pass-limit", SIZE): [Sample(limit)], ("ingest-local", SIZE): [Sample(local)]}
    report = build_report(samples, [SIZE])
    ratios = report["figures"]["ratios"]
    assert ratios["ingest-local / one-pass-limit"] == round(local.mb_per_s / limit.mb_per_s, 3)
    assert ratios["ingest-s3 / boto3-upload"] is None
    assert report["figures"]["peak_rss_mib"]["ingest-local"] == {"8 MiB": round(local.peak_rss_kib / 1024, 1)}

    json_path, md_path = write_results(report, tmp_path / "results", results_stem([SIZE]))
    assert json_path.name == "large_file-8MiB.json"
    assert json.loads(json_path.read_text()) == report
    assert md_path.read_text() == render_markdown(report)
    assert "| ingest-local | 8 MiB |" in md_path.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_peak_rss_is_the_child_own_not_the_parent(tmp_path: Path, bench_file: Path) -> None:
    # Linux carries a parent's peak RSS into a child's ru_maxrss across exec; the figure must not.
    ballast = b"\x01" * (400 * 1024 * 1024)
    measurement = run_child("one-pass-limit", bench_file, workdir=tmp_path)
    assert len(ballast) and measurement.peak_rss_kib < 200 * 1024


def test_an_ingest_refuses_a_folder_holding_other_files(tmp_path: Path, bench_file: Path) -> None:
    random_file(bench_file.parent / "other.bin", 1024, seed=2)
    with pytest.raises(BenchmarkError, match=r"must hold only bench\.bin"):
        run_child("ingest-local", bench_file, workdir=tmp_path)


def test_a_run_too_big_for_the_disk_stops_before_writing_anything(tmp_path: Path) -> None:
    import shutil

    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(BenchmarkError, match="--workdir"):
        check_resources(tmp_path, [parse_size("1GiB"), free])
    assert list(tmp_path.iterdir()) == []


def test_sizes_are_read_the_way_they_are_printed() -> None:
    assert parse_size("4GiB") == 4 * 1024**3
    assert parse_size("256MiB") == parse_size("256M") == 256 * 1024**2
    assert results_stem([parse_size("256MiB"), parse_size("512MiB")]) == "large_file-256MiB-512MiB"
    assert results_stem([parse_size("1GiB"), parse_size("4GiB")]) == "large_file"


def _sample(mode: str, size: int, seconds: float, peak_mib: float) -> Sample:
    return Sample(
        Measurement(
            mode=mode,
            size=size,
            seconds=seconds,
            cpu_seconds=seconds,
            main_thread_cpu_seconds=seconds,
            peak_rss_kib=int(peak_mib * 1024),
            setup_rss_kib=1024,
            ru_maxrss_kib=int(peak_mib * 1024),
            status="ingested" if mode.startswith("ingest") else None,
        )
    )


def test_the_report_takes_the_fastest_sample_and_the_highest_peak() -> None:
    small, large = parse_size("1GiB"), parse_size("4GiB")
    samples = {
        ("one-pass-limit", small): [
            _sample("one-pass-limit", small, 2.0, 30),
            _sample("one-pass-limit", small, 1.0, 31),
        ],
        ("ingest-local", small): [
            _sample("ingest-local", small, 4.0, 90),
            _sample("ingest-local", small, 5.0, 100),
        ],
        ("ingest-local", large): [_sample("ingest-local", large, 16.0, 120)],
    }
    figures = build_report(samples, [small, large])["figures"]
    assert figures["ratios"]["ingest-local / one-pass-limit"] == 0.25  # 4.0 s against 1.0 s
    assert figures["peak_rss_mib"]["ingest-local"] == {"1 GiB": 100.0, "4 GiB": 120.0}
    assert figures["rss_growth_mib"] == {"ingest-local": 20.0}
    assert figures["rss_flat"]

    samples[("ingest-local", large)].append(_sample("ingest-local", large, 16.0, 140))
    figures = build_report(samples, [small, large])["figures"]
    assert figures["rss_growth_mib"] == {"ingest-local": 40.0}
    assert not figures["rss_flat"]


# -- the catalog, retention and feed benchmarks at a size a test can afford ------------------------


def test_catalog_lookup_benchmark_measures_lookups_and_a_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.catalog_lookup as catalog_lookup

    monkeypatch.setattr(catalog_lookup, "RESULTS_DIR", tmp_path)
    assert (
        catalog_lookup.main(["--items", "400", "--queries", "5", "--rebuild-sizes", "500", "--out", "smoke"])
        == 0
    )
    result = json.loads((tmp_path / "smoke.json").read_text())
    assert result["lookup"]["items"] == 400 and result["lookup"]["items_by_incident"]["calls"] == 5
    assert result["lookup"]["items_by_incident"]["median_ms"] > 0
    [rebuild] = result["rebuild"]
    assert (rebuild["items"], rebuild["custody_events"], rebuild["same_answers_on_sample"]) == (
        500,
        1000,
        True,
    )
    assert "items by incident" in (tmp_path / "smoke.md").read_text()


def test_retention_benchmark_runs_dry_and_applied_without_failures(tmp_path: Path) -> None:
    from bench.retention_run import main

    assert main(["--items", "300", "--actions", "2", "--results", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "retention_run-300.json").read_text())
    assert report["catalog"]["rows_total"] == 304
    assert report["applied_run"] == report["applied_run"] | {"failures": 0, "disposed_items_still_present": 0}
    assert (
        report["applied_run"]["counts"]["disposed"] == 2
        and report["applied_run"]["counts"]["lock extended"] == 2
    )


def test_feed_linking_benchmark_checks_every_link_at_a_small_size(tmp_path: Path) -> None:
    from bench.feed_linking import main

    assert main(["--officers", "5", "--items", "500", "--results", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "feed_linking-500.json").read_text())
    assert (report["incidents"], report["items"]) == (50, 500)
    assert report["linked"] > 0 and report["link_seconds"] > 0


def test_feed_memory_benchmark_links_a_small_feed_in_both_formats(tmp_path: Path) -> None:
    from bench.feed_memory import main

    assert main(["--rows", "400", "--results", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "feed_memory-400.json").read_text())
    for fmt in ("csv", "json"):
        figures = report[fmt]
        assert (figures["rows_accepted"], figures["rows_rejected"]) == (400, 0) and figures["linked"] > 0
        assert figures["peak_rss_mib"] >= figures["peak_rss_before_feed_mib"] > 0
