"""A station is killed mid-ingest (SIGKILL: no clean-up runs). Re-running finishes the job: every file
stored exactly once, nothing lost, no upload left dangling."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evidence.layout import ITEMS_PREFIX, OBJECTS_PREFIX
from tests.factories import make_device, random_file
from tests.station import Station, make_station

MiB = 1024 * 1024


def start_ingest(device: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "ingest", str(device), "--device", "BWC-KILL01", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_ingest(device: Path, env: dict[str, str]) -> dict[str, list[dict[str, object]]]:
    proc = start_ingest(device, env)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return json.loads(stdout)  # type: ignore[no-any-return]


def assert_converged(
    station: Station, device: Path, doc: dict[str, list[dict[str, object]]], tmp_path: Path
) -> None:
    """Every device file is one item; every item reads back identical, its custody chain intact with
    one ingest event; nothing extra is stored."""
    files = sorted(str(p.relative_to(device)) for p in device.rglob("*") if p.is_file())
    accounted = sorted(str(e["source_path"]) for e in doc["ingested"] + doc["duplicates"])
    assert accounted == files and doc["rejected"] == []

    store = station.vault.store
    manifests = [i for i in store.list_versions(ITEMS_PREFIX)]
    assert len(manifests) == len(files), "one manifest version per file: no duplicates"
    referenced = set()
    for n, entry in enumerate(doc["ingested"] + doc["duplicates"]):
        manifest = station.vault.manifest(str(entry["evidence_id"]))
        referenced.add(manifest.content.key)
        if manifest.thumbnail:
            referenced.add(manifest.thumbnail.key)
        out = tmp_path / "readback" / str(n)
        station.vault.export_original(manifest, out)
        assert out.read_bytes() == (device / str(entry["source_path"])).read_bytes()
        chain = station.vault.custody.verify(manifest.evidence_id)
        assert chain.intact, (entry["source_path"], chain.problems)
        assert [e.type for e in chain.events].count("ingest") == 1, "one ingest event, however many kills"
    assert not list(store.list_incomplete_uploads("")), "interrupted uploads were cleaned up"
    orphans = {v.key for v in store.list_versions(OBJECTS_PREFIX)} - referenced
    # only a kill between committing content and writing its manifest can leave an orphan, and the
    # journal knows it: it is reported, and it is ciphertext whose key was never stored
    assert orphans <= set(station.journal.orphans())


def journal_rows(path: Path) -> int:
    import sqlite3

    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return int(db.execute("select count(*) from uploads").fetchone()[0])
    except sqlite3.Error:
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # committed or aborted between the listing and the look
        return 0


def wait_for_upload_in_flight(vault_root: Path, proc: subprocess.Popen[str], min_bytes: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ingest ended before it could be killed: {proc.communicate()[1]}"
        if any(_size(p) >= min_bytes for p in (vault_root / "uploads").glob("*.part")):
            return
        time.sleep(0.005)
    pytest.fail("no upload reached the kill point in time")


@pytest.mark.slow
def test_sigkill_mid_upload_then_rerun_converges(cli_env: dict[str, str], tmp_path: Path) -> None:
    station = make_station(tmp_path / "station")
    device = make_device(tmp_path / "BWC-KILL01", photos=3, videos=1)
    random_file(device / "DCIM" / "long-recording.bin", 384 * MiB, seed=7)

    proc = start_ingest(device, cli_env)
    wait_for_upload_in_flight(tmp_path / "station" / "vault", proc, min_bytes=32 * MiB)
    proc.kill()
    proc.wait()
    assert list((tmp_path / "station" / "vault" / "uploads").glob("*.part")), "the kill landed mid-upload"

    doc = finish_ingest(device, cli_env)
    assert_converged(station, device, doc, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "s3-over-http"])
def test_repeated_kills_at_random_moments_converge(
    backend: str, cli_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "local":
        station = make_station(tmp_path / "station")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        cli_env = cli_env | {"AWS_ENDPOINT_URL": endpoint, "EVIDENCE_VAULT_URL": "s3://evidence-kill/vault"}
        station = make_station(tmp_path / "station", vault_url="s3://evidence-kill/vault", part_size=5 * MiB)
        cli_env |= {"EVIDENCE_PART_SIZE": str(5 * MiB)}
    device = make_device(tmp_path / "BWC-KILL01", photos=6, videos=2)
    for n in range(3):
        random_file(device / f"clip-{n}.bin", 40 * MiB, seed=n)
    journal = tmp_path / "station" / "journal" / "ingest.sqlite"
    chance = random.Random(20261125)
    kills_while_running = 0
    for _ in range(4):
        proc = start_ingest(device, cli_env)
        started_at = time.monotonic()
        while proc.poll() is None and journal_rows(journal) == 0 and time.monotonic() - started_at < 60:
            time.sleep(0.01)  # the first upload has begun once the journal records it
        time.sleep(chance.uniform(0.0, 1.2))
        kills_while_running += proc.poll() is None
        proc.kill()
        proc.wait()
    assert kills_while_running >= 3, "the kills must interrupt live runs for this test to mean anything"
    doc = finish_ingest(device, cli_env)
    assert_converged(station, device, doc, tmp_path)


def test_recovery_leaves_uploads_of_live_runs_alone(tmp_path: Path) -> None:
    """Several devices docked at once run several ingests in one process: one run's recovery must
    not abort another's upload in flight, while a dead run's leftovers are cleaned up."""
    import sqlite3

    station = make_station(tmp_path / "station")
    store = station.vault.store
    live = store.begin_upload("objects/aa/" + "a" * 32, retention=None)
    live.write(b"x" * 1024)
    station.journal.upload_started(live.key)
    dead = store.begin_upload("objects/bb/" + "b" * 32, retention=None)
    dead.write(b"y" * 1024)
    station.journal.upload_started(dead.key)
    with sqlite3.connect(station.settings.journal_dir / "ingest.sqlite") as db:
        db.execute("update uploads set owner = '999999999:1' where key = ?", (dead.key,))

    # the runs of one process share its journal (flows.ingest_flow._station); another process has its own
    recovery = station.journal.recover(store)

    assert recovery.aborted == (dead.key,)
    assert [u.key for u in store.list_incomplete_uploads("")] == [live.key]
    live.commit()
    assert store.head(live.key).size == 1024


def test_a_commit_the_journal_lost_to_a_power_cut_is_found_again_by_recovery(tmp_path: Path) -> None:
    """'committed' is written without an fsync of its own (flows.journal): a power cut can roll it
    back to 'open'. Recovery then learns the commit from the store, so the object is still reported
    orphaned, never forgotten; 'open' and 'settled' stay flushed."""
    import sqlite3

    station = make_station(tmp_path / "station")
    store, journal = station.vault.store, station.journal
    upload = store.begin_upload("objects/cc/" + "c" * 32, retention=None)
    journal.upload_started(upload.key)
    upload.write(b"z" * 1024)
    upload.commit()
    journal.upload_committed(upload.key)
    assert journal._db.execute("pragma synchronous").fetchone()[0] == 2, "later states lost their fsync"
    with sqlite3.connect(station.settings.journal_dir / "ingest.sqlite") as db:  # the cut, then a restart
        db.execute("update uploads set state = 'open', owner = '999999999:1' where key = ?", (upload.key,))

    from flows.journal import IngestJournal

    restarted = IngestJournal.for_station(station.settings.journal_dir)
    recovery = restarted.recover(store)

    assert recovery.aborted == () and store.exists(upload.key)
    assert restarted.orphans() == (upload.key,)


def test_a_killed_run_never_blocks_the_next_run_of_its_device(tmp_path: Path) -> None:
    """A run holds its device for its whole length (one run per device at a time); when the station
    kills it (SIGKILL, power loss: nothing of it gets to clean up) the kernel lets go of the device,
    and the next run starts without anyone removing a stale lock."""
    import signal

    from evidence.errors import DeviceBusy
    from flows.device_lock import holding_device
    from flows.run import preflight

    station = make_station(tmp_path / "station")
    device = make_device(tmp_path / "BWC-HELD01", photos=1, videos=0)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from flows.device_lock import holding_device\n"
            "with holding_device(Path(sys.argv[1]), 'BWC-HELD01', Path(sys.argv[2])):\n"
            "    print('holding', flush=True); sys.stdin.read()",
            str(station.settings.journal_dir),
            str(device),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        with pytest.raises(DeviceBusy, match=f"pid {holder.pid} on .*, since "):
            preflight(device, device_serial="BWC-HELD01", officer_id="PC-1")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=60)

    preflight(device, device_serial="BWC-HELD01", officer_id="PC-1")
    with holding_device(station.settings.journal_dir, "BWC-HELD01", device):
        assert station.ingest(device, serial="BWC-HELD01").counts == {"ingested": 1}


KILLED_MID_PUT = """
import os, signal, sys
from pathlib import Path
from storage.local import LocalStore

