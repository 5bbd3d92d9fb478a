"""A storage admin runs retention with a simulated clock: non-evidential footage goes after 31 days and
not before, linked and held evidence stays, disposal leaves nothing decryptable but the record of it,
an interrupted disposal is finished by the next run, and storage refuses anyone who skips the policy.

A simulated clock only rehearses: applied, it never disposes of what the policy at the real date or a
storage lock still protects, so the footage here was recorded and docked weeks ago (``ingest_aged``)
and time passes for its storage lock (``let_locks_lapse``) as it would for real."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import storage.vault
from cli.commands import app
from evidence import layout
from evidence.access import Actor
from evidence.errors import AccessDenied, LockedError, NotFound, StorageUnavailable
from evidence.incident import parse_incident_ref
from evidence.manifest import Manifest
from evidence.retention import LinkFact, RetentionFacts, RetentionPolicy, decide, load_policy
from flows.holds import release_hold, set_hold
from flows.linking import link_items, unlink_items
from flows.records import record
from flows.retention import (
    RetentionLine,
    RetentionReport,
    check_disposal,
    decide_catalog,
    facts_from_catalog,
    run_retention,
)
from storage import lifecycle
from storage.base import ObjectInfo, Retention
from storage.catalog import disposals_finished_table
from storage.local import LocalStore
from storage.s3 import S3Store
from tests.factories import DEVICE_FOLDER, make_jpeg
from tests.station import Station, make_station

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = PROJECT_ROOT / "evidence" / "default_policy.toml"
ADMIN = Actor("sam", frozenset({"storage-admin"}))
INVESTIGATOR = Actor("ivy", frozenset({"investigator"}))
OFFICER = Actor("oscar", frozenset({"officer"}))
DA_CASE = parse_incident_ref("KNT-2026-000101")
TRIAL = parse_incident_ref("KNT-2026-000202")
USERS = """
[users.sam]
role = "storage-admin"
[users.ivy]
role = "investigator"
[users.oscar]
role = "officer"
"""
runner = CliRunner()


# -- helpers shared with the other retention test files ---------------------------------------------


def retention_station(data_dir: Path, **settings: Any) -> Station:
    station = make_station(data_dir, **settings)
    assert station.settings.users_file is not None
    station.settings.users_file.write_text(USERS, encoding="utf-8")
    return station


def photograph(device: Path, count: int, *, taken: datetime, seed: int) -> None:
    """``count`` small photos on the device, all captured at ``taken``."""
    for n in range(count):
        make_jpeg(
            device / DEVICE_FOLDER / f"IMG_{n + 1:04d}.JPG",
            size=(64, 48),
            taken=taken.replace(microsecond=0),
            gps=None,
            seed=seed + n,
        )


def ingest_recent(station: Station, device: Path, count: int, *, seed: int) -> list[str]:
    """``count`` small photos captured an hour ago (so the simulated clock counts from real time)."""
    photograph(device, count, taken=datetime.now(UTC) - timedelta(hours=1), seed=seed)
    report = station.ingest(device)
    return [str(o.evidence_id) for o in report.by_status("ingested")]


def ingest_aged(
    station: Station,
    device: Path,
    count: int,
    *,
    seed: int,
    recorded_days: int = 40,
    docked_days: int = 20,
) -> list[str]:
    """``count`` small photos recorded ``recorded_days`` days ago and docked ``docked_days`` days
    ago, so that the policy at the real date may let them go (:func:`docked_days_ago`). Their lock
    still has days to run, as it would have (a lock must lie in the future when it is given):
    :func:`let_locks_lapse` makes that time pass."""
    photograph(device, count, taken=datetime.now(UTC) - timedelta(days=recorded_days), seed=seed)
    with docked_days_ago(docked_days):
        report = station.ingest(device)
    return [str(o.evidence_id) for o in report.by_status("ingested")]


@contextmanager
def docked_days_ago(days: int) -> Iterator[None]:
    """Ingests inside are stored as on a dock ``days`` ago: the vault's clock, which gives the
    manifest its ingest time and the objects their lock (31 days from then), is set back. Less than
    31 days: a lock is refused unless it lies in the future, as S3 refuses it."""
    assert days < 31
    real = datetime.now(UTC)
    docked = real - timedelta(days=days)
    with mock.patch.object(storage.vault, "_now", lambda: docked + (datetime.now(UTC) - real)):
        yield


def let_locks_lapse(station: Station, *evidence_ids: str) -> None:
    """Time passes for the items' storage locks: every GOVERNANCE-locked version of their manifest,
    content and thumbnail gets a retain-until a moment past, as a storage admin holding the governance
    bypass could set it (this program never does). On the local store through its own record update,
    on S3 with a raw PutObjectRetention and the bypass header. COMPLIANCE locks and the custody
    chain's lock are left as they are."""
    lapsed = datetime.now(UTC) - timedelta(seconds=1)
    store = station.vault.store
    for evidence_id in evidence_ids:
        for info in lifecycle.item_objects(station.vault, evidence_id).versions:
            if info.retention is None or info.retention.mode != "GOVERNANCE":
                continue
            if isinstance(store, LocalStore):

                def shorten(version_record: dict[str, Any]) -> None:
                    version_record["retention"]["retain_until"] = lapsed.isoformat()

                store._update_record(info.key, info.version_id, shorten, "shortening the lock of")
            else:
                assert isinstance(store, S3Store)
                store.client.put_object_retention(
                    Bucket=store.bucket,
                    Key=store.object_key(info.key),
                    VersionId=info.version_id,
                    Retention={"Mode": "GOVERNANCE", "RetainUntilDate": lapsed},
                    BypassGovernanceRetention=True,
                )
        remaining = lifecycle.item_objects(station.vault, evidence_id).locked_at(datetime.now(UTC))
        assert all(info.retention and info.retention.mode == "COMPLIANCE" for info in remaining)


