"""A storage admin runs retention with a simulated clock: non-evidential footage goes after 31 days and
not before, linked and held evidence stays, disposal leaves nothing decryptable but the record of it,
an interrupted disposal is finished by the next run, and storage refuses anyone who skips the policy."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evidence import layout
from evidence.access import Actor
from evidence.errors import AccessDenied, LockedError, NotFound, StorageUnavailable
from evidence.incident import parse_incident_ref
from evidence.manifest import Manifest
from evidence.retention import RetentionPolicy, load_policy
from flows.commands import app
from flows.holds import release_hold, set_hold
from flows.linking import link_items, unlink_items
from flows.retention import RetentionLine, RetentionReport, decide_catalog, run_retention
from storage import lifecycle
from storage.catalog import disposals_finished_table
from tests.factories import DEVICE_FOLDER, make_jpeg
from tests.station import Station, make_station

PROJECT_ROOT = Path(__file__).resolve().parent.parent
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


def ingest_recent(station: Station, device: Path, count: int, *, seed: int) -> list[str]:
    """``count`` small photos captured an hour ago (so the simulated clock counts from real time)."""
    taken = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    for n in range(count):
        make_jpeg(
            device / DEVICE_FOLDER / f"IMG_{n + 1:04d}.JPG",
            size=(64, 48),
            taken=taken,
            gps=None,
            seed=seed + n,
        )
    report = station.ingest(device)
    return [str(o.evidence_id) for o in report.by_status("ingested")]


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
    plain, da, held = ingest_recent(station, tmp_path / "BWC-RET01", 3, seed=7000)
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

    # storage still locks the footage for real: only the admin's governance bypass can dispose at day 32
    lock = station.vault.store.head(manifests[plain].content.key).retention
    assert lock is not None and lock.retain_until > datetime.now(UTC)

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
    (plain,) = ingest_recent(station, tmp_path / "BWC-RET02", 1, seed=7100)
    run_at(station, recorded(station, plain) + timedelta(days=32))
    env = os.environ | {
        "EVIDENCE_DATA_DIR": str(station.settings.data_dir),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "flows", "--user", "ivy", "get", plain, "--out", str(tmp_path / "x.jpg")],
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


# -- what storage and the chain can veto ----------------------------------------------------------


def test_compliance_locked_items_are_reported_not_disposed(tmp_path: Path) -> None:
    station = retention_station(tmp_path / "station", lock_mode="COMPLIANCE")
    (item,) = ingest_recent(station, tmp_path / "BWC-RET04", 1, seed=7300)
    manifest = station.vault.manifest(item)
    report = run_at(station, recorded(station, item) + timedelta(days=32))
    outcome = by_id(report)[item].outcome
    assert outcome.startswith("not disposed") and "locked by storage until" in outcome
    assert report.counts == {"locked by storage": 1}
    assert len(versions_of(station, manifest)) == 3 and chain_types(station, item) == ["ingest"]


def test_a_legal_hold_in_storage_alone_blocks_disposal(station: Station, tmp_path: Path) -> None:
    (item,) = ingest_recent(station, tmp_path / "BWC-RET05", 1, seed=7400)
    lifecycle.set_hold(station.vault, item, True)  # e.g. set straight on the bucket by a lawyer's request
    report = run_at(station, recorded(station, item) + timedelta(days=32))
    assert "legal hold" in by_id(report)[item].outcome and "not disposed" in by_id(report)[item].outcome
    assert station.vault.has_item(item) and chain_types(station, item) == ["ingest"]


def test_a_hold_the_catalog_has_not_seen_blocks_disposal(station: Station, tmp_path: Path) -> None:
    (item,) = ingest_recent(station, tmp_path / "BWC-RET06", 1, seed=7500)
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
    first, second = sorted(ingest_recent(station, tmp_path / "BWC-RET08", 2, seed=7700))
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
    first, second = sorted(ingest_recent(station, tmp_path / "BWC-RET12", 2, seed=7900))
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
    (item,) = ingest_recent(station, tmp_path / "BWC-RET11", 1, seed=7800)
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


def test_storage_refuses_deletion_before_the_lock_date(any_store_station: Station, tmp_path: Path) -> None:
    station = any_store_station
    (item,) = ingest_recent(station, tmp_path / "BWC-RET09", 1, seed=7800)
    objects = lifecycle.item_objects(station.vault, item)
    assert len(objects.versions) == 3
    for info in objects.versions:
        with pytest.raises(LockedError, match="GOVERNANCE retention until"):
            station.vault.store.delete_version(info.key, info.version_id)
    with pytest.raises(LockedError):
        lifecycle.dispose(station.vault, objects, bypass_governance=False)
    assert len(lifecycle.item_objects(station.vault, item).versions) == 3

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
    plain, da = ingest_recent(station, tmp_path / "BWC-RET10", 2, seed=7900)
    link_items(station.vault, station.catalog, [da], DA_CASE, INVESTIGATOR, category="domestic-abuse")
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
