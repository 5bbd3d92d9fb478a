"""The Prefect flow and the command line around it, run for real (one Prefect harness per session)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.commands import app
from evidence.device import DeviceFile
from evidence.settings import load_settings
from flows.ingest_batches import group_into_batches
from tests.factories import make_device
from tests.station import make_station

PROJECT_ROOT = Path(__file__).resolve().parent.parent
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
        [sys.executable, "-m", "cli", "get", "../../etc/passwd", "--out", str(tmp_path / "x")],
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


# -- a Prefect server that cannot serve the run ------------------------------------------------------


@contextlib.contextmanager
def prefect_api_answering_503(*, health_ok: bool = False) -> Iterator[tuple[str, list[str]]]:
    """A Prefect API answering every request 503 (a server restarting, a proxy with no backend), in a
    thread of this process; with ``health_ok`` its health check still answers, so the failure comes
    once a flow starts. Yields the API's URL and the requests it received."""
    received: list[str] = []

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append(f"{self.command} {self.path}")
            healthy = health_ok and self.path.endswith("/health")
            body = b"true" if healthy else b'{"detail": "Service Unavailable"}'
            self.send_response(200 if healthy else 503)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_prefect_server_answering_503_is_one_line_and_exit_8_before_a_flow_starts(
    data_dir: Path, tmp_path: Path
) -> None:
    """Prefect's client backs off five times (about two minutes) before failing: the command checks
    the server first, and gives up at once with advice, as its own process (no retry count set)."""
    from evidence.errors import ServiceUnavailable

    device = make_device(tmp_path / "BWC-503", photos=1, videos=0)
    with prefect_api_answering_503() as (api_url, received):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "ingest",
                str(device),
                "--device",
                "BWC-503",
                "--officer",
                "PC-1",
            ],
            env=os.environ
            | {
                "PREFECT_API_URL": api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PYTHONPATH": str(PROJECT_ROOT),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == ServiceUnavailable.exit_code, result.stderr
    [line] = result.stderr.splitlines()  # one line, no traceback
    assert line.startswith(
        f"error: the Prefect server at {api_url} is unavailable (it answered 503 Service Unavailable)"
    ), line
    assert "try again" in line and "unset PREFECT_API_URL" in line
    assert not [r for r in received if "flow_runs" in r], "no flow run was started"
    assert len(list(device.rglob("*.*"))) == 1, "the device is as it was"


def _port_nothing_listens_on() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("server", ["refusing connections", "failing once a flow starts"])
def test_a_prefect_server_that_cannot_serve_the_run_is_one_line_and_exit_8(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], server: str
) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from evidence.errors import ServiceUnavailable
    from tests.test_link_incidents import front_door

    device = make_device(tmp_path / "BWC-DOWN", photos=1, videos=0)
    with contextlib.ExitStack() as stack:
        if server == "refusing connections":
            api_url = f"http://127.0.0.1:{_port_nothing_listens_on()}/api"
        else:
            api_url, _ = stack.enter_context(prefect_api_answering_503(health_ok=True))
        # no back-off in the test: the check before the run never retries, the run's client would
        stack.enter_context(temporary_settings({PREFECT_API_URL: api_url, PREFECT_CLIENT_MAX_RETRIES: 0}))
        code, _, stderr = front_door(
            ["ingest", str(device), "--device", "BWC-DOWN", "--officer", "PC-1"], capsys
        )
    assert code == ServiceUnavailable.exit_code, stderr
    [line] = stderr.strip().splitlines()  # (the progress bar, when one started, leaves a blank line)
    assert line.startswith(f"error: the Prefect server at {api_url} is unavailable ("), line
    assert len(list(device.rglob("*.*"))) == 1, "the device is as it was"


# -- files in batches: one task per batch, an outcome per file -----------------------------------------


def _device_file(position: int, size: int) -> DeviceFile:
    return DeviceFile(Path(f"/dev-root/F{position:03d}"), f"F{position:03d}", size, 0, position, 1)


def test_batches_keep_scan_order_and_their_file_and_byte_limits() -> None:
    files = [_device_file(n, size) for n, size in enumerate([30, 30, 50, 200, 10, 10, 10, 10, 10])]
    batches = group_into_batches(files, max_files=3, max_bytes=100)
    assert [[f.size for f in b.files] for b in batches] == [[30, 30], [50], [200], [10, 10, 10], [10, 10]]
    assert [(b.first, b.last) for b in batches] == [(0, 1), (2, 2), (3, 3), (4, 6), (7, 8)]
    assert [item for b in batches for _, item in b.numbered()] == files
    assert [position for b in batches for position, _ in b.numbered()] == list(range(len(files)))


def test_a_few_files_are_spread_so_every_worker_has_a_batch() -> None:
    files = [_device_file(n, 1) for n in range(6)]
    spread = {
        workers: [
            len(b.files) for b in group_into_batches(files, max_files=25, max_bytes=10**9, at_least=workers)
        ]
        for workers in (1, 2, 4)
    }
    assert spread == {1: [6], 2: [3, 3], 4: [1, 1, 1, 1, 1, 1]}
    assert group_into_batches([], max_files=25, max_bytes=10**9, at_least=2) == []


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=300), max_size=60),
    max_files=st.integers(min_value=1, max_value=10),
    max_bytes=st.integers(min_value=1, max_value=400),
    at_least=st.integers(min_value=1, max_value=8),
)
def test_batches_never_mix_beyond_their_limits(
    sizes: list[int], max_files: int, max_bytes: int, at_least: int
) -> None:
    files = [_device_file(n, size) for n, size in enumerate(sizes)]
    batches = group_into_batches(files, max_files=max_files, max_bytes=max_bytes, at_least=at_least)
    assert [item for b in batches for item in b.files] == files  # every file once, in scan order
    for batch in batches:
        assert 1 <= len(batch.files) <= max_files
        # a file larger than the byte limit is alone; otherwise a batch stays within it
        assert len(batch.files) == 1 or sum(f.size for f in batch.files) <= max_bytes
    if len(files) >= at_least:
        assert len(batches) >= at_least