def recorded(station: Station, evidence_id: str) -> datetime:
    item = station.catalog.item(evidence_id)
    assert item is not None and item.recorded_at is not None
    return item.recorded_at


def policy_of(station: Station) -> RetentionPolicy:
    assert station.settings.retention_policy is not None
    return load_policy(station.settings.retention_policy)


def run_at(
    station: Station, moment: datetime, *, apply: bool = True, csv_path: Path | None = None
) -> RetentionReport:
    return run_retention(
        station.vault, station.catalog, policy_of(station), ADMIN, now=moment, apply=apply, csv_path=csv_path
    )


def by_id(report: RetentionReport) -> dict[str, RetentionLine]:
    return {line.evidence_id: line for line in report.lines}


def versions_of(station: Station, manifest: Manifest) -> list[Any]:
    """Every stored version (and delete marker) of the item's manifest, content and thumbnail."""
    keys = [layout.manifest_key(manifest.evidence_id), manifest.content.key]
    if manifest.thumbnail is not None:
        keys.append(manifest.thumbnail.key)
    return [info for key in keys for info in station.vault.store.list_versions(key)]


def chain_types(station: Station, evidence_id: str) -> list[str]:
    return [event.type for event in station.vault.custody.events(evidence_id)]


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return retention_station(tmp_path / "station")


# -- the story ----------------------------------------------------------------------------------


