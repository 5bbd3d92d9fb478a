"""Create-once records on a server that ignores If-None-Match (docs/storage.md, "Create-once without
If-None-Match"): two writers that both found a key absent both write it, and still nothing is lost
and every custody chain verifies.

The races are forced, not hoped for: each writer waits at a barrier just before its PutObject of the
contested key, after its presence check (``tests.s3_behaviour.meet_before_put``). They run on moto
honouring If-None-Match (as S3 does), on moto made to ignore it (as Ceph RGW 16 does), and on RGW.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from evidence import layout
from evidence.custody import (
    CustodyEvent,
    LostRace,
    encode_event,
    judge_later_versions,
    new_event,
)
from evidence.errors import AlreadyExists, StorageUnavailable
from evidence.settings import Settings
from evidence.signing import SigningKey, VerifyingKey
from flows.fixity import check_item
from flows.journal import IngestJournal
from flows.keys import init_keys, station_bundle
from storage.custody import CustodyLog
from storage.s3 import S3Store
from storage.vault import Vault
from tests.factories import make_jpeg
from tests.s3_behaviour import ignore_if_none_match, meet_before_put
from tests.station import Station, make_station

_T = TypeVar("_T")
SERVERS = ["moto honouring If-None-Match", "moto ignoring If-None-Match", "ceph rgw"]


@dataclass(frozen=True)
class Server:
    name: str
    ignores_if_none_match: bool

    def bucket(self) -> str:
        from tests.rgw import unique_bucket

        return unique_bucket("create-once")

    def prepare(self, client: Any) -> None:
        """What the server does to a client's requests (nothing, on a real server)."""
        if self.name == "moto ignoring If-None-Match":
            ignore_if_none_match(client)


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "ceph rgw":
        request.getfixturevalue("rgw_env")
    else:
        request.getfixturevalue("moto_aws")
    return Server(request.param, ignores_if_none_match=request.param != "moto honouring If-None-Match")


def race(*calls: Callable[[], _T]) -> list[_T | Exception]:
    """Run the calls at once, one thread each: each one's result, or the exception it raised."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
    return [future.exception() or future.result() for future in futures]  # type: ignore[misc]


def barrier() -> threading.Barrier:
    # the timeout only turns a bug (a writer that never arrives) into a failure instead of a hang
    return threading.Barrier(2, timeout=120)


def versions_of(store: S3Store, key: str) -> list[str]:
    return [info.version_id for info in store.list_versions(key) if info.key == key]


# -- the store: one key, two writers ---------------------------------------------------------------


def test_two_create_once_writes_racing_for_one_key_have_one_winner(server: Server) -> None:
    bucket = server.bucket()
    writers = [S3Store(bucket, "vault"), S3Store(bucket, "vault")]
    writers[0].initialise()
    met = barrier()
    for writer in writers:
        server.prepare(writer.client)
        meet_before_put(writer.client, met, lambda key: key == "vault/items/contested/manifest.json")

    key = "items/contested/manifest.json"
    results = race(
        *(
            (lambda w=writer, n=n: w.put_bytes(key, f"writer {n}".encode(), retention=None, if_absent=True))
            for n, writer in enumerate(writers)
        )
    )

    won = [(n, r) for n, r in enumerate(results) if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], AlreadyExists), lost
    winner, info = won[0]
    record = writers[1 - winner].first_version(key)
    assert record == info.version_id
    assert b"".join(writers[0].get(key, version_id=record)) == f"writer {winner}".encode()
    # the race really happened: both wrote where If-None-Match is ignored, one was refused where not
    assert len(versions_of(writers[0], key)) == (2 if server.ignores_if_none_match else 1)
    if server.ignores_if_none_match:
        assert "ignores If-None-Match" in str(lost[0])


# -- the vault: two stations commit the same item at once -------------------------------------------


def second_station(first: Station, data_dir: Path, station_id: str) -> Station:
    """Another station on the same vault: its own signing key, the vault's public keys only."""
    settings = Settings(
        data_dir=data_dir, settle_seconds=0, vault_url=first.settings.vault_url, station_id=station_id
    )
    station_bundle(first.settings, settings.keys_path)
    init_keys(settings)
    journal = IngestJournal.for_station(settings.journal_dir)
    return Station(settings, Vault.open(settings, journal=journal), journal)


def is_manifest(key: str) -> bool:
    return key.endswith("/manifest.json")


def is_opening_record(key: str) -> bool:
    return "/custody/" in key and key.endswith("/0000000000.json")