def _small_file_device(root: Path, count: int) -> Path:
    for n in range(count):
        path = root / "DCIM" / f"F{n:03d}.BIN"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {n} of a batched device\n".encode() * (n + 1))
    return root


@pytest.fixture
def counted_ingests(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[dict[str, int], dict[str, list[Exception]]]]:
    """Counts each file's ingest calls in the flow's tasks; a file named in ``failing`` raises the
    next of its errors there (before anything of it is stored) until they run out."""
    from flows import ingest_flow

    calls: dict[str, int] = {}
    failing: dict[str, list[Exception]] = {}
    real_ingest_file = ingest_flow.ingest_file

    def counted(vault: object, item: DeviceFile, *args: object, **kwargs: object) -> object:
        calls[item.relative] = calls.get(item.relative, 0) + 1
        if failing.get(item.relative):
            raise failing[item.relative].pop(0)
        return real_ingest_file(vault, item, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_flow, "ingest_file", counted)
    monkeypatch.setattr(
        ingest_flow, "ingest_files_task", ingest_flow.ingest_files_task.with_options(retry_delay_seconds=0)
    )
    yield calls, failing


BATCHES_OF_FOUR = {"ingest_batch_files": 4, "ingest_workers": 2}
"""Eight files make two batches: F000-F003 and F004-F007."""


def test_a_file_that_fails_for_good_fails_alone_and_progress_counts_every_file(
    prefect_harness: None,
    data_dir: Path,
    tmp_path: Path,
    counted_ingests: tuple[dict[str, int], dict[str, list[Exception]]],
) -> None:
    from evidence.errors import IntegrityError
    from flows.ingest_flow import ingest_device, ingest_progress

    calls, failing = counted_ingests
    device = _small_file_device(tmp_path / "BWC-BATCH01", 8)
    failing["DCIM/F001.BIN"] = [IntegrityError("the stored manifest differs from the one written")]
    heard: list[tuple[int, int]] = []
    token = ingest_progress.set(lambda done, total: heard.append((done, total)))
    try:
        report = ingest_device(str(device), device_serial="BWC-BATCH01", settings_overrides=BATCHES_OF_FOUR)
    finally:
        ingest_progress.reset(token)
    [failed] = report.by_status("failed")
    assert failed.source_path == "DCIM/F001.BIN" and "left on the device" in str(failed.reason)
    assert report.counts == {"ingested": 7, "failed": 1}
    assert calls == {f"DCIM/F{n:03d}.BIN": 1 for n in range(8)}, "a permanent failure was retried"
    assert sorted(heard) == [(done, 8) for done in range(1, 9)], "progress did not advance per file"


def test_a_transient_failure_retries_the_batch_without_storing_any_file_twice(
    prefect_harness: None,
    data_dir: Path,
    tmp_path: Path,
    counted_ingests: tuple[dict[str, int], dict[str, list[Exception]]],
) -> None:
    from evidence.errors import StorageUnavailable
    from flows.ingest_flow import ingest_device
    from storage.vault import Vault

    calls, failing = counted_ingests
    device = _small_file_device(tmp_path / "BWC-BATCH02", 8)
    # the third file of the first batch meets throttling once, after the two before it were stored
    failing["DCIM/F002.BIN"] = [StorageUnavailable("SlowDown: please reduce your request rate")]
    report = ingest_device(str(device), device_serial="BWC-BATCH02", settings_overrides=BATCHES_OF_FOUR)
    assert report.counts == {"ingested": 8}, "a retry redid a finished file (it would be a duplicate)"
    assert calls == {f"DCIM/F{n:03d}.BIN": 2 if n == 2 else 1 for n in range(8)}
    vault = Vault.open(load_settings())
    assert len(list(vault.list_items())) == 8
    assert len(list(vault.store.list_versions("objects/"))) == 8, "an object was stored twice"


def test_a_batch_that_runs_out_of_retries_fails_only_the_files_it_did_not_finish(
    prefect_harness: None,
    data_dir: Path,
    tmp_path: Path,
    counted_ingests: tuple[dict[str, int], dict[str, list[Exception]]],
) -> None:
    from evidence.errors import StorageUnavailable
    from flows.ingest_flow import ingest_device

    calls, failing = counted_ingests
    device = _small_file_device(tmp_path / "BWC-BATCH03", 8)
    failing["DCIM/F001.BIN"] = [StorageUnavailable("the vault's endpoint did not answer")] * 5
    report = ingest_device(str(device), device_serial="BWC-BATCH03", settings_overrides=BATCHES_OF_FOUR)
    statuses = {o.source_path: o.status for o in report.outcomes}
    # first batch F000-F003: F000 was done before the outage; F001 and the files after it never were
    assert statuses == {f"DCIM/F{n:03d}.BIN": "failed" if n in (1, 2, 3) else "ingested" for n in range(8)}
    assert calls["DCIM/F000.BIN"] == 1 and calls["DCIM/F001.BIN"] == 5  # one try and four retries
    assert "DCIM/F002.BIN" not in calls and "DCIM/F003.BIN" not in calls
    for outcome in report.by_status("failed"):
        assert "did not answer" in str(outcome.reason) and "left on the device" in str(outcome.reason)
        assert (device / outcome.source_path).exists()
