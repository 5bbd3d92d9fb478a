"""Legal holds: an investigator holds an incident's evidence for court; every stored version is held in
storage and the hold is in each item's chain; nothing held is disposed of, whatever its dates; release
lifts the storage hold only when no other hold remains. Both commands are idempotent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.commands import app
from evidence.errors import AccessDenied, InvalidInput, InvalidReference, LockedError, NotFound
from flows.holds import release_hold, set_hold
from flows.linking import link_items
from flows.records import record
from storage import lifecycle
from tests.station import Station
from tests.test_retention_flow import (
    ADMIN,
    DA_CASE,
    INVESTIGATOR,
    OFFICER,
    TRIAL,
    by_id,
    chain_types,
    ingest_recent,
    recorded,
    retention_station,
    run_at,
)

runner = CliRunner()


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return retention_station(tmp_path / "station")


@pytest.fixture
def trial_items(station: Station, tmp_path: Path) -> list[str]:
    ids = ingest_recent(station, tmp_path / "BWC-HOLD1", 2, seed=8000)
    link_items(station.vault, station.catalog, ids, TRIAL, INVESTIGATOR, category="violence")
    return ids


def held_flags(station: Station, evidence_id: str) -> list[bool]:
    return [info.legal_hold for info in lifecycle.item_objects(station.vault, evidence_id).versions]


def test_hold_and_release_every_version(station: Station, trial_items: list[str]) -> None:
    report = set_hold(station.vault, station.catalog, TRIAL, "trial listed for March", INVESTIGATOR)
    assert [o.status for o in report.outcomes] == ["held", "held"]
    assert all(o.versions_changed == 3 for o in report.outcomes)
    for evidence_id in trial_items:
        assert held_flags(station, evidence_id) == [True, True, True]
        event = station.vault.custody.events(evidence_id)[-1]
        assert (event.type, event.actor, event.role) == ("hold", "ivy", "investigator")
        assert event.details == {
            "hold_id": f"incident:{TRIAL}",
            "incident": TRIAL.value,
            "reason": "trial listed for March",
        }
        catalogued = station.catalog.item(evidence_id)
        assert catalogued is not None and catalogued.holds == (f"incident:{TRIAL}",)
        for info in lifecycle.item_objects(station.vault, evidence_id).versions:
            with pytest.raises(LockedError, match="legal hold"):
                station.vault.store.delete_version(info.key, info.version_id, bypass_governance=True)

    again = set_hold(station.vault, station.catalog, TRIAL, "trial listed for March", INVESTIGATOR)
    assert [(o.status, o.versions_changed) for o in again.outcomes] == [("already held", 0)] * 2
    assert all(chain_types(station, i).count("hold") == 1 for i in trial_items)

    released = release_hold(station.vault, station.catalog, TRIAL, "verdict given", ADMIN)
    assert [(o.status, o.versions_changed) for o in released.outcomes] == [("released", 3)] * 2
    for evidence_id in trial_items:
        assert held_flags(station, evidence_id) == [False, False, False]
        event = station.vault.custody.events(evidence_id)[-1]
        assert (event.type, event.actor, event.details["reason"]) == ("release", "sam", "verdict given")
        catalogued = station.catalog.item(evidence_id)
        assert catalogued is not None and catalogued.holds == ()
        assert station.vault.custody.verify(evidence_id).intact
    twice = release_hold(station.vault, station.catalog, TRIAL, "verdict given", ADMIN)
    assert [o.status for o in twice.outcomes] == ["not held", "not held"]
    assert all(chain_types(station, i).count("release") == 1 for i in trial_items)


def test_a_held_item_is_never_disposed_of(station: Station, tmp_path: Path) -> None:
    ids = ingest_recent(station, tmp_path / "BWC-HOLD3", 2, seed=8200)
    link_items(station.vault, station.catalog, ids, DA_CASE, INVESTIGATOR, category="no-crime")  # 1 year
    set_hold(station.vault, station.catalog, DA_CASE, "appeal pending", INVESTIGATOR)
    start = recorded(station, ids[0])
    for days in (400, 3650, 40 * 365):
        report = run_at(station, start + timedelta(days=days))
        assert [by_id(report)[i].outcome for i in ids] == ["kept past its date: legal hold"] * 2
        assert all(station.vault.has_item(i) for i in ids)
    release_hold(station.vault, station.catalog, DA_CASE, "appeal dismissed", ADMIN)
    # released, the items are the policy's again: a rehearsal a year on disposes of them; applied
    # today, the policy at the real date still keeps them for the year from their link
    rehearsal = run_at(station, start + timedelta(days=400), apply=False)
    assert all(by_id(rehearsal)[i].outcome.startswith("would dispose") for i in ids)
    report = run_at(station, start + timedelta(days=400))
    assert all(
        by_id(report)[i].outcome.startswith("not disposed: policy at the real date keeps it until")
        for i in ids
    )
    assert all(station.vault.has_item(i) for i in ids)


def test_one_release_leaves_the_other_hold_in_force(station: Station, trial_items: list[str]) -> None:
    shared = trial_items[0]
    link_items(station.vault, station.catalog, [shared], DA_CASE, INVESTIGATOR, category="domestic-abuse")
    set_hold(station.vault, station.catalog, TRIAL, "trial", INVESTIGATOR)
    set_hold(station.vault, station.catalog, DA_CASE, "family court", INVESTIGATOR)

    first = {
        o.evidence_id: o for o in release_hold(station.vault, station.catalog, TRIAL, "done", ADMIN).outcomes
    }
    assert first[shared].status == "still held" and f"incident:{DA_CASE}" in first[shared].note
    assert held_flags(station, shared) == [True, True, True]
    assert first[trial_items[1]].status == "released"
    assert held_flags(station, trial_items[1]) == [False, False, False]

    second = release_hold(station.vault, station.catalog, DA_CASE, "done", ADMIN)
    assert [(o.evidence_id, o.status) for o in second.outcomes] == [(shared, "released")]
    assert held_flags(station, shared) == [False, False, False]


def test_release_finds_held_items_no_longer_linked(station: Station, trial_items: list[str]) -> None:
    from flows.linking import unlink_items

    set_hold(station.vault, station.catalog, TRIAL, "trial", INVESTIGATOR)
    unlink_items(station.vault, station.catalog, trial_items, TRIAL, INVESTIGATOR, reason="wrong incident")
    released = release_hold(station.vault, station.catalog, TRIAL, "done", ADMIN)
    assert sorted(o.evidence_id for o in released.outcomes if o.status == "released") == sorted(trial_items)


def test_a_release_never_lifts_storage_holds_its_incident_did_not_place(
    station: Station, trial_items: list[str], tmp_path: Path
) -> None:
    set_hold(station.vault, station.catalog, TRIAL, "trial", INVESTIGATOR)
    # linked after the hold was set, and held in storage by someone else (a hold placed on the bucket
    # directly, or a 'hold set' for another case cut off before its event was written)
    late = ingest_recent(station, tmp_path / "BWC-HOLD2", 1, seed=8100)[0]
    link_items(station.vault, station.catalog, [late], TRIAL, INVESTIGATOR, category="violence")
    lifecycle.set_hold(station.vault, late, True)

    report = {
        o.evidence_id: o for o in release_hold(station.vault, station.catalog, TRIAL, "done", ADMIN).outcomes
    }
    assert (report[late].status, report[late].versions_changed) == ("not held", 0)
    assert f"no hold for {TRIAL}" in report[late].note
    assert held_flags(station, late) == [True, True, True]
    assert "release" not in chain_types(station, late)
    assert [report[i].status for i in trial_items] == ["released", "released"]


def test_an_interrupted_release_is_finished_by_running_it_again(
    station: Station, trial_items: list[str]
) -> None:
    set_hold(station.vault, station.catalog, TRIAL, "trial", INVESTIGATOR)
    item = trial_items[0]
    # the release event was written, then the machine died before the storage holds came off
    record(
        station.vault,
        station.catalog,
        item,
        "release",
        actor="sam",
        role="storage-admin",
        details={"hold_id": f"incident:{TRIAL}", "incident": TRIAL.value, "reason": "done"},
    )
    assert held_flags(station, item) == [True, True, True]
    report = {
        o.evidence_id: o for o in release_hold(station.vault, station.catalog, TRIAL, "done", ADMIN).outcomes
    }
    assert (report[item].status, report[item].versions_changed) == ("not held", 3)
    assert held_flags(station, item) == [False, False, False]
    assert chain_types(station, item).count("release") == 1


def test_who_may_hold_and_what_must_be_said(station: Station, trial_items: list[str]) -> None:
    with pytest.raises(AccessDenied, match="may not hold"):
        set_hold(station.vault, station.catalog, TRIAL, "trial", OFFICER)
    with pytest.raises(AccessDenied, match="may not release"):
        release_hold(station.vault, station.catalog, TRIAL, "trial", OFFICER)
    with pytest.raises(InvalidInput, match="--reason"):
        set_hold(station.vault, station.catalog, TRIAL, "  ", INVESTIGATOR)
    with pytest.raises(InvalidInput, match="one line"):
        set_hold(station.vault, station.catalog, TRIAL, "trial\nDROP", INVESTIGATOR)
    with pytest.raises(NotFound, match="no evidence is linked"):
        set_hold(station.vault, station.catalog, DA_CASE, "trial", INVESTIGATOR)
    assert all(held_flags(station, i) == [False, False, False] for i in trial_items)
    assert all("hold" not in chain_types(station, i) for i in trial_items)
    assert set_hold(station.vault, station.catalog, TRIAL, "trial", ADMIN).outcomes[0].status == "held"


@pytest.fixture
def s3_station(tmp_path: Path) -> Iterator[Station]:
    from moto import mock_aws

    with mock_aws():
        yield retention_station(tmp_path / "station", vault_url="s3://hold-test/vault")


def test_holds_on_s3(s3_station: Station, tmp_path: Path) -> None:
    station = s3_station
    ids = ingest_recent(station, tmp_path / "BWC-HOLD2", 1, seed=8100)
    link_items(station.vault, station.catalog, ids, TRIAL, INVESTIGATOR)
    set_hold(station.vault, station.catalog, TRIAL, "trial", INVESTIGATOR)
    assert held_flags(station, ids[0]) == [True, True, True]
    objects = lifecycle.item_objects(station.vault, ids[0])
    with pytest.raises(LockedError, match="legal hold"):
        lifecycle.dispose(station.vault, objects)
    release_hold(station.vault, station.catalog, TRIAL, "done", ADMIN)
    assert held_flags(station, ids[0]) == [False, False, False]


def test_cli_hold_set_and_release(
    station: Station, trial_items: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    held = runner.invoke(
        app,
        ["--user", "ivy", "hold", "set", "--incident", " knt-2026-000202 ", "--reason", "trial", "--json"],
    )
    assert held.exit_code == 0, held.output
    doc = json.loads(held.stdout)
    assert doc["hold_id"] == f"incident:{TRIAL}" and {i["status"] for i in doc["items"]} == {"held"}
    assert sorted(i["evidence_id"] for i in doc["items"]) == sorted(trial_items)

    # an investigator may place a hold but never lift one: that frees evidence for disposal
    refused = runner.invoke(
        app, ["--user", "ivy", "hold", "release", "--incident", TRIAL.value, "--reason", "x"]
    )
    assert isinstance(refused.exception, AccessDenied)
    assert all(held_flags(station, trial_items[0]))

    table = runner.invoke(
        app, ["--user", "sam", "hold", "release", "--incident", TRIAL.value, "--reason", "x"]
    )
    assert table.exit_code == 0, table.output
    assert "released" in table.stdout and trial_items[0] in table.stdout

    bad = runner.invoke(app, ["--user", "ivy", "hold", "set", "--incident", "../../etc", "--reason", "x"])
    assert isinstance(bad.exception, InvalidReference)
    refused = runner.invoke(
        app, ["--user", "oscar", "hold", "set", "--incident", TRIAL.value, "--reason", "x"]
    )
    assert isinstance(refused.exception, AccessDenied)
    unknown = runner.invoke(
        app, ["--user", "mallory", "hold", "set", "--incident", TRIAL.value, "--reason", "x"]
    )
    assert isinstance(unknown.exception, AccessDenied)