def test_two_stations_committing_the_same_item_at_once_lose_nothing(server: Server, tmp_path: Path) -> None:
    """Both stations upload the file, find no item, and write its manifest at the same moment; then
    both open its custody chain at the same moment. One item results: one station ingested it, the
    other found it a duplicate of the first's, the chain verifies, and the file reads back whole."""
    bucket = server.bucket()
    first = make_station(tmp_path / "a", vault_url=f"s3://{bucket}/vault", station_id="station-a")
    other = second_station(first, tmp_path / "b", "station-b")
    manifests, openings = barrier(), barrier()
    for station in (first, other):
        server.prepare(station.vault.store.client)
        meet_before_put(station.vault.store.client, manifests, is_manifest)
        meet_before_put(station.vault.store.client, openings, is_opening_record)
    make_jpeg(tmp_path / "dev-a" / "scene.jpg", seed=41)
    shutil.copytree(tmp_path / "dev-a", tmp_path / "dev-b")
    original = (tmp_path / "dev-a" / "scene.jpg").read_bytes()

    reports = race(lambda: first.ingest(tmp_path / "dev-a"), lambda: other.ingest(tmp_path / "dev-b"))

    outcomes = []
    for station, report in zip((first, other), reports, strict=True):
        assert not isinstance(report, Exception), report
        [outcome] = report.outcomes
        outcomes.append((outcome.status, station.settings.station_id, str(outcome.evidence_id)))
    assert sorted(status for status, _, _ in outcomes) == ["duplicate", "ingested"], outcomes
    [evidence_id] = {item for _, _, item in outcomes}
    ingested_by = next(station_id for status, station_id, _ in outcomes if status == "ingested")
    store = first.vault.store
    assert isinstance(store, S3Store)
    expected_versions = 2 if server.ignores_if_none_match else 1
    assert len(versions_of(store, layout.manifest_key(evidence_id))) == expected_versions
    assert len(versions_of(store, layout.custody_key(evidence_id, 0))) == expected_versions

    # the record is the manifest that station wrote, and its chain (one ingest event) verifies
    verified = first.vault.verify_item(evidence_id)
    assert verified.manifest.station_id == ingested_by
    chain = first.vault.custody.verify(evidence_id)
    assert chain.intact, chain.problems
    assert [e.type for e in chain.events] == ["ingest"]
    if server.ignores_if_none_match:
        [lost] = chain.lost_races
        assert (lost.position, lost.in_chain_at, lost.event.type) == (0, 0, "ingest")
    else:
        assert chain.lost_races == ()
    # nothing lost: the file reads back whole, fixity and a catalog rebuild accept the item
    out = tmp_path / "back.jpg"
    first.vault.export_original(verified.manifest, out)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(original).digest()
    fixity = check_item(first.vault, evidence_id)
    assert (fixity.result, fixity.level, fixity.problem) == ("ok", "plaintext", None)
    rebuilt = first.catalog.rebuild(first.vault)
    assert rebuilt.refused == () and rebuilt.items == 1, rebuilt
    # and both stations, asked again, see the one item
    assert {o.status for s in (first, other) for o in s.ingest(tmp_path / "dev-a").outcomes} == {"duplicate"}


# -- custody: two appends to one chain at once -----------------------------------------------------


def investigator_log(vault: Vault, tmp_path: Path, name: str, server: Server) -> CustodyLog:
    """A workstation's view of the vault's custody: its own client and signing key, published."""
    store = S3Store(vault.store.bucket, vault.store.prefix)  # type: ignore[attr-defined]
    server.prepare(store.client)
    signer = SigningKey.from_file(_signing_key(tmp_path / name))
    log = CustodyLog(store, station_id=f"ws-{name}", signer=signer, retention=lambda: None)
    log.publish_signer()
    return log


def _signing_key(directory: Path) -> Path:
    from evidence.signing import generate_signing_key

    return generate_signing_key(directory)[0]


