"""An officer docks the same camera again without it having been wiped: what the station stored from
it is recognised by a local read and hash, and nothing is uploaded again; whatever changed is stored
as new, and nothing is ever wiped on the station's memory alone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from evidence import layout
from flows.ingest import IngestReport
from flows.redock import CONFIRMED_LOCALLY
from storage.base import ObjectStore
from tests.factories import make_device, make_jpeg, random_file
from tests.faults import (
    Killed,
    KillingStore,
    bury,
    fingerprint_device,
    ingest_like_the_flow,
    install_store,
    restart,
    take_census,
)
from tests.station import Station, make_station

MiB = 1024 * 1024
SERIAL = "BWC-TEST01"
WRITES = ("before begin_upload", "before put_bytes", "before upload.write")
"""Kill points of a store call that writes: counted, they show what a run uploaded."""


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return make_station(tmp_path / "station")


def docked_camera(root: Path) -> Path:
    """Three photos, a video and a recording larger than one read (1 MiB), last written an hour ago,
    so a file rewritten during a test gets a later time, as on a real camera."""
    device = make_device(root, photos=2, videos=1)
    random_file(device / "DCIM" / "100BWC01" / "REC_0001.BIN", 3 * MiB + 5, seed=1)
    for path in device.rglob("*"):
        if path.is_file():
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 3600 * 10**9))
    return device


def counting(station: Station) -> KillingStore:
    counter = KillingStore(station.vault.store)
    install_store(station.vault, counter)
    return counter


def writes(counter: KillingStore) -> list[str]:
    return [point for point in counter.points if point.startswith(WRITES)]


def versions(store: ObjectStore) -> set[tuple[str, str]]:
    return {(v.key, v.version_id) for v in store.list_versions("")}


def by_path(report: IngestReport) -> dict[str, tuple[str, str | None, str | None]]:
    return {o.source_path: (o.status, o.evidence_id, o.reason) for o in report.outcomes}


def test_redocked_device_is_confirmed_by_local_hash_and_nothing_is_uploaded(
    station: Station, tmp_path: Path
) -> None:
    device = docked_camera(tmp_path / SERIAL)
    first = station.ingest(device)
    assert first.counts == {"ingested": 4}
    before = versions(station.vault.store)
    chains = {o.evidence_id: station.vault.custody.events(str(o.evidence_id)) for o in first.outcomes}
    counter = counting(station)

    second = station.ingest(device)

    assert second.counts == {"duplicate": 4} and second.complete
    assert {o.source_path: o.evidence_id for o in second.outcomes} == {
        o.source_path: o.evidence_id for o in first.outcomes
    }
    assert {o.reason for o in second.outcomes} == {CONFIRMED_LOCALLY}
    assert writes(counter) == [], "a re-dock of an unchanged device uploads and writes nothing"
    assert versions(station.vault.store) == before
    for evidence_id, events in chains.items():
        assert station.vault.custody.events(str(evidence_id)) == events
    # reports keep their shape: the note is for the table, the --json document is as before
    duplicates, ingested = second.as_json()["duplicates"], first.as_json()["ingested"]
    assert isinstance(duplicates, list) and isinstance(ingested, list)
    assert {frozenset(entry) for entry in duplicates} == {frozenset(entry) for entry in ingested}


def test_a_file_rewritten_in_place_is_a_new_item_and_the_old_one_is_untouched(
    station: Station, tmp_path: Path
) -> None:
    device = docked_camera(tmp_path / SERIAL)
    first = by_path(station.ingest(device))
    photo = "DCIM/100BWC01/IMG_0001.JPG"
    old_id = str(first[photo][1])
    old_chain = station.vault.custody.events(old_id)
    old_manifest = station.vault.manifest(old_id)
    before = versions(station.vault.store)
    make_jpeg(device / photo, size=(320, 240), seed=99)  # the camera rewrote it: new bytes, new time
    counter = counting(station)

    second = by_path(station.ingest(device))

    status, new_id, reason = second[photo]
    assert status == "ingested" and new_id != old_id and reason is None
    assert {path: outcome for path, outcome in second.items() if path != photo} == {
        path: ("duplicate", evidence_id, CONFIRMED_LOCALLY)
        for path, (_, evidence_id, _) in first.items()
        if path != photo
    }
    assert [p for p in writes(counter) if p.startswith("before begin_upload")] == [
        "before begin_upload objects"
    ], "only the rewritten file is uploaded"
    after = versions(station.vault.store)
    assert before <= after, "nothing of the old item is replaced"
    assert station.vault.manifest(old_id) == old_manifest
    assert station.vault.custody.events(old_id) == old_chain
    new_items = {key.split("/")[1] for key, _ in after - before if key.startswith(layout.ITEMS_PREFIX)}
    assert new_items == {new_id}

    third = station.ingest(device)  # the memory now knows the new file
    assert third.counts == {"duplicate": 4}
    assert by_path(third)[photo] == ("duplicate", new_id, CONFIRMED_LOCALLY)


def test_same_size_and_time_with_other_bytes_is_caught_by_the_local_hash(
    station: Station, tmp_path: Path
) -> None:
    """A file rewritten with its size kept and its modification time set back (a forged mtime, or a
    camera that keeps its clock): the scan cannot tell, the hash can; it must never be reported as
    the old item, nor wiped as if stored."""
    device = docked_camera(tmp_path / SERIAL)
    first = by_path(station.ingest(device))
    recording = device / "DCIM" / "100BWC01" / "REC_0001.BIN"
    was = recording.stat()
    with recording.open("r+b") as rewrite:  # in place: same inode, same size
        rewrite.seek(2 * MiB)
        rewrite.write(b"\x00" * 16)
    os.utime(recording, ns=(was.st_atime_ns, was.st_mtime_ns))
    now = recording.stat()
    assert (now.st_ino, now.st_size, now.st_mtime_ns) == (was.st_ino, was.st_size, was.st_mtime_ns)

    second = station.ingest(device, wipe=True)

    outcome = next(o for o in second.outcomes if o.source_path == "DCIM/100BWC01/REC_0001.BIN")
    assert outcome.status == "ingested" and outcome.reason is None and outcome.wiped
    assert outcome.evidence_id != first["DCIM/100BWC01/REC_0001.BIN"][1]
    assert outcome.sha256 == station.vault.details(station.vault.manifest(str(outcome.evidence_id))).sha256
    assert sorted(o.status for o in second.outcomes) == ["duplicate"] * 3 + ["ingested"]


def test_a_remembered_item_no_longer_in_the_vault_is_ingested_as_today(
    station: Station, tmp_path: Path
) -> None:
    device = docked_camera(tmp_path / SERIAL)
    first = by_path(station.ingest(device))
    video = "DCIM/100BWC01/VID_0001.MP4"
    evidence_id = str(first[video][1])
    store = station.vault.store
    for info in list(store.list_versions(layout.manifest_key(evidence_id))):
        store.delete_version(info.key, info.version_id, bypass_governance=True)
    assert not station.vault.has_item(evidence_id)
    counter = counting(station)

    second = by_path(station.ingest(device))

    assert second[video] == ("ingested", evidence_id, None)
    assert station.vault.has_item(evidence_id)
    assert [p for p in writes(counter) if p.startswith("before begin_upload")] == [
        "before begin_upload objects"
    ]
    assert sorted(status for status, _, _ in second.values()) == ["duplicate"] * 3 + ["ingested"]


def test_redock_with_wipe_wipes_only_what_the_vault_verified(station: Station, tmp_path: Path) -> None:
    device = docked_camera(tmp_path / SERIAL)
    station.ingest(device)
    counter = counting(station)

    wiped = station.ingest(device, wipe=True)

    assert wiped.counts == {"duplicate": 4}
    assert all(o.wiped and o.reason == CONFIRMED_LOCALLY for o in wiped.outcomes)
    assert writes(counter) == []
    assert not [p for p in device.rglob("*") if p.is_file()]
    assert "before get_retention objects" in counter.points, "the vault's own account was asked"
    assert all(station.journal.remembered_file(SERIAL, o.source_path) is None for o in wiped.outcomes)


class UnlockedStore(KillingStore):
    """A store whose objects have lost their lock: the vault's verification must refuse them."""

    def get_retention(self, key: str, version_id: str) -> None:
        return None

    def get_legal_hold(self, key: str, version_id: str) -> bool:
        return False