store = LocalStore(Path(sys.argv[1]))

def record_version(*args, **kwargs):
    print("bytes written, record not yet", flush=True)  # the parent kills the process now
    signal.pause()

store._record_version = record_version
store.put_bytes("custody/ev-aaaaaaaaaaaaaaaaaaaaaaaaaa/0000000000.json", b"x" * 1000, retention=None, if_absent=True)
"""


def test_a_put_killed_half_way_leaves_nothing_visible_and_nothing_to_clean_up(tmp_path: Path) -> None:
    """A small object (a custody record, a manifest) is stored in one request, as S3 stores a PUT:
    a writer killed between writing its bytes and recording them leaves no version and no incomplete
    upload (the repeated-kill story once found one left for a custody record), and the next write of
    the key removes the bytes it left."""
    from evidence.errors import NotFound
    from storage.local import LocalStore

    store = LocalStore(tmp_path / "vault")
    store.initialise()
    key = "custody/ev-aaaaaaaaaaaaaaaaaaaaaaaaaa/0000000000.json"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_PUT, str(store.root)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "bytes written, record not yet"
    writer.kill()
    writer.wait(timeout=30)

    versions = store.root / "objects" / key / "@v"
    assert [p.suffix for p in versions.glob("*.data")] == [".data"], "the killed writer's bytes are there"
    assert list(store.list_incomplete_uploads("")) == []
    with pytest.raises(NotFound):
        store.head(key)
    info = store.put_bytes(key, b"the record", retention=None, if_absent=True)
    assert b"".join(store.get(key)) == b"the record"
    assert sorted(p.name for p in versions.glob("*.data")) == [f"{info.version_id}.data"]
