"""The Prefect flow and the command line around it, run for real (one Prefect harness per session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evidence.settings import load_settings
from flows.commands import app
from tests.factories import make_device
from tests.station import make_station

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir = tmp_path / "station"
    make_station(data_dir)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("EVIDENCE_SETTLE_SECONDS", "0")
    return data_dir


def test_ingest_flow_run_reports_and_publishes_artifact(
    prefect_harness: None, data_dir: Path, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.ingest_flow import ingest_device

    device = make_device(tmp_path / "BWC-FLOW01", photos=2, videos=1)
    report = ingest_device(str(device), device_serial="BWC-FLOW01", officer_id="PC-9")
    assert report.counts == {"ingested": 3}

    async def artifacts() -> list[object]:
        async with get_client() as client:
            return list(await client.read_artifacts())

    import asyncio

    keys = [getattr(a, "key", None) for a in asyncio.run(artifacts())]
    assert "ingest-summary" in keys


def test_cli_ingest_json_document(prefect_harness: None, data_dir: Path, tmp_path: Path) -> None:
    device = make_device(tmp_path / "BWC-CLI01", photos=2, videos=0)
    (device / "link").symlink_to("/etc/hostname")

    first = runner.invoke(
        app, ["ingest", str(device), "--device", "BWC-CLI01", "--officer", "PC-2", "--json"]
    )
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert set(doc) == {"ingested", "duplicates", "rejected", "orphaned_objects", "recovered_uploads"}
    assert doc["orphaned_objects"] == [] and doc["recovered_uploads"] == []
    assert len(doc["ingested"]) == 2 and doc["duplicates"] == []
    assert doc["rejected"] == [
        {"source_path": "link", "reason": "symbolic link: not followed, target not read"}
    ]
    for entry in doc["ingested"]:
        assert {"evidence_id", "source_path", "sha256", "size", "media_type"} <= set(entry)

    second = json.loads(runner.invoke(app, ["ingest", str(device), "--device", "BWC-CLI01", "--json"]).stdout)
    assert second["ingested"] == [] and len(second["duplicates"]) == 2

    (data_dir / "users.toml").write_text('[users.ivy]\nrole = "investigator"\n', encoding="utf-8")
    out = tmp_path / "back.jpg"
    got = runner.invoke(app, ["--user", "ivy", "get", doc["ingested"][0]["evidence_id"], "--out", str(out)])
    assert got.exit_code == 0, got.output
    assert out.read_bytes() == (device / doc["ingested"][0]["source_path"]).read_bytes()


def test_cli_errors_are_one_line_with_exit_code(data_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "flows", "get", "../../etc/passwd", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "not an evidence id" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_interactive_ingest_links_the_named_incident(
    prefect_harness: None, data_dir: Path, tmp_path: Path
) -> None:
    """The path a person at a terminal takes (progress bar, not --json) passes incidents on too."""
    from flows.run import run_ingest
    from storage.vault import Vault

    (data_dir / "users.toml").write_text('[users.pc-9]\nrole = "officer"\n', encoding="utf-8")
    device = make_device(tmp_path / "BWC-TTY01", photos=1, videos=0)
    report = run_ingest(
        device,
        device_serial=None,
        officer_id=None,
        wipe=False,
        quiet=False,
        incidents=["knt-2026-000777"],
        linked_by="pc-9",
    )
    evidence_id = str(report.by_status("ingested")[0].evidence_id)
    from evidence.settings import load_settings

    links = [e for e in Vault.open(load_settings()).custody.events(evidence_id) if e.type == "link"]
    assert [(e.details["incident"], e.actor) for e in links] == [("KNT-2026-000777", "pc-9")]


def test_a_second_run_of_a_device_being_ingested_is_refused_and_nothing_is_orphaned(
    prefect_harness: None, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dock watcher ingests a device while a person runs ``evidence ingest`` on it (or starts the
    deployment from the UI, or the camera is mounted twice): the second run is refused at once,
    saying which run holds the device, and the first stores every file once, leaving no unreadable
    upload behind (two runs at once left 54 orphaned, locked objects for 55 files)."""
    import os
    import threading

    import flows.ingest
    from evidence.errors import EvidenceError
    from flows.ingest_flow import ingest_device
    from flows.run import preflight
    from storage.vault import Vault

    device = make_device(tmp_path / "BWC-BUSY01", photos=3, videos=0)
    second_mount = tmp_path / "mnt" / "BWC-BUSY01"
    second_mount.parent.mkdir()
    second_mount.symlink_to(device)
    reading, go_on = threading.Event(), threading.Event()
    real_extract = flows.ingest.extract_media_info

    def extract_then_wait(path: Path) -> object:
        reading.set()  # the first run is in the middle of the device
        assert go_on.wait(60), "the test never let the first run go on"
        return real_extract(path)

    monkeypatch.setattr(flows.ingest, "extract_media_info", extract_then_wait)
    reports = []
    first = threading.Thread(
        target=lambda: reports.append(ingest_device(str(device), device_serial="BWC-BUSY01"))
    )
    first.start()
    try:
        assert reading.wait(60), "the first run never reached a file"
        for folder, serial in ((device, "BWC-BUSY01"), (second_mount, "BWC-BUSY01"), (device, "BWC-OTHER")):
            with pytest.raises(EvidenceError) as refused:
                preflight(folder, device_serial=serial, officer_id=None)
            assert refused.value.exit_code == 8
            assert f"pid {os.getpid()} on " in str(refused.value), str(refused.value)
        # a run started without the CLI's checks (a deployment run) is refused by the flow itself
        with pytest.raises(EvidenceError) as refused:
            ingest_device(str(second_mount), device_serial="BWC-BUSY01")
        assert refused.value.exit_code == 8
    finally:
        go_on.set()
        first.join(120)
    [report] = reports
    assert report.counts == {"ingested": 3} and report.orphaned_objects == ()
    vault = Vault.open(load_settings())
    manifests = [vault.manifest(str(o.evidence_id)) for o in report.outcomes]
    referenced = {stored.key for m in manifests for stored in (m.content, m.thumbnail) if stored}
    assert {v.key for v in vault.store.list_versions("objects/")} == referenced, "an upload was left behind"