def test_two_appends_to_one_chain_at_once_both_stay_and_the_chain_verifies(
    server: Server, tmp_path: Path
) -> None:
    """Two investigators open the same item at once: each records an access at position 1."""
    bucket = server.bucket()
    station = make_station(tmp_path / "station", vault_url=f"s3://{bucket}/vault")
    make_jpeg(tmp_path / "dev" / "scene.jpg", seed=7)
    evidence_id = str(station.ingest(tmp_path / "dev").by_status("ingested")[0].evidence_id)
    logs = [investigator_log(station.vault, tmp_path, name, server) for name in ("ann", "ben")]
    met = barrier()
    contested = station.vault.store.object_key(layout.custody_key(evidence_id, 1))  # type: ignore[attr-defined]
    for log in logs:
        meet_before_put(log.store.client, met, lambda key: key == contested)  # type: ignore[attr-defined]

    results = race(
        *(
            (
                lambda log=log, name=name: log.append(
                    evidence_id,
                    "access",
                    actor=name,
                    role="investigator",
                    details={"action": "get", "purpose": "review"},
                )
            )
            for log, name in zip(logs, ("ann", "ben"), strict=True)
        )
    )

    assert all(isinstance(r, CustodyEvent) for r in results), results
    assert sorted(r.seq for r in results) == [1, 2]  # type: ignore[union-attr]
    chain = station.vault.custody.verify(evidence_id)
    assert chain.intact, chain.problems
    assert [e.type for e in chain.events] == ["ingest", "access", "access"]
    assert sorted(e.actor for e in chain.events[1:]) == ["ann", "ben"]
    store = station.vault.store
    assert isinstance(store, S3Store)
    if server.ignores_if_none_match:
        assert len(versions_of(store, layout.custody_key(evidence_id, 1))) == 2
        [lost] = chain.lost_races
        assert (lost.position, lost.in_chain_at) == (1, 2)
        assert lost.event.actor == chain.events[2].actor  # the loser's event, appended again
    else:
        assert len(versions_of(store, layout.custody_key(evidence_id, 1))) == 1
        assert chain.lost_races == ()
    # reads verify the chain first: both go on working
    assert station.vault.verify_item(evidence_id).events == chain.events


def test_a_loser_that_stops_before_appending_again_leaves_a_chain_that_verifies(
    moto_aws: None, tmp_path: Path
) -> None:
    """The writer that lost dies before its second append: its event is kept, reported as not in
    the chain, and neither blocks reads nor the next append."""
    server = Server("moto ignoring If-None-Match", ignores_if_none_match=True)
    station = make_station(tmp_path / "station", vault_url="s3://stopped-loser/vault")
    make_jpeg(tmp_path / "dev" / "scene.jpg", seed=8)
    evidence_id = str(station.ingest(tmp_path / "dev").by_status("ingested")[0].evidence_id)
    logs = [investigator_log(station.vault, tmp_path, name, server) for name in ("ann", "ben")]
    met = barrier()
    prefix = station.vault.store.object_key(layout.custody_prefix(evidence_id))  # type: ignore[attr-defined]
    for log in logs:
        meet_before_put(log.store.client, met, lambda key: key == f"{prefix}0000000001.json")  # type: ignore[attr-defined]

        def dies_on_its_second_record(params: dict[str, Any], log: CustodyLog = log, **_: Any) -> None:
            if params["Key"] == f"{prefix}0000000002.json":
                raise StorageUnavailable(f"{log.station_id} stopped")

        log.store.client.meta.events.register(  # type: ignore[attr-defined]
            "before-parameter-build.s3.PutObject", dies_on_its_second_record
        )

    results = race(
        *(
            (
                lambda log=log: log.append(
                    evidence_id, "access", actor=log.station_id, role="investigator", details={}
                )
            )
            for log in logs
        )
    )

    [stopped] = [r for r in results if isinstance(r, Exception)]
    assert isinstance(stopped, StorageUnavailable)
    chain = station.vault.custody.verify(evidence_id)
    assert chain.intact, chain.problems
    [lost] = chain.lost_races
    assert (lost.position, lost.in_chain_at) == (1, None)
    assert "not in the chain" in lost.describe()
    station.vault.custody.append(evidence_id, "access", actor="cat", role="investigator", details={})
    after = station.vault.custody.verify(evidence_id)
    assert after.intact and [e.actor for e in after.events][-1] == "cat"


# -- the rule itself: which later versions are lost races ------------------------------------------

KEY = SigningKey(bytes(range(32)))
OTHER = SigningKey(bytes(range(1, 33)))
STRANGER = SigningKey(bytes(range(2, 34)))
KEYS: dict[str, VerifyingKey] = {KEY.key_id: KEY.verifying_key, OTHER.key_id: OTHER.verifying_key}
ITEM = "ev-" + "a" * 26
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(
    previous: bytes | None,
    seq: int,
    type: str = "access",
    *,
    actor: str = "ann",
    signer: SigningKey = KEY,
    at: datetime | None = None,
    **details: Any,
) -> bytes:
    return encode_event(
        new_event(
            previous,
            evidence_id=ITEM,
            seq=seq,
            type=type,
            at=at or T0 + timedelta(minutes=seq),
            actor=actor,
            role="investigator",
            station="ws",
            details=details or {"purpose": actor},
            signer=signer,
        )
    )