def test_retention_with_a_simulated_clock(station: Station, tmp_path: Path) -> None:
    plain, da, held = ingest_aged(station, tmp_path / "BWC-RET01", 3, seed=7000)
    link_items(station.vault, station.catalog, [da], DA_CASE, INVESTIGATOR, category="domestic-abuse")
    link_items(station.vault, station.catalog, [held], TRIAL, INVESTIGATOR)
    set_hold(station.vault, station.catalog, TRIAL, "Crown Court trial listed", INVESTIGATOR)
    # not relevant to the charge after all, but the hold stays until the court is done
    unlink_items(station.vault, station.catalog, [held], TRIAL, INVESTIGATOR, reason="not relevant")
    start = recorded(station, plain)
    manifests = {i: station.vault.manifest(i) for i in (plain, da, held)}

    day_30 = run_at(station, start + timedelta(days=30))
    assert plain not in by_id(day_30) and day_30.counts["keep"] == 2
    extended = by_id(day_30)[da]
    assert extended.action == "extend" and extended.outcome.startswith("storage lock extended")
    retention_event = station.vault.custody.events(da)[-1]
    assert retention_event.type == "retention" and retention_event.actor == "sam"
    da_until = datetime.fromisoformat(retention_event.details["retain_until"])
    assert (
        da_until.year == datetime.now(UTC).year + 10
        and retention_event.details["category"] == "evidential-da"
    )
    for info in versions_of(station, manifests[da]) + list(
        station.vault.store.list_versions(f"custody/{da}/")
    ):
        assert info.retention.retain_until >= da_until, info.key
    assert all(len(versions_of(station, m)) == (3 if m.thumbnail else 2) for m in manifests.values())

    # storage still locks the footage (31 days from its dock): not even a dry run promises a disposal
    lock = station.vault.store.head(manifests[plain].content.key).retention
    assert lock is not None and lock.retain_until > datetime.now(UTC)
    locked = by_id(run_at(station, start + timedelta(days=32), apply=False))[plain]
    assert locked.outcome.startswith("not disposed: storage lock in force until")

    let_locks_lapse(station, plain, held)
    lengths = {i: len(station.vault.custody.events(i)) for i in (plain, da, held)}
    dry = run_at(station, start + timedelta(days=32), apply=False, csv_path=tmp_path / "dry.csv")
    assert by_id(dry)[plain].outcome.startswith("would dispose of 3 stored version(s)")
    assert dry.counts == {"held past date": 1, "keep": 1, "would dispose": 1}
    assert {i: len(station.vault.custody.events(i)) for i in lengths} == lengths
    assert len(versions_of(station, manifests[plain])) == 3
    rows = list(csv.DictReader((tmp_path / "dry.csv").open(encoding="utf-8")))
    assert sorted(r["evidence_id"] for r in rows) == sorted((plain, da, held))
    assert all(r["reason"] and r["rule"] for r in rows)

    day_32 = run_at(station, start + timedelta(days=32))
    assert by_id(day_32)[plain].outcome.startswith("disposed: 3 stored version(s) deleted")
    assert by_id(day_32)[held].outcome == "kept past its date: legal hold"
    assert da not in by_id(day_32)
    assert day_32.counts == {"disposed": 1, "held past date": 1, "keep": 1}

    # nothing of the item is left, in any version; it cannot be read; its record remains and verifies
    assert versions_of(station, manifests[plain]) == []
    assert lifecycle.item_objects(station.vault, plain).empty
    with pytest.raises(NotFound):
        station.vault.manifest(plain)
    with pytest.raises(NotFound, match=f"{plain} was disposed of on .* under rule 'non-evidential'"):
        lifecycle.require_item(station.vault, plain)
    assert station.vault.custody.verify(plain).intact
    assert chain_types(station, plain) == ["ingest", "disposal"]
    disposal = station.vault.custody.events(plain)[-1]
    assert disposal.actor == "sam" and disposal.role == "storage-admin"
    assert disposal.details["rule"] == "non-evidential" and disposal.details["objects_deleted"] == 3
    assert disposal.details["policy"] == policy_of(station).label
    assert "31 days from recording" in disposal.details["reason"]
    for info in station.vault.store.list_versions(f"custody/{plain}/"):
        assert info.retention.retain_until > datetime.now(UTC) + timedelta(days=6 * 365), "record outlives it"
    catalogued = station.catalog.item(plain)
    assert catalogued is not None and catalogued.disposed_at is not None

    release_hold(station.vault, station.catalog, TRIAL, "verdict given", ADMIN)
    after_release = run_at(station, start + timedelta(days=32))
    assert by_id(after_release)[held].outcome.startswith("disposed")
    assert versions_of(station, manifests[held]) == []
    assert chain_types(station, held) == ["ingest", "link", "hold", "unlink", "release", "disposal"]
    assert station.vault.has_item(da)

    # the next nights change nothing more
    again = run_at(station, start + timedelta(days=33))
    assert again.counts == {"disposed before": 2, "keep": 1}
    assert len(station.vault.custody.events(plain)) == 2