def test_redock_with_wipe_keeps_files_whose_stored_copy_does_not_verify(
    station: Station, tmp_path: Path
) -> None:
    device = docked_camera(tmp_path / SERIAL)
    station.ingest(device)
    originals = fingerprint_device(device)
    unlocked = UnlockedStore(station.vault.store)
    install_store(station.vault, unlocked)

    report = ingest_like_the_flow(station, device, wipe=True, serial=SERIAL)

    assert report.counts == {"failed": 4}
    assert all("not locked" in str(o.reason) for o in report.outcomes)
    assert writes(unlocked) == []
    assert fingerprint_device(device) == originals, "nothing is wiped on the station's memory alone"


def test_de_duplication_across_devices_is_unchanged(station: Station, tmp_path: Path) -> None:
    """The memory is per device: the same file on another camera is read, uploaded and found stored,
    as before."""
    device = docked_camera(tmp_path / SERIAL)
    station.ingest(device)
    other = tmp_path / "BWC-TEST02"
    shutil.copytree(device, other)
    counter = counting(station)

    report = station.ingest(other, serial="BWC-TEST02")

    assert report.counts == {"duplicate": 4}
    assert {o.reason for o in report.outcomes} == {None}
    assert writes(counter).count("before begin_upload objects") == 4


@pytest.mark.parametrize(
    "kill_on",
    [
        "before get_retention objects",  # confirming the first remembered file
        "after upload.commit",  # the rewritten file's content stored, its manifest not yet
        "before put_bytes items",  # the rewritten file's manifest
        "after put_bytes custody",  # the rewritten file's ingest event written
    ],
)
def test_a_redock_killed_part_way_loses_nothing_and_stores_nothing_twice(
    kill_on: str, station: Station, tmp_path: Path
) -> None:
    device = docked_camera(tmp_path / SERIAL)
    photo = device / "DCIM" / "100BWC01" / "IMG_0002.JPG"  # in the middle of the device's order
    old_sha = fingerprint_device(device)["DCIM/100BWC01/IMG_0002.JPG"]
    ingest_like_the_flow(station, device, wipe=False, serial=SERIAL)
    make_jpeg(photo, size=(320, 240), seed=77)
    install_store(station.vault, KillingStore(station.vault.store, kill_on=kill_on))
    with pytest.raises(Killed):
        ingest_like_the_flow(station, device, wipe=False, serial=SERIAL)

    station = restart(station)
    bury(station)
    counter = counting(station)
    report = ingest_like_the_flow(station, device, wipe=False, serial=SERIAL)

    assert report.complete and report.counts.get("ingested", 0) + report.counts["duplicate"] == 4
    unchanged = [o for o in report.outcomes if o.source_path != "DCIM/100BWC01/IMG_0002.JPG"]
    assert {o.reason for o in unchanged} == {CONFIRMED_LOCALLY}, "unchanged files are never uploaded again"
    assert writes(counter).count("before begin_upload objects") <= 1, "at most the rewritten file"
    originals = fingerprint_device(device) | {"IMG_0002.JPG before it was rewritten": old_sha}
    census = take_census(station.vault, originals, station.journal, report.orphaned_objects)
    census.assert_exactly_once()
    assert census.items == 5

    again = ingest_like_the_flow(station, device, wipe=False, serial=SERIAL)
    assert again.counts == {"duplicate": 4}
    assert {o.reason for o in again.outcomes} == {CONFIRMED_LOCALLY}


def test_the_flow_confirms_a_redocked_device_locally(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.ingest_flow import ingest_device

    make_station(tmp_path / "station")
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "station"))
    monkeypatch.setenv("EVIDENCE_SETTLE_SECONDS", "0")
    device = docked_camera(tmp_path / "BWC-FLOW01")

    first = ingest_device(str(device), device_serial="BWC-FLOW01", officer_id="PC-9")
    second = ingest_device(str(device), device_serial="BWC-FLOW01", officer_id="PC-9")

    assert first.counts == {"ingested": 4}
    assert second.counts == {"duplicate": 4}
    assert {o.reason for o in second.outcomes} == {CONFIRMED_LOCALLY}
