"""The catalog: fast answers by incident, officer, device, time, media type and category, folded from
manifests and custody events, and rebuilt from the vault alone with the same answers."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evidence.custody import CustodyEvent
from evidence.errors import ConfigError, StorageUnavailable
from evidence.manifest import Manifest, StoredObject
from flows.records import note_item, record, record_each
from storage.catalog import Catalog, CatalogItem
from tests.factories import make_jpeg, make_mp4
from tests.station import Station, make_station

T0 = datetime(2026, 3, 14, 20, 0, tzinfo=UTC)


# -- synthetic records (shared with test_feed_linking.py) -------------------------------------------


def fake_id(n: int) -> str:
    """A well-formed evidence id for synthetic items (``ev-`` + 26 base32 letters)."""
    return "ev-" + base64.b32encode(hashlib.sha256(f"item {n}".encode()).digest()).decode().lower()[:26]


def fake_manifest(
    n: int,
    *,
    officer: str | None = "PC-1",
    device: str = "BWC-1",
    recorded_at: str | None = None,
    media_type: str = "image/jpeg",
    ingested_at: datetime | None = None,
) -> Manifest:
    obj = StoredObject(f"objects/00/{n:032x}", "v1", 100, "0" * 64, None)
    return Manifest(
        evidence_id=fake_id(n),
        ingested_at=ingested_at or T0 + timedelta(days=1, seconds=n),
        station_id="station-1",
        device_serial=device,
        officer_id=officer,
        media_type=media_type,
        kind="photo" if media_type.startswith("image/") else "video",
        recorded_at=recorded_at,
        size=1000 + n,
        segment_size=65536,
        content=obj,
        thumbnail=None,
        recipients=(),
        sealed_details="",
        flags=(),
    )


def fake_event(
    evidence_id: str, seq: int, type: str, at: datetime | None = None, **details: Any
) -> CustodyEvent:
    return CustodyEvent(
        evidence_id=evidence_id,
        seq=seq,
        prev=None,
        type=type,
        at=at or T0 + timedelta(days=2, minutes=seq),
        actor="det-a",
        role="investigator",
        station="ws-1",
        details=details,
    )


def ids(items: Iterable[CatalogItem]) -> list[str]:
    return [item.evidence_id for item in items]


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        yield Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
        return
    from storage.catalog import metadata

    catalog = Catalog(request.getfixturevalue("postgres_url"))
    yield catalog
    metadata.drop_all(catalog._engine)
    catalog.close()


# -- questions ------------------------------------------------------------------------------------


def test_filters_answer_by_officer_device_time_and_media_type(catalog: Catalog) -> None:
    catalog.record_manifest(fake_manifest(1, officer="PC-1", recorded_at="2026-03-14T20:10:00+00:00"))
    catalog.record_manifest(
        fake_manifest(2, officer="PC-2", device="BWC-2", recorded_at="2026-03-14T21:10:00Z")
    )
    catalog.record_manifest(
        fake_manifest(3, officer="PC-1", recorded_at="2026-03-14T22:10:00+01:00", media_type="video/mp4")
    )
    catalog.record_manifest(fake_manifest(4, officer=None, recorded_at=None))

    assert ids(catalog.items(officer="PC-1")) == [fake_id(1), fake_id(3)]
    assert ids(catalog.items(device="BWC-2")) == [fake_id(2)]
    assert ids(catalog.items(media_type="video/mp4")) == [fake_id(3)]
    # 22:10+01:00 is 21:10 UTC, the same moment as item 2: ordered by time, then id
    window = catalog.items(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=2))
    assert set(ids(window)) == {fake_id(2), fake_id(3)}
    # since is inclusive, until exclusive
    assert ids(catalog.items(since=T0 + timedelta(minutes=10), until=T0 + timedelta(hours=1))) == [fake_id(1)]
    # an item with no recording time is placed at its ingest time (a day later)
    assert ids(catalog.items(since=T0 + timedelta(hours=23))) == [fake_id(4)]
    item = catalog.item(fake_id(3))
    assert item is not None
    assert item.recorded_at == datetime(2026, 3, 14, 21, 10, tzinfo=UTC)
    assert item.ingested_at.tzinfo is not None
    assert catalog.item(fake_id(99)) is None


def test_naive_device_time_is_taken_as_utc(catalog: Catalog) -> None:
    catalog.record_manifest(fake_manifest(1, recorded_at="2026-03-14T20:10:00"))
    item = catalog.item(fake_id(1))
    assert item is not None and item.recorded_at == T0 + timedelta(minutes=10)


def test_unreadable_recording_time_falls_back_to_ingest_time_for_ordering(catalog: Catalog) -> None:
    catalog.record_manifest(fake_manifest(1, recorded_at="yesterday-ish"))
    item = catalog.item(fake_id(1))
    assert item is not None and item.recorded_at is None
    assert ids(catalog.items(since=item.ingested_at)) == [fake_id(1)]


def test_device_times_past_the_ends_of_the_calendar_in_utc_are_indexed_at_those_ends(
    catalog: Catalog,
) -> None:
    # a camera's 0001-01-01T00:00:00+01:00 is an hour before year 1 began in UTC: once an OverflowError
    # that left the item out of the catalog (and a rebuild could not index it either)
    catalog.record_manifests(
        [
            fake_manifest(1, recorded_at="0001-01-01T00:00:00+01:00"),
            fake_manifest(2, recorded_at="9999-12-31T23:59:59-14:00"),
        ]
    )
    first, last = catalog.item(fake_id(1)), catalog.item(fake_id(2))
    assert first is not None and first.recorded_at == datetime.min.replace(tzinfo=UTC)
    assert last is not None and last.recorded_at == datetime.max.replace(tzinfo=UTC)
    assert ids(catalog.items()) == [fake_id(1), fake_id(2)]  # in recording order


def test_links_unlinks_holds_retention_and_disposal_fold_into_state(catalog: Catalog) -> None:
    a, b = fake_id(1), fake_id(2)
    catalog.record_manifest(fake_manifest(1))
    catalog.record_manifest(fake_manifest(2))
    until = T0 + timedelta(days=3650)
    events = [
        fake_event(a, 0, "ingest"),
        fake_event(
            a, 1, "link", incident="KNT-2026-000001", category="domestic-abuse", reason="r", source="feed"
        ),
        fake_event(a, 2, "link", incident="KNT-2026-000002", reason="r", source="manual"),
        fake_event(a, 3, "unlink", incident="KNT-2026-000002", reason="wrong job"),
        fake_event(a, 4, "hold", hold_id="H-1", incident="KNT-2026-000001", reason="court"),
        fake_event(a, 5, "hold", hold_id="H-2", reason="review"),
        fake_event(a, 6, "release", hold_id="H-2", reason="done"),
        fake_event(a, 7, "retention", category="serious", rule="r1", retain_until=until.isoformat()),
        fake_event(a, 8, "access", action="list", purpose="p"),
        fake_event(b, 0, "ingest"),
        fake_event(b, 1, "link", incident="KNT-2026-000002", reason="r", source="manual"),
        fake_event(b, 2, "disposal", rule="r", policy="p", reason="expired", objects_deleted=2),
    ]
    catalog.record_events(events)
    item = catalog.item(a)
    assert item is not None
    assert item.incidents == ("KNT-2026-000001",)
    assert item.categories == ("domestic-abuse",)
    assert item.holds == ("H-1",)
    assert item.retain_until == until
    assert item.retention_category == "serious"
    assert item.linked_at == events[1].at
    assert item.custody_length == 9
    assert item.disposed_at is None

    assert ids(catalog.items(incident="KNT-2026-000001")) == [a]
    assert ids(catalog.items(category="domestic-abuse")) == [a]
    assert catalog.items(incident="KNT-2026-000002") == []  # a unlinked; b disposed
    assert ids(catalog.items(incident="KNT-2026-000002", include_disposed=True)) == [b]
    disposed = catalog.item(b)
    assert disposed is not None and disposed.disposed_at == events[-1].at
    assert catalog.incident_category("KNT-2026-000001") == "domestic-abuse"
    assert catalog.incident_category("KNT-2026-000002") is None
    assert catalog.unlinked([a, b]) == {(a, "KNT-2026-000002")}


def test_events_out_of_order_and_repeated_give_the_same_state(tmp_path: Path) -> None:
    a = fake_id(1)
    events = [
        fake_event(a, 0, "ingest"),
        fake_event(a, 1, "link", incident="KNT-2026-000001", reason="r", source="manual"),
        fake_event(a, 2, "unlink", incident="KNT-2026-000001", reason="wrong"),
        fake_event(a, 3, "link", incident="KNT-2026-000001", reason="right after all", source="manual"),
        fake_event(a, 4, "access", action="list", purpose="p"),
    ]
    in_order = Catalog(f"sqlite:///{tmp_path / 'a.sqlite'}")
    shuffled = Catalog(f"sqlite:///{tmp_path / 'b.sqlite'}")
    for catalog in (in_order, shuffled):
        catalog.record_manifest(fake_manifest(1))
    in_order.record_events(events)
    for event in [events[3], events[4], events[0], events[2], events[1], events[3]]:
        shuffled.record_event(event)
    shuffled.record_events(events)  # again: nothing changes
    assert in_order.item(a) == shuffled.item(a)
    item = in_order.item(a)
    assert item is not None
    assert item.incidents == ("KNT-2026-000001",)
    assert item.linked_at == events[3].at  # the link in force is the second one
    assert item.custody_length == 5


def test_events_before_the_manifest_are_kept_for_it(catalog: Catalog) -> None:
    a = fake_id(1)
    catalog.record_events([fake_event(a, 0, "ingest"), fake_event(a, 1, "link", incident="KNT-2026-000001")])
    assert catalog.items(incident="KNT-2026-000001") == []  # no manifest indexed: not an item yet
    catalog.record_manifest(fake_manifest(1))
    assert ids(catalog.items(incident="KNT-2026-000001")) == [a]


def test_references_are_bound_parameters_never_sql(catalog: Catalog) -> None:
    catalog.record_manifest(fake_manifest(1))
    catalog.record_events([fake_event(fake_id(1), 1, "link", incident="KNT-2026-000001")])
    for hostile in ("' OR '1'='1", "KNT-2026-000001' --", "%", "KNT-2026-00000_"):
        assert catalog.items(incident=hostile) == []
        assert catalog.items(officer=hostile) == []
    assert len(catalog.items()) == 1  # and the table is still there


def test_iter_items_pages_through_everything(catalog: Catalog) -> None:
    for n in range(25):
        catalog.record_manifest(fake_manifest(n))
    listed = list(catalog.iter_items(batch_size=7))
    assert sorted(ids(listed)) == ids(listed) == sorted(fake_id(n) for n in range(25))
    assert catalog.count() == 25


def test_catalog_url_mistakes_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mysql"):
        Catalog("mysql://u:secret@host/db")
    with pytest.raises(ConfigError, match="not a database URL"):
        Catalog("not a url at all")
    with pytest.raises(ConfigError, match=r"psycopg|driver"):
        Catalog("postgresql+nosuchdriver://u:secret@127.0.0.1/db")


def test_catalog_beside_the_station_is_created_on_first_use(tmp_path: Path) -> None:
    from evidence.settings import Settings

    settings = Settings(data_dir=tmp_path / "fresh")
    catalog = Catalog.open(settings)
    assert catalog.count() == 0
    assert (tmp_path / "fresh" / "catalog.sqlite").exists()


# -- against a real vault ---------------------------------------------------------------------------


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return make_station(tmp_path / "station")


def ingest_device(station: Station, tmp_path: Path) -> list[str]:
    device = tmp_path / "dev"
    for n in range(4):
        make_jpeg(device / f"IMG_{n}.JPG", seed=300 + n, taken=datetime(2026, 3, 14, 20, n, tzinfo=UTC))
    make_mp4(device / "VID_0.MP4", seed=300)
    report = station.ingest(device)
    return sorted(str(o.evidence_id) for o in report.by_status("ingested"))


def snapshot(catalog: Catalog) -> dict[str, Any]:
    return {
        "all": catalog.items(include_disposed=True),
        "live": catalog.items(),
        "inc1": catalog.items(incident="KNT-2026-000001"),
        "inc2": catalog.items(incident="KNT-2026-000002"),
        "da": catalog.items(category="domestic-abuse"),
        "officer": catalog.items(officer="PC-1"),
        "video": catalog.items(media_type="video/mp4"),
        "window": catalog.items(since=T0, until=T0 + timedelta(minutes=2)),
        "each": list(catalog.iter_items(include_disposed=True, batch_size=2)),
    }


def test_rebuild_from_the_vault_gives_the_same_answers(station: Station, tmp_path: Path) -> None:
    live = station.catalog
    evidence_ids = ingest_device(station, tmp_path)
    assert len(evidence_ids) == 5
    first, second, third, fourth, fifth = evidence_ids

    def act(evidence_id: str, type: str, **details: Any) -> None:
        record(station.vault, live, evidence_id, type, actor="det-a", role="investigator", details=details)

    act(first, "link", incident="KNT-2026-000001", category="domestic-abuse", reason="r", source="feed")
    act(second, "link", incident="KNT-2026-000001", category="domestic-abuse", reason="r", source="manual")
    act(second, "link", incident="KNT-2026-000002", reason="r", source="manual")
    act(second, "unlink", incident="KNT-2026-000002", reason="wrong incident")
    act(third, "link", incident="KNT-2026-000002", reason="r", source="manual")
    act(third, "hold", hold_id="H-7", incident="KNT-2026-000002", reason="appeal")
    act(fourth, "hold", hold_id="H-8", reason="review")
    act(fourth, "release", hold_id="H-8", reason="done")
    act(fourth, "disposal", rule="r", policy="p", reason="expired", objects_deleted=0)
    act(fifth, "retention", category="serious", rule="r", retain_until="2036-03-14T00:00:00+00:00")
    record_each(
        station.vault,
        live,
        evidence_ids,
        "access",
        actor="det-a",
        role="investigator",
        details={"action": "list", "purpose": "review"},
    )

    before = snapshot(live)
    assert ids(before["inc1"]) == sorted([first, second], key=lambda e: ids(before["all"]).index(e))
    assert ids(before["inc2"]) == [third]
    assert [i.holds for i in before["all"] if i.evidence_id == third] == [("H-7",)]
    assert all(i.custody_length >= 2 for i in before["all"])

    fresh = Catalog(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    assert fourth not in ids(before["live"]) and fourth in ids(before["all"])
    report = fresh.rebuild(station.vault)
    assert report.items == 5 and not report.problems
    assert report.events == sum(i.custody_length for i in before["all"])
    assert snapshot(fresh) == before

    live.rebuild(station.vault)  # in place, over the old answers
    assert snapshot(live) == before


def test_rebuild_keeps_a_disposed_item_known_only_from_its_chain(station: Station, tmp_path: Path) -> None:
    gone = fake_id(7)  # no manifest in the vault: as after disposal
    custody = station.vault.custody
    custody.append(
        gone,
        "ingest",
        actor="station-9",
        role="ingest-station",
        details={
            "manifest_sha256": "0" * 64,
            "content_sha256": "0" * 64,
            "size": 42,
            "device": "BWC-9",
            "officer": "PC-9",
        },
    )
    custody.append(
        gone,
        "link",
        actor="det-a",
        role="investigator",
        details={"incident": "KNT-2026-000009", "reason": "r", "source": "manual"},
    )
    custody.append(
        gone,
        "disposal",
        actor="retention",
        role="storage-admin",
        details={"rule": "r", "policy": "p", "reason": "expired", "objects_deleted": 2},
    )
    report = station.catalog.rebuild(station.vault)
    assert report.items == 1 and report.events == 3
    assert station.catalog.items(incident="KNT-2026-000009") == []
    item = station.catalog.item(gone)
    assert item is not None
    assert (item.officer_id, item.device_serial, item.size) == ("PC-9", "BWC-9", 42)
    assert item.disposed_at is not None and item.incidents == ("KNT-2026-000009",)


def test_rebuild_refuses_an_item_with_a_damaged_record_and_indexes_the_rest(
    station: Station, tmp_path: Path
) -> None:
    evidence_ids = ingest_device(station, tmp_path)
    victim = evidence_ids[0]
    station.vault.store.put_bytes(f"custody/{victim}/0000000001.json", b"not json", retention=None)
    report = station.catalog.rebuild(station.vault)
    assert report.items == 4
    assert len(report.problems) == 1 and victim in report.problems[0]
    assert [item for item, _ in report.refused] == [victim]
    assert station.catalog.item(victim) is None
    assert sorted(ids(station.catalog.iter_items())) == sorted(set(evidence_ids) - {victim})


def test_a_failing_catalog_never_fails_what_was_recorded_in_the_vault(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    evidence_id = ingest_device(station, tmp_path)[0]

    def down(*args: Any, **kwargs: Any) -> None:
        raise StorageUnavailable("catalog at sqlite:///x is unavailable")

    monkeypatch.setattr(station.catalog, "record_events", down)
    monkeypatch.setattr(station.catalog, "record_item", down)
    with caplog.at_level(logging.WARNING, logger="flows.records"):
        event = record(
            station.vault,
            station.catalog,
            evidence_id,
            "link",
            actor="det-a",
            role="investigator",
            details={"incident": "KNT-2026-000001", "reason": "r", "source": "manual"},
        )
        assert not note_item(station.vault, station.catalog, station.vault.manifest(evidence_id))
    assert event.seq == 1
    assert [e.type for e in station.vault.custody.events(evidence_id)] == ["ingest", "link"]
    assert "catalog rebuild" in caplog.text
    monkeypatch.undo()
    assert station.catalog.items(incident="KNT-2026-000001") == []  # out of step, as logged
    station.catalog.rebuild(station.vault)
    assert ids(station.catalog.items(incident="KNT-2026-000001")) == [evidence_id]


def test_catalog_opened_by_many_workers_at_once_on_a_fresh_database(tmp_path: Path) -> None:
    """Several ingest threads (or a dock watcher and a CLI) may create the schema at the same moment."""
    import threading

    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def open_catalog() -> None:
        barrier.wait()
        try:
            Catalog(url).close()
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=open_catalog) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