def test_get_of_a_disposed_item_fails_cleanly(station: Station, tmp_path: Path) -> None:
    (plain,) = ingest_aged(station, tmp_path / "BWC-RET02", 1, seed=7100)
    let_locks_lapse(station, plain)
    run_at(station, recorded(station, plain) + timedelta(days=32))
    env = os.environ | {
        "EVIDENCE_DATA_DIR": str(station.settings.data_dir),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--user", "ivy", "get", plain, "--out", str(tmp_path / "x.jpg")],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == NotFound.exit_code, result.stderr
    assert plain in result.stderr and "Traceback" not in result.stderr
    assert "was disposed of on" in result.stderr and "non-evidential" in result.stderr
    assert not (tmp_path / "x.jpg").exists()


def test_decisions_come_from_the_catalog_alone(station: Station, tmp_path: Path, monkeypatch: Any) -> None:
    ids = ingest_recent(station, tmp_path / "BWC-RET03", 3, seed=7200)
    store = station.vault.store
    calls: list[str] = []
    for name in ("get", "head", "list", "list_versions", "exists"):
        original = getattr(store, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(store, name, counted)
    report = run_at(station, recorded(station, ids[0]) + timedelta(days=10))
    assert report.counts == {"keep": 3} and report.lines == []
    assert calls == [], "items that need nothing must not touch the vault"


# -- a simulated clock never destroys what the real date protects ---------------------------------------


def test_an_applied_run_on_a_simulated_clock_records_it_in_every_event_it_writes(
    station: Station, tmp_path: Path
) -> None:
    plain, da = ingest_aged(station, tmp_path / "BWC-RET20", 2, seed=8400)
    link_items(station.vault, station.catalog, [da], DA_CASE, INVESTIGATOR, category="domestic-abuse")
    let_locks_lapse(station, plain)
    moment = recorded(station, plain) + timedelta(days=32)
    catalogued = station.catalog.item(plain)
    assert catalogued is not None
    at_real_date = decide(facts_from_catalog(catalogued), policy_of(station), datetime.now(UTC))
    assert at_real_date.action == "dispose"

    report = run_at(station, moment, csv_path=tmp_path / "applied.csv")
    assert report.counts == {"disposed": 1, "lock extended": 1}
    assert report.simulated and report.as_json()["simulated"] is True
    assert not station.vault.has_item(plain)
    disposal = station.vault.custody.events(plain)[-1]
    assert disposal.type == "disposal" and disposal.details["simulated_now"] == moment.isoformat()
    # the event says why the disposal was lawful at the real date, when it happened
    assert (disposal.details["rule"], disposal.details["reason"]) == (
        at_real_date.category,
        at_real_date.reason,
    )
    extension = station.vault.custody.events(da)[-1]
    assert extension.type == "retention" and extension.details["simulated_now"] == moment.isoformat()
    rows = list(csv.DictReader((tmp_path / "applied.csv").open(encoding="utf-8")))
    assert {r["simulated_now"] for r in rows} == {moment.isoformat()}


def test_extending_locks_on_a_simulated_clock_records_it_and_goes_no_further_than_the_policy(
    station: Station, tmp_path: Path
) -> None:
    (da,) = ingest_recent(station, tmp_path / "BWC-RET21", 1, seed=8500)
    link_items(station.vault, station.catalog, [da], DA_CASE, INVESTIGATOR, category="domestic-abuse")
    rehearsal = (datetime.now(UTC) + timedelta(days=5 * 365)).replace(microsecond=0)
    report = run_retention(
        station.vault,
        station.catalog,
        policy_of(station),
        ADMIN,
        now=rehearsal,
        extend_locks=True,
    )
    assert report.counts == {"lock extended": 1}
    event = station.vault.custody.events(da)[-1]
    assert event.type == "retention" and event.details["simulated_now"] == rehearsal.isoformat()
    catalogued = station.catalog.item(da)
    assert catalogued is not None
    policy_date = decide(facts_from_catalog(catalogued), policy_of(station), datetime.now(UTC)).keep_until
    assert datetime.fromisoformat(event.details["retain_until"]) == policy_date
    assert lifecycle.item_objects(station.vault, da).locked_until() == policy_date


def test_an_interrupted_disposal_is_finished_only_when_the_real_date_allows_it(
    station: Station, tmp_path: Path
) -> None:
    """A disposal begun by a run on a simulated clock (as this program once allowed) is not finished
    by the next: finishing it is a disposal like any other."""
    (item,) = ingest_recent(station, tmp_path / "BWC-RET22", 1, seed=8600)
    record(
        station.vault,
        station.catalog,
        item,
        "disposal",
        actor="sam",
        role="storage-admin",
        details={"rule": "non-evidential", "policy": "p", "reason": "elapsed", "objects_deleted": 3},
    )
    report = run_at(station, datetime.now(UTC) + timedelta(days=4 * 365))
    line = by_id(report)[item]
    assert line.outcome.startswith("not disposed: policy at the real date keeps it until"), line
    assert report.counts == {"kept at the real date": 1}
    assert len(lifecycle.item_objects(station.vault, item).versions) == 3


@settings(max_examples=300, deadline=None)
@given(
    simulated_days=st.integers(-400, 4000),
    recorded_days=st.integers(0, 400),
    docked_days=st.integers(0, 400),
    lock_days=st.integers(-400, 400),
    lock_mode=st.sampled_from(["GOVERNANCE", "COMPLIANCE"]),
    held_in_chain=st.booleans(),
    held_in_storage=st.booleans(),
    linked=st.sampled_from([None, "no-crime", "domestic-abuse"]),
)
def test_applying_never_disposes_of_an_item_protected_at_the_real_clock(
    simulated_days: int,
    recorded_days: int,
    docked_days: int,
    lock_days: int,
    lock_mode: str,
    held_in_chain: bool,
    held_in_storage: bool,
    linked: str | None,
) -> None:
    """Whatever the simulated clock says: a lock in force by the real clock, a hold in the chain or
    in storage, or a policy that keeps the item at the real date, and nothing is disposed of."""
    real = datetime(2027, 3, 1, 12, tzinfo=UTC)
    ingested = real - timedelta(days=docked_days)
    facts = RetentionFacts(
        "ev-" + "a" * 26,
        ingested,
        ingested - timedelta(days=recorded_days),
        () if linked is None else (LinkFact("KNT-2026-000001", linked, ingested),),
        ("incident:KNT-2026-000001",) if held_in_chain else (),
    )
    lock = Retention(lock_mode, real + timedelta(days=lock_days))  # type: ignore[arg-type]
    versions = tuple(
        ObjectInfo(f"objects/ab/{n}", f"v{n}", 10, None, lock, held_in_storage, ingested) for n in range(3)
    )
    objects = lifecycle.ItemObjects(facts.evidence_id, versions[2:], versions[:2])
    policy = load_policy(DEFAULT_POLICY)
    decision, refusal = check_disposal(
        facts,
        objects,
        policy,
        now=real + timedelta(days=simulated_days),
        real_now=real,
        applying=True,
    )
    at_real_date = decide(facts, policy, real)
    at_simulated = decide(facts, policy, real + timedelta(days=simulated_days))
    protected = at_real_date.action != "dispose" or held_in_storage or lock.retain_until > real
    if protected:
        assert refusal is not None
    elif at_simulated.action == "dispose":
        assert refusal is None, "what both clocks and storage allow is disposed of"
    if refusal is None:  # permitted by the real date's decision, which the disposal event records
        assert decision == at_real_date and at_simulated.action == "dispose"


# -- what storage and the chain can veto ----------------------------------------------------------


def test_compliance_locked_items_are_reported_not_disposed(tmp_path: Path) -> None:
    station = retention_station(tmp_path / "station", lock_mode="COMPLIANCE")
    (item,) = ingest_aged(station, tmp_path / "BWC-RET04", 1, seed=7300)
    let_locks_lapse(station, item)  # nobody can shorten a COMPLIANCE lock: it still runs
    manifest = station.vault.manifest(item)
    report = run_at(station, recorded(station, item) + timedelta(days=32))
    outcome = by_id(report)[item].outcome
    assert outcome.startswith("not disposed: storage lock in force until") and "COMPLIANCE" in outcome
    assert report.counts == {"locked by storage": 1}
    assert len(versions_of(station, manifest)) == 3 and chain_types(station, item) == ["ingest"]


def test_a_legal_hold_in_storage_alone_blocks_disposal(station: Station, tmp_path: Path) -> None:
    (item,) = ingest_aged(station, tmp_path / "BWC-RET05", 1, seed=7400)
    let_locks_lapse(station, item)
    lifecycle.set_hold(station.vault, item, True)  # e.g. set straight on the bucket by a lawyer's request
    report = run_at(station, recorded(station, item) + timedelta(days=32))
    assert "legal hold" in by_id(report)[item].outcome and "not disposed" in by_id(report)[item].outcome
    assert station.vault.has_item(item) and chain_types(station, item) == ["ingest"]


def test_a_hold_the_catalog_has_not_seen_blocks_disposal(station: Station, tmp_path: Path) -> None:
    (item,) = ingest_aged(station, tmp_path / "BWC-RET06", 1, seed=7500)
    let_locks_lapse(station, item)
    # another machine holds the item; this station's catalog never hears of it
    station.vault.custody.append(
        item, "hold", actor="ivy", role="investigator", details={"hold_id": "h-1", "reason": "appeal"}
    )
    report = run_at(station, recorded(station, item) + timedelta(days=32))
    assert by_id(report)[item].outcome.startswith("kept")
    assert station.vault.has_item(item)


def test_a_broken_chain_stops_disposal(station: Station, tmp_path: Path) -> None:
    (item,) = ingest_recent(station, tmp_path / "BWC-RET07", 1, seed=7600)
    record_key = layout.custody_key(item, 0)
    info = station.vault.store.head(record_key)
    data_file = (
        station.settings.data_dir / "vault" / "objects" / record_key / "@v" / f"{info.version_id}.data"
    )
    data_file.chmod(0o644)
    data_file.write_bytes(data_file.read_bytes().replace(b"ingest-station", b"ingest-STATION"))
    report = run_at(station, recorded(station, item) + timedelta(days=32))
    line = by_id(report)[item]
    assert line.outcome.startswith("failed") and "custody chain is broken" in line.outcome
    assert station.vault.has_item(item) and report.failures == [line]


def test_an_interrupted_disposal_is_finished_next_run(
    station: Station, tmp_path: Path, monkeypatch: Any
) -> None:
    first, second = sorted(ingest_aged(station, tmp_path / "BWC-RET08", 2, seed=7700))
    let_locks_lapse(station, first, second)
    manifests = {i: station.vault.manifest(i) for i in (first, second)}
    store = station.vault.store
    original = store.delete_version
    failed: list[str] = []

    def failing(key: str, version_id: str, **kwargs: Any) -> None:
        if key.endswith("manifest.json") and not failed:
            failed.append(key)  # the connection drops just before the manifest (and key) go
            raise StorageUnavailable("connection reset while deleting")
        original(key, version_id, **kwargs)

    monkeypatch.setattr(store, "delete_version", failing)
    moment = recorded(station, first) + timedelta(days=32)
    interrupted = run_at(station, moment)
    assert by_id(interrupted)[first].outcome.startswith("failed: connection reset")
    assert by_id(interrupted)[second].outcome.startswith("disposed"), "one failure does not stop the rest"
    assert [i.key for i in versions_of(station, manifests[first])] == [layout.manifest_key(first)]
    assert chain_types(station, first) == ["ingest", "disposal"]

    monkeypatch.setattr(store, "delete_version", original)
    # however long before anyone runs retention again (the checks once stopped after 31 days), and
    # whether or not the catalog was rebuilt meanwhile, the leftover is still found
    station.catalog.rebuild(station.vault)
    a_year_on = datetime.now(UTC) + timedelta(days=365)
    pending = decide_catalog(
        station.catalog.iter_items(include_disposed=True),
        policy_of(station),
        station.settings,
        moment,
        real_now=a_year_on,
    )
    assert [(p.evidence_id, p.kind) for p in pending.planned] == [(first, "unfinished")]
    assert pending.counts["disposed before"] == 1, "the finished disposal is not checked again"

    finished = run_at(station, moment)
    assert by_id(finished)[first].outcome == "interrupted disposal finished: 1 stored version(s) deleted"
    assert versions_of(station, manifests[first]) == []
    assert chain_types(station, first) == ["ingest", "disposal"], "the disposal is recorded once"
    settled = run_at(station, moment)
    assert first not in by_id(settled) and settled.counts["disposed before"] == 2
    station.catalog.rebuild(station.vault)
    assert run_at(station, moment).counts["disposed before"] == 2, "a rebuild sees both finished"


def test_an_unforeseen_fault_on_one_item_does_not_stop_the_others(
    station: Station, tmp_path: Path, monkeypatch: Any
) -> None:
    first, second = sorted(ingest_aged(station, tmp_path / "BWC-RET12", 2, seed=7900))
    let_locks_lapse(station, first, second)
    original = lifecycle.dispose

    def faulty(vault: Any, objects: lifecycle.ItemObjects) -> int:
        if objects.evidence_id == first:
            raise KeyError("x-amz-version-id")  # say, a store answer this program does not expect
        return original(vault, objects)

    monkeypatch.setattr(lifecycle, "dispose", faulty)
    report = run_at(station, recorded(station, first) + timedelta(days=32))
    assert by_id(report)[first].outcome.startswith("failed: unexpected KeyError")
    assert by_id(report)[second].outcome.startswith("disposed: 3")
    assert not station.vault.has_item(second)
    assert station.vault.has_item(first)


def test_a_disposal_finished_before_the_catalog_knew_is_confirmed_once(
    station: Station, tmp_path: Path
) -> None:
    """A catalog that never saw the disposal finish (an older catalog, or the event recorded on
    another machine) checks the vault once, then counts the item as disposed of."""
    (item,) = ingest_aged(station, tmp_path / "BWC-RET11", 1, seed=7800)
    let_locks_lapse(station, item)
    moment = recorded(station, item) + timedelta(days=32)
    run_at(station, moment)
    with station.catalog._engine.begin() as conn:  # as a catalog made before the confirmation table
        conn.execute(disposals_finished_table.delete())
    assert by_id(run_at(station, moment))[item].outcome == "disposal complete"
    assert item not in by_id(run_at(station, moment))


def test_only_storage_admins_run_retention(station: Station) -> None:
    for actor in (INVESTIGATOR, OFFICER):
        with pytest.raises(AccessDenied, match="may not retention"):
            run_retention(station.vault, station.catalog, policy_of(station), actor, now=datetime.now(UTC))


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("0001-01-01T00:00:00+01:00", datetime.min.replace(tzinfo=UTC)),  # before year 1 in UTC
        ("9999-12-31T23:59:59-14:00", datetime.max.replace(tzinfo=UTC)),  # after year 9999 in UTC
        ("0001-01-01", datetime.min.replace(tzinfo=UTC)),
    ],
)
def test_a_simulated_clock_at_the_ends_of_the_calendar_is_read_without_overflow(
    given: str, read: datetime
) -> None:
    from flows.retention import parse_now

    assert parse_now(given) == read


