"""The flow benchmarks keep working: tiny runs of ``bench.small_photos`` and ``bench.concurrent_docks``
through the real Prefect flow (the session's Prefect API), and the census that makes them fail when a
file is lost or stored twice. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.concurrent_docks import (
    DockShape,
    counts_from_watcher_output,
    make_padded_video,
    run_concurrent_docks,
)
from bench.concurrent_docks import render_markdown as render_docks
from bench.small_photos import (
    Census,
    make_photo_device,
    run_small_photos,
    vault_census,
    write_results,
)
from bench.small_photos import render_markdown as render_photos
from tests.station import make_station


@pytest.fixture
def prefect_api_url(prefect_harness: None) -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def test_small_photos_through_the_flow_and_without_prefect(tmp_path: Path, prefect_api_url: str) -> None:
    report = run_small_photos(
        tmp_path,
        photos=3,
        stores=("local",),
        worker_counts=(2,),
        plain_stores=("local",),
        prefect_api_url=prefect_api_url,
        log=lambda line: None,
    )

    runs = {run["name"]: run for run in report["runs"]}
    assert set(runs) == {"flow, 2 workers", "plain, no Prefect"}
    for run in runs.values():
        assert run["files"] == 3 and run["bytes"] == report["photo_bytes"] > 0
        assert run["counts"] == {"ingested": 3}
        assert run["census"] == {
            "files": 3,
            "items": 3,
            "manifest_versions": 3,
            "missing": 0,
            "unexpected": 0,
            "object_versions": 6,  # content and thumbnail of each photo
            "unreferenced_objects": 0,
            "missing_objects": 0,
            "ok": True,
        }
        assert run["seconds"] > 0 and run["files_per_s"] > 0
    assert runs["flow, 2 workers"]["settings"]["ingest_workers"] == 2
    assert runs["flow, 2 workers"]["prefect_server_cpu_seconds"] is None, "a given API is not measured"
    assert set(report["figures"]["local"]) == set(runs)

    json_path, md_path = write_results(report, render_photos(report), tmp_path / "results", "small_photos-3")
    assert json.loads(json_path.read_text()) == report
    markdown = md_path.read_text()
    assert "| flow, 2 workers | local | 3 |" in markdown
    assert "## What Prefect costs per file" in markdown
    assert "Verified: 2 of 2 runs" in markdown
    assert not list(tmp_path.glob("run-*")), "each run's station and vault are removed"


def test_devices_docked_at_once_each_file_once(tmp_path: Path, prefect_api_url: str) -> None:
    report = run_concurrent_docks(
        tmp_path,
        shape=DockShape(devices=2, photos=1, video_bytes=64 * 1024),
        stores=("local",),
        modes=("concurrent",),
        prefect_api_url=prefect_api_url,
        log=lambda line: None,
    )

    (run,) = report["runs"]
    assert run["name"] == "2 devices, concurrent"
    assert run["files"] == 4
    assert run["counts"] == {"ingested": 4}, "as the dock watcher printed them"
    assert run["census"]["ok"] and run["census"]["items"] == 4
    assert run["settings"] == {
        "mode": "concurrent",
        "devices": 2,
        "ingest_workers": 2,
        "prefect_database": "given",
    }
    assert "| 2 devices, concurrent | local | given | 4 |" in render_docks(report)


def test_census_names_a_lost_file_and_a_stray_object(tmp_path: Path) -> None:
    device = make_photo_device(tmp_path / "BWC-CENSUS1", 3)
    files = sorted(device.rglob("*.JPG"))
    kept_back = files[-1].rename(tmp_path / "not-docked.JPG")
    station = make_station(tmp_path / "station")
    station.ingest(device)

    assert vault_census(station.vault, files[:2]).ok
    lost = vault_census(station.vault, [*files[:2], kept_back])
    assert not lost.ok and lost.missing == 1 and lost.files == 3 and lost.items == 2
    extra = vault_census(station.vault, files[:1])
    assert not extra.ok and extra.unexpected == 1

    retention = station.vault.retention_for_new_objects()
    station.vault.store.put_bytes("objects/ab/" + "ab" * 16, b"debris", retention=retention)
    stray = vault_census(station.vault, files[:2])
    assert not stray.ok and stray.unreferenced_objects == 1


def test_census_verdict_needs_one_manifest_version_per_file() -> None:
    clean = Census(2, 2, 2, 0, 0, 4, 0, 0)
    assert clean.ok
    assert not Census(2, 2, 3, 0, 0, 4, 0, 0).ok, "an item written twice"
    assert not Census(2, 2, 2, 0, 0, 3, 0, 1).ok, "a manifest naming an object the store lacks"


def test_padded_video_is_a_valid_mp4_of_the_size_asked(tmp_path: Path) -> None:
    import av

    video = make_padded_video(tmp_path / "VID_0001.MP4", 2 * 1024 * 1024, seed=1)
    assert video.stat().st_size == 2 * 1024 * 1024
    with av.open(str(video)) as container:
        assert container.streams.video[0].frames == 10


def test_watcher_output_is_counted_per_outcome() -> None:
    printed = "\n".join(
        [
            "device docked: BWC-DOCK01; ingesting",
            "device BWC-DOCK01: 50 ingested, 1 duplicate",
            "device BWC-DOCK02: 51 ingested",
            "device BWC-DOCK03: failed: storage unavailable; it will be retried",
        ]
    )
    assert counts_from_watcher_output(printed) == {"ingested": 101, "duplicate": 1, "device failed": 1}