def chain_of(*records: bytes) -> list[tuple[int, bytes]]:
    return list(enumerate(records))


@pytest.fixture
def opened() -> bytes:
    return event(None, 0, "ingest", actor="station-a", manifest_sha256="m" * 64, content_sha256="c" * 64)


def judge(
    records: list[tuple[int, bytes]], later: dict[int, list[bytes | None]]
) -> tuple[list[str], list[LostRace]]:
    problems, races = judge_later_versions(ITEM, records, later, KEYS)
    return [f"{p.position}: {p.message}" for p in problems], list(races)


def test_a_lost_append_re_appended_later_is_a_lost_race(opened: bytes) -> None:
    at = T0 + timedelta(hours=1)
    won = event(opened, 1, actor="ann", at=at)
    lost = event(opened, 1, actor="ben", signer=OTHER, at=at)
    again = event(won, 2, actor="ben", signer=OTHER, at=at)  # same event, same time, next position
    problems, races = judge(chain_of(opened, won, again), {1: [lost]})
    assert problems == []
    assert [(r.position, r.in_chain_at, r.event.actor) for r in races] == [(1, 2, "ben")]


def test_an_append_that_loses_twice_is_vouched_for_by_its_one_record(opened: bytes) -> None:
    """Three writers at once: the third loses at 1, then at 2, and its event lands at 3."""
    at = T0 + timedelta(hours=1)
    first = event(opened, 1, actor="ann", at=at)
    second = event(first, 2, actor="ben", at=at)
    third = event(second, 3, actor="cat", signer=OTHER, at=at)
    lost_at_1 = event(opened, 1, actor="cat", signer=OTHER, at=at)
    lost_at_2 = event(first, 2, actor="cat", signer=OTHER, at=at)
    problems, races = judge(chain_of(opened, first, second, third), {1: [lost_at_1], 2: [lost_at_2]})
    assert problems == []
    assert [(r.position, r.in_chain_at) for r in races] == [(1, 3), (2, 3)]


def test_the_same_record_written_twice_is_one_lost_race(opened: bytes) -> None:
    won = event(opened, 1)
    problems, races = judge(chain_of(opened, won), {1: [won, won]})
    assert problems == [] and [(r.position, r.in_chain_at) for r in races] == [(1, 1)]


def test_a_second_ingest_of_the_same_manifest_is_a_lost_race(opened: bytes) -> None:
    other = event(
        None, 0, "ingest", actor="station-a", signer=OTHER, manifest_sha256="m" * 64, content_sha256="c" * 64
    )
    problems, races = judge(chain_of(opened), {0: [other]})
    assert problems == [] and [(r.position, r.in_chain_at) for r in races] == [(0, 0)]
    assert "same ingest" in races[0].describe()


@pytest.mark.parametrize(
    ("later", "why"),
    [
        ("delete marker", "a delete marker over it"),
        ("not a record", "not a custody record"),
        ("unknown signer", "unknown key"),
        ("altered", "signature does not match"),
        ("other predecessor", "follows another event"),
        ("other position", "event 2 of"),
        ("other ingest", "not the same ingest"),
    ],
)
def test_any_other_later_version_is_an_overwritten_record(opened: bytes, later: str, why: str) -> None:
    won = event(opened, 1)
    position = 0 if later == "other ingest" else 1
    version: bytes | None = {
        "delete marker": lambda: None,
        "not a record": lambda: b"{}",
        "unknown signer": lambda: event(opened, 1, actor="ben", signer=STRANGER),
        "altered": lambda: event(opened, 1, actor="ben").replace(b'"ben"', b'"bob"'),
        "other predecessor": lambda: event(won, 1, actor="ben"),
        "other position": lambda: event(opened, 2, actor="ben"),
        "other ingest": lambda: event(None, 0, "ingest", manifest_sha256="f" * 64, content_sha256="c" * 64),
    }[later]()
    # even with its event re-appended, none of these is a race an append can lose
    again = event(won, 2, actor="ben", at=T0 + timedelta(minutes=1))
    problems, races = judge(chain_of(opened, won, again), {position: [version]})
    assert races == []
    [problem] = problems
    assert problem.startswith(f"{position}: has 2 versions: a record was overwritten") and why in problem


def test_a_lost_race_whose_event_is_nowhere_else_is_reported_not_a_problem(opened: bytes) -> None:
    won = event(opened, 1)
    lost = event(opened, 1, actor="ben", signer=OTHER)
    problems, races = judge(chain_of(opened, won), {1: [lost]})
    assert problems == [] and [r.in_chain_at for r in races] == [None]