@pytest.mark.parametrize(
    ("broken", "what"),
    [
        ("policy missing", "retention policy"),
        ("policy not TOML", "retention policy"),
        ("keys missing", "recipient (public key) file"),
    ],
)
def test_files_a_retention_run_needs_are_checked_before_any_flow_starts(
    station: Station,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    broken: str,
    what: str,
) -> None:
    """A missing or broken policy file, or missing keys, is one line and exit 2 before the flow
    starts: no failed flow run, no Prefect traceback in front of the line."""
    import flows.retention
    from tests.test_link_incidents import front_door

    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    if broken == "policy missing":
        monkeypatch.setenv("EVIDENCE_RETENTION_POLICY", str(tmp_path / "nope.toml"))
    elif broken == "policy not TOML":
        (tmp_path / "policy.toml").write_text("[categories.unlinked\n", encoding="utf-8")
        monkeypatch.setenv("EVIDENCE_RETENTION_POLICY", str(tmp_path / "policy.toml"))
    else:
        monkeypatch.setenv("EVIDENCE_KEYS_DIR", str(tmp_path / "no-keys"))

    def flow_run(**parameters: object) -> None:
        raise AssertionError("a flow run started")

    monkeypatch.setattr(flows.retention, "retention", flow_run)
    code, _, stderr = front_door(["--user", "sam", "retention", "run"], capsys)
    assert code == 2, stderr
    assert stderr.startswith(f"error: {what}") and stderr.count("\n") == 1, stderr


