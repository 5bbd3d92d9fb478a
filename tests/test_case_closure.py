"""Retention counted from case closure: `evidence incident close` / `reopen` record it in the chain,
the catalog indexes it, and the retention run counts from it, with a simulated clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.commands import app
from evidence.errors import AccessDenied, InvalidInput, NotFound
from evidence.incident import parse_incident_ref
from evidence.times import CLOCK_SKEW, DEVICE_ERA_START
from flows.closure import close_incident, reopen_incident
from flows.linking import link_items, unlink_items
from tests.station import Station
from tests.test_retention_flow import (
    ADMIN,
    INVESTIGATOR,
    OFFICER,
    by_id,
    chain_types,
    ingest_recent,
    retention_station,
    run_at,
)

CASE = parse_incident_ref("KNT-2026-000303")
OTHER = parse_incident_ref("KNT-2026-000404")
POLICY = """
name = "closure-test"
default_category = "non-evidential"
unclassified_category = "evidential"
[categories.non-evidential]
period = "31 days"
from = "recording"
action = "dispose"
[categories.evidential]
period = "7 years"
from = "link"
action = "review"
[categories.after-case]
period = "2 years"
from = "closure"
action = "dispose"
[incident_categories]
assault = "after-case"
"""
runner = CliRunner()
IVY_CLOSES = ["--user", "ivy", "incident", "close", CASE.value]


@pytest.fixture
def station(tmp_path: Path) -> Station:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    return retention_station(tmp_path / "station", retention_policy=policy)


def linked_item(station: Station, tmp_path: Path, seed: int) -> str:
    (item,) = ingest_recent(station, tmp_path / f"BWC-CL{seed}", 1, seed=seed)
    link_items(station.vault, station.catalog, [item], CASE, INVESTIGATOR, category="assault")
    return item


def test_a_closed_case_keeps_its_items_a_period_after_closure_then_disposes(
    station: Station, tmp_path: Path
) -> None:
    item = linked_item(station, tmp_path, 8100)
    linked_at = datetime.now(UTC)

    # open case: the rule has no closure to count from, so a person reviews it a period after the link
    open_case = by_id(run_at(station, linked_at + timedelta(days=800), apply=False))[item]
    assert open_case.action == "review" and "not recorded as closed" in open_case.reason

    closed = datetime.now(UTC)  # after the link: a link made after closure would count from the link
    report = close_incident(
        station.vault, station.catalog, CASE, closed, "CPS: no further action", INVESTIGATOR
    )
    assert [(o.evidence_id, o.status) for o in report.outcomes] == [(item, "closed")]
    assert chain_types(station, item)[-1] == "closure"
    catalogued = station.catalog.item(item)
    assert catalogued is not None and catalogued.closures == ((CASE.value, closed),)

    # the nightly run extends the storage lock to closure + 2 years
    extended = by_id(run_at(station, closed + timedelta(days=40)))[item]
    assert extended.action == "extend" and f"case {CASE.value} closed" in extended.reason
    assert extended.keep_until == closed.replace(year=closed.year + 2).isoformat()

    kept = run_at(station, closed.replace(year=closed.year + 2) - timedelta(days=1))
    assert item not in by_id(kept) and kept.counts["keep"] == 1
    after = closed.replace(year=closed.year + 2) + timedelta(days=1)
    rehearsed = by_id(run_at(station, after, apply=False))[item]
    assert rehearsed.action == "dispose" and rehearsed.outcome.startswith("would dispose")
    # applied on that simulated clock today, the real date's policy still keeps it: two years from now
    applied = by_id(run_at(station, after))[item]
    assert applied.outcome.startswith("not disposed: policy at the real date keeps it until")
    assert applied.keep_until == rehearsed.keep_until == closed.replace(year=closed.year + 2).isoformat()
    assert station.vault.has_item(item)
    assert station.vault.custody.verify(item).intact


def test_reopening_returns_items_to_review_and_closing_again_is_a_no_op_for_the_same_date(
    station: Station, tmp_path: Path
) -> None:
    item = linked_item(station, tmp_path, 8200)
    closed = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    close_incident(station.vault, station.catalog, CASE, closed, "trial concluded", INVESTIGATOR)
    again = close_incident(station.vault, station.catalog, CASE, closed, "trial concluded", ADMIN)
    assert [o.status for o in again.outcomes] == ["already closed"]
    corrected = close_incident(
        station.vault, station.catalog, CASE, closed - timedelta(days=2), "date was wrong", ADMIN
    )
    assert [o.status for o in corrected.outcomes] == ["date corrected"]

    reopened = reopen_incident(station.vault, station.catalog, CASE, "appeal lodged", INVESTIGATOR)
    assert [o.status for o in reopened.outcomes] == ["reopened"]
    assert (
        reopen_incident(station.vault, station.catalog, CASE, "again", ADMIN).outcomes[0].status
        == "not closed"
    )
    catalogued = station.catalog.item(item)
    assert catalogued is not None and catalogued.closures == ()
    line = by_id(run_at(station, closed + timedelta(days=3 * 365), apply=True))[item]
    assert line.action == "review" and station.vault.has_item(item)
    assert chain_types(station, item)[-3:] == ["closure", "closure", "reopen"]
    assert station.vault.custody.verify(item).intact


def test_closure_is_kept_by_the_catalog_rebuild_and_only_for_incidents_still_linked(
    station: Station, tmp_path: Path
) -> None:
    item = linked_item(station, tmp_path, 8300)
    link_items(station.vault, station.catalog, [item], OTHER, INVESTIGATOR, category="assault")
    closed = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    close_incident(station.vault, station.catalog, CASE, closed, "closed", INVESTIGATOR)
    close_incident(station.vault, station.catalog, OTHER, closed, "closed", INVESTIGATOR)
    unlink_items(station.vault, station.catalog, [item], OTHER, INVESTIGATOR, reason="wrong incident")
    before = station.catalog.item(item)
    assert before is not None and before.closures == ((CASE.value, closed),)
    station.catalog.rebuild(station.vault)
    assert station.catalog.item(item) == before
    assert before.operational()["closed"] == {CASE.value: closed.isoformat()}


def test_who_may_record_a_closure_and_what_is_refused(station: Station, tmp_path: Path) -> None:
    item = linked_item(station, tmp_path, 8400)
    now = datetime.now(UTC)
    with pytest.raises(AccessDenied, match="may not close"):
        close_incident(station.vault, station.catalog, CASE, now, "closed", OFFICER)
    with pytest.raises(AccessDenied, match="may not reopen"):
        reopen_incident(station.vault, station.catalog, CASE, "appeal", OFFICER)
    with pytest.raises(InvalidInput, match="in the future"):
        close_incident(station.vault, station.catalog, CASE, now + timedelta(days=2), "closed", ADMIN)
    with pytest.raises(InvalidInput, match="--reason"):
        close_incident(station.vault, station.catalog, CASE, now, "  ", ADMIN)
    with pytest.raises(NotFound, match="no evidence is linked"):
        close_incident(station.vault, station.catalog, OTHER, now, "closed", ADMIN)
    assert chain_types(station, item)[-1] == "link"  # nothing written by any refusal


def test_a_closure_date_before_the_device_era_or_in_the_future_is_refused_and_writes_nothing(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    item = linked_item(station, tmp_path, 8600)
    chain, catalogued = chain_types(station, item), station.catalog.item(item)
    tomorrow_and_more = (datetime.now(UTC) + CLOCK_SKEW + timedelta(hours=1)).isoformat()
    for closed_at, why in (
        ("0001-01-01", "is before 2000-01-01"),
        ("0001-01-01T00:00:00+01:00", "is before 2000-01-01"),
        ("1999-12-31T23:59:59Z", "is before 2000-01-01"),
        ("9999-12-31T23:59:59", "is in the future"),
        ("9999-12-31T23:59:59-14:00", "is in the future"),
        (tomorrow_and_more, "is in the future"),
    ):
        refused = runner.invoke(app, [*IVY_CLOSES, "--closed-at", closed_at, "--reason", "NFA"])
        assert isinstance(refused.exception, InvalidInput), (closed_at, refused.output)
        assert refused.exception.exit_code == 2
        assert str(refused.exception).startswith("--closed-at ") and why in str(refused.exception)
    with pytest.raises(InvalidInput, match="closure time 1999-12-31T23:59:59"):  # not only the command
        close_incident(
            station.vault, station.catalog, CASE, datetime(1999, 12, 31, 23, 59, 59), "NFA", INVESTIGATOR
        )
    assert chain_types(station, item) == chain and station.catalog.item(item) == catalogued
    first = close_incident(station.vault, station.catalog, CASE, DEVICE_ERA_START, "NFA", INVESTIGATOR)
    assert [o.status for o in first.outcomes] == ["closed"]


def test_the_commands(station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    monkeypatch.setenv("EVIDENCE_RETENTION_POLICY", str(station.settings.retention_policy))
    item = linked_item(station, tmp_path, 8500)

    closed = runner.invoke(
        app,
        [*IVY_CLOSES, "--closed-at", "2026-01-05T10:00:00", "--reason", "NFA", "--json"],
    )
    assert closed.exit_code == 0, closed.output
    doc = json.loads(closed.stdout)
    assert doc["closed_at"] == "2026-01-05T10:00:00+00:00"
    assert doc["items"] == [{"evidence_id": item, "status": "closed", "note": ""}]

    shown = runner.invoke(app, ["--user", "ivy", "incident", "show", CASE.value, "--json"])
    assert json.loads(shown.stdout)["items"][0]["closed"] == {CASE.value: "2026-01-05T10:00:00+00:00"}

    reopened = runner.invoke(app, ["--user", "sam", "incident", "reopen", CASE.value, "--reason", "appeal"])
    assert reopened.exit_code == 0 and "reopened" in reopened.stdout

    bad_time = runner.invoke(
        app, ["--user", "ivy", "incident", "close", CASE.value, "--closed-at", "yesterday", "--reason", "x"]
    )
    assert isinstance(bad_time.exception, InvalidInput) and "--closed-at" in str(bad_time.exception)
    bad_ref = runner.invoke(app, ["--user", "ivy", "incident", "close", "../x", "--reason", "x"])
    assert isinstance(bad_ref.exception, InvalidInput)
    officer = runner.invoke(app, ["--user", "oscar", "incident", "close", CASE.value, "--reason", "x"])
    assert isinstance(officer.exception, AccessDenied)