# -- both stores refuse a disposal that skips the policy ----------------------------------------------


@pytest.fixture(params=["local", "s3"])
def any_store_station(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Station]:
    if request.param == "local":
        yield retention_station(tmp_path / "station")
        return
    from moto import mock_aws

    with mock_aws():
        yield retention_station(tmp_path / "station", vault_url="s3://retention-test/vault")


def test_a_record_appended_after_a_lock_extension_is_locked_as_long_as_the_chain(
    any_store_station: Station, tmp_path: Path
) -> None:
    """An access between two retention runs must not be the one record of a years-long chain that
    an admin could delete after the default 31 days."""
    station = any_store_station
    (item,) = ingest_recent(station, tmp_path / "BWC-RET10", 1, seed=7900)
    years = (datetime.now(UTC) + timedelta(days=7 * 365)).replace(microsecond=0)
    lifecycle.extend_records(station.vault, item, years)
    station.vault.custody.append(
        item, "access", actor="det-smith", role="investigator", details={"purpose": "review"}
    )
    records = [v for v in lifecycle.custody_versions(station.vault, item) if not v.is_delete_marker]
    assert len(records) == 2
    assert all(r.retention is not None and r.retention.retain_until >= years for r in records)
    newest = max(records, key=lambda r: layout.custody_position(r.key))
    with pytest.raises(LockedError):
        station.vault.store.delete_version(newest.key, newest.version_id)


def test_a_lock_is_extended_in_the_mode_it_has(any_store_station: Station, tmp_path: Path) -> None:
    """A vault switched to COMPLIANCE extends the GOVERNANCE locks it gave before as GOVERNANCE: S3
    changes a lock's mode only with the governance bypass, which the program never has."""
    station = any_store_station
    (item,) = ingest_recent(station, tmp_path / "BWC-RET11", 1, seed=7950)
    settings = station.settings.model_copy(update={"lock_mode": "COMPLIANCE"})
    years = (datetime.now(UTC) + timedelta(days=7 * 365)).replace(microsecond=0)
    lifecycle.extend_records(storage.vault.Vault.open(settings, journal=station.journal), item, years)
    records = [v for v in lifecycle.custody_versions(station.vault, item) if not v.is_delete_marker]
    assert records and all(
        r.retention is not None and r.retention.mode == "GOVERNANCE" and r.retention.retain_until >= years
        for r in records
    )


def test_storage_refuses_deletion_before_the_lock_date(any_store_station: Station, tmp_path: Path) -> None:
    """The storage lock backs the policy: until it runs out neither the store, nor disposal, nor a
    retention run whose policy says dispose deletes a version; once it has, the run disposes."""
    station = any_store_station
    (item,) = ingest_aged(station, tmp_path / "BWC-RET09", 1, seed=7800)
    objects = lifecycle.item_objects(station.vault, item)
    assert len(objects.versions) == 3
    for info in objects.versions:
        with pytest.raises(LockedError, match="GOVERNANCE retention until"):
            station.vault.store.delete_version(info.key, info.version_id)
    with pytest.raises(LockedError, match="storage lock in force until"):
        lifecycle.dispose(station.vault, objects)
    early = run_at(station, recorded(station, item) + timedelta(days=32))
    assert by_id(early)[item].outcome.startswith("not disposed: storage lock in force until")
    assert len(lifecycle.item_objects(station.vault, item).versions) == 3
    assert chain_types(station, item) == ["ingest"]

    let_locks_lapse(station, item)
    lifecycle.set_hold(station.vault, item, True)
    with pytest.raises(LockedError, match="legal hold"):
        lifecycle.dispose(station.vault, lifecycle.item_objects(station.vault, item))
    lifecycle.set_hold(station.vault, item, False)

    report = run_at(station, recorded(station, item) + timedelta(days=32))
    assert by_id(report)[item].outcome.startswith("disposed: 3")
    assert lifecycle.item_objects(station.vault, item).empty
    assert not [v for v in station.vault.store.list_versions("objects/") if not v.is_delete_marker]
    assert station.vault.custody.verify(item).intact


# -- the Prefect flow and the command -----------------------------------------------------------------


def test_extending_locks_alone_protects_linked_items_and_disposes_of_nothing(
    prefect_harness: None, station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nightly deployment: storage locks keep up with links every night, while disposal waits
    for a person's --apply. Without it a DA item's lock lapsed 31 days after ingest."""
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    plain, da = ingest_recent(station, tmp_path / "BWC-RET13", 2, seed=8300)
    link_items(station.vault, station.catalog, [da], DA_CASE, INVESTIGATOR, category="domestic-abuse")
    lock_before = lifecycle.item_objects(station.vault, da).locked_until()
    assert lock_before is not None and lock_before < datetime.now(UTC) + timedelta(days=32)
    when = (recorded(station, plain) + timedelta(days=32)).isoformat()

    result = runner.invoke(
        app, ["--user", "sam", "retention", "run", "--now", when, "--extend-locks", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["applied"], doc["locks_extended"]) == (False, True)
    assert doc["counts"] == {"would dispose": 1, "lock extended": 1}
    assert station.vault.has_item(plain) and chain_types(station, plain) == ["ingest"]
    lock_after = lifecycle.item_objects(station.vault, da).locked_until()
    assert lock_after is not None and lock_after > datetime.now(UTC) + timedelta(days=9 * 365)
    assert chain_types(station, da)[-1] == "retention"
    assert "locks-extended" in Path(doc["csv"]).name


def test_cli_runs_the_retention_flow(
    prefect_harness: None, station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    plain, da = ingest_aged(station, tmp_path / "BWC-RET10", 2, seed=7900)
    link_items(station.vault, station.catalog, [da], DA_CASE, INVESTIGATOR, category="domestic-abuse")
    let_locks_lapse(station, plain)
    when = (recorded(station, plain) + timedelta(days=32)).isoformat()

    refused = runner.invoke(app, ["--user", "ivy", "retention", "run", "--now", when])
    assert isinstance(refused.exception, AccessDenied)

    dry = runner.invoke(app, ["--user", "sam", "retention", "run", "--now", when, "--json"])
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.stdout)
    assert doc["applied"] is False and doc["counts"] == {"would dispose": 1, "would extend lock": 1}
    assert station.vault.has_item(plain)
    with Path(doc["csv"]).open(encoding="utf-8") as handle:
        assert sorted(r["evidence_id"] for r in csv.DictReader(handle)) == sorted((plain, da))

    csv_path = tmp_path / "applied.csv"
    applied = runner.invoke(
        app, ["--user", "sam", "retention", "run", "--now", when, "--apply", "--csv", str(csv_path)]
    )
    assert applied.exit_code == 0, applied.output
    assert "disposed" in applied.stdout and "lock extended" in applied.stdout
    assert not station.vault.has_item(plain) and station.vault.has_item(da)
    assert csv_path.exists()

    import asyncio

    from prefect.client.orchestration import get_client

    async def artifact_keys() -> list[object]:
        async with get_client() as client:
            return [a.key for a in await client.read_artifacts()]

    assert "retention-report" in asyncio.run(artifact_keys())

    bad = runner.invoke(app, ["--user", "sam", "retention", "run", "--now", "next tuesday"])
    assert "--now" in str(bad.exception)


def test_applying_a_far_future_clock_disposes_of_nothing_the_real_date_or_a_lock_protects(
    prefect_harness: None, station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Footage docked minutes ago, and footage the policy would let go today but whose storage lock
    still runs: a rehearsal four years ahead applied for real deletes neither, says why, and says the clock
    was simulated wherever the run is reported."""
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    (fresh,) = ingest_recent(station, tmp_path / "BWC-RET23", 1, seed=8700)
    (locked,) = ingest_aged(station, tmp_path / "BWC-RET24", 1, seed=8800)
    rehearsal = (datetime.now(UTC) + timedelta(days=4 * 365)).replace(microsecond=0).isoformat()

    dry = runner.invoke(app, ["--user", "sam", "retention", "run", "--now", rehearsal])
    assert dry.exit_code == 0, dry.output
    assert f"SIMULATED {rehearsal}" in dry.stdout and "would dispose" in dry.stdout

    csv_path = tmp_path / "applied.csv"
    applied = runner.invoke(
        app,
        [
            "--user",
            "sam",
            "retention",
            "run",
            "--now",
            rehearsal,
            "--apply",
            "--json",
            "--csv",
            str(csv_path),
        ],
    )
    assert applied.exit_code == 0, applied.output
    doc = json.loads(applied.stdout)
    assert (doc["simulated"], doc["applied"], doc["now"]) == (True, True, rehearsal)
    outcomes = {item["evidence_id"]: item["outcome"] for item in doc["items"]}
    assert outcomes[fresh].startswith("not disposed: policy at the real date keeps it until")
    assert outcomes[locked].startswith("not disposed: storage lock in force until")
    assert doc["counts"] == {"kept at the real date": 1, "locked by storage": 1}
    for item in (fresh, locked):
        assert station.vault.has_item(item) and chain_types(station, item) == ["ingest"]
        assert len(lifecycle.item_objects(station.vault, item).versions) == 3
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert [r["simulated_now"] for r in rows] == [rehearsal, rehearsal]

    import asyncio

    from prefect.client.orchestration import get_client

    async def descriptions() -> list[str]:
        async with get_client() as client:
            return [a.description or "" for a in await client.read_artifacts()]

    assert any(f"SIMULATED {rehearsal}" in d and "applied" in d for d in asyncio.run(descriptions()))
