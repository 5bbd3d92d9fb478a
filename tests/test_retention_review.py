"""Retention reviews: a person's decision on items due for review (keep longer, or settle as a
disposal) is recorded in the chain, indexed by the catalog, and acted on by the retention run."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.commands import app
from evidence.errors import AccessDenied, InvalidInput
from evidence.incident import parse_incident_ref
from evidence.retention import LinkFact, Period, RetentionFacts, RetentionPolicy, decide, facts_from_events
from flows.holds import set_hold
from flows.linking import link_items
from flows.review import review_items
from tests.station import Station
from tests.test_retention_flow import (
    ADMIN,
    INVESTIGATOR,
    by_id,
    chain_types,
    ingest_recent,
    policy_of,
    retention_station,
    run_at,
)
from tests.test_retention_policy import POLICY, T0, facts, items, moments, policies

CASE = parse_incident_ref("KNT-2026-000505")
runner = CliRunner()


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return retention_station(tmp_path / "station")


def due_da_item(station: Station, tmp_path: Path, seed: int) -> tuple[str, datetime]:
    """A domestic-abuse item and the moment its 10-year review is due (a simulated clock after it)."""
    (item,) = ingest_recent(station, tmp_path / f"BWC-RV{seed}", 1, seed=seed)
    link_items(station.vault, station.catalog, [item], CASE, INVESTIGATOR, category="domestic-abuse")
    decision = decide(_facts(station, item), policy_of(station), datetime.now(UTC))
    return item, decision.keep_until + timedelta(days=1)


def _facts(station: Station, item: str) -> RetentionFacts:
    manifest = station.vault.manifest(item)
    return facts_from_events(item, manifest.ingested_at, None, station.vault.custody.events(item)).facts


def review(
    station: Station, ids: list[str], at: datetime, *, keep_for: Period | None = None, dispose: bool = False
) -> list[tuple[str, str]]:
    report = review_items(
        station.vault,
        station.catalog,
        ids,
        keep_for=keep_for,
        dispose=dispose,
        reason="reviewed under MoPI",
        actor=ADMIN,
        policy=policy_of(station),
        now=at,
    )
    return [(o.evidence_id, o.status) for o in report.outcomes]


def test_a_review_that_keeps_gives_a_new_date_and_another_review_then(
    station: Station, tmp_path: Path
) -> None:
    item, due = due_da_item(station, tmp_path, 9100)
    assert by_id(run_at(station, due))[item].action == "review"

    assert review(station, [item], due, keep_for=Period(years=2)) == [(item, "kept")]
    event = station.vault.custody.events(item)[-1]
    assert event.type == "review" and event.actor == "sam" and event.details["decision"] == "keep"
    assert event.details["simulated_now"] == due.isoformat(), "a review on a simulated clock says so"
    catalogued = station.catalog.item(item)
    assert catalogued is not None and catalogued.reviewed_keep_until is not None

    line = by_id(run_at(station, due + timedelta(days=30)))[item]  # the nightly run: keep, lock extended
    assert line.action == "extend" and "kept by review" in line.rule
    assert by_id(run_at(station, due + timedelta(days=3 * 365)))[item].action == "review"
    assert station.vault.has_item(item)


def test_a_review_keeping_for_longer_than_any_rule_is_refused_and_writes_nothing(
    station: Station, tmp_path: Path
) -> None:
    from evidence.errors import ConfigError

    item, due = due_da_item(station, tmp_path, 9150)
    chain = chain_types(station, item)
    for typed in ("9999 years", "101 years", "1201 months", "9999 weeks", "9999 years 9999 years"):
        with pytest.raises(ConfigError, match=f"period '{typed}' is longer than 100 years") as refused:
            review(station, [item], due, keep_for=Period.parse(typed))
        assert refused.value.exit_code == 2
    assert chain_types(station, item) == chain
    assert review(station, [item], due, keep_for=Period.parse("100 years")) == [(item, "kept")]
    kept = station.catalog.item(item)
    assert kept is not None and kept.reviewed_keep_until == Period(years=100).after(due)


def test_a_review_that_settles_a_disposal_lets_the_next_run_dispose(station: Station, tmp_path: Path) -> None:
    """The run at the review's date disposes of the item (rehearsed here on a simulated clock: the
    link was made today, so applied now, the policy at the real date keeps it ten years yet)."""
    item, due = due_da_item(station, tmp_path, 9200)
    assert review(station, [item], due, dispose=True) == [(item, "disposal decided")]
    line = by_id(run_at(station, due, apply=False))[item]
    assert line.action == "dispose" and line.outcome.startswith("would dispose")
    assert "decided disposal" in line.reason
    applied = by_id(run_at(station, due))[item]
    assert applied.outcome.startswith("not disposed: policy at the real date keeps it until")
    assert station.vault.has_item(item) and chain_types(station, item)[-1] == "review"
    assert station.vault.custody.verify(item).intact


def test_a_hold_still_stops_a_disposal_a_review_decided(station: Station, tmp_path: Path) -> None:
    item, due = due_da_item(station, tmp_path, 9300)
    review(station, [item], due, dispose=True)
    set_hold(station.vault, station.catalog, CASE, "appeal lodged", INVESTIGATOR)
    line = by_id(run_at(station, due + timedelta(days=1)))[item]
    assert line.action == "keep" and station.vault.has_item(item)


def test_only_items_due_for_review_are_reviewed_and_refusals_write_nothing(
    station: Station, tmp_path: Path
) -> None:
    item, due = due_da_item(station, tmp_path, 9400)
    (plain,) = ingest_recent(station, tmp_path / "BWC-RV-PLAIN", 1, seed=9401)
    early = due - timedelta(days=400)
    outcomes = dict(review(station, [item, plain], early, dispose=True))
    assert outcomes == {item: "not due", plain: "not due"}
    assert chain_types(station, item)[-1] == "link"
    with pytest.raises(AccessDenied, match="may not review"):
        review_items(
            station.vault,
            station.catalog,
            [item],
            keep_for=None,
            dispose=True,
            reason="x",
            actor=INVESTIGATOR,
            policy=policy_of(station),
            now=due,
        )
    with pytest.raises(InvalidInput, match="decide one thing"):
        review(station, [item], due, keep_for=Period(years=1), dispose=True)
    with pytest.raises(InvalidInput, match="decide one thing"):
        review(station, [item], due)
    with pytest.raises(InvalidInput):
        review(station, ["../etc/passwd"], due, dispose=True)
    assert chain_types(station, item)[-1] == "link"


def test_reviews_survive_a_catalog_rebuild(station: Station, tmp_path: Path) -> None:
    kept, due = due_da_item(station, tmp_path, 9500)
    settled, _ = due_da_item(station, tmp_path, 9501)
    review(station, [kept], due, keep_for=Period(years=1))
    review(station, [settled], due, dispose=True)
    before = [station.catalog.item(i) for i in (kept, settled)]
    station.catalog.rebuild(station.vault)
    assert [station.catalog.item(i) for i in (kept, settled)] == before


def test_the_command(station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    item, _ = due_da_item(station, tmp_path, 9600)
    not_due = runner.invoke(
        app,
        ["--user", "sam", "retention", "review", item, "--keep-for", "2 years", "--reason", "ok", "--json"],
    )
    assert not_due.exit_code == 0, not_due.output
    assert json.loads(not_due.stdout)["items"][0]["status"] == "not due"  # due in ten years, not today
    bad = runner.invoke(
        app, ["--user", "sam", "retention", "review", item, "--keep-for", "a while", "--reason", "x"]
    )
    assert bad.exception is not None and "not understood" in str(bad.exception)
    refused = runner.invoke(app, ["--user", "ivy", "retention", "review", item, "--dispose", "--reason", "x"])
    assert isinstance(refused.exception, AccessDenied)


# -- the decision, pure -------------------------------------------------------------------------------


def test_a_disposal_review_settles_only_the_dates_that_were_due() -> None:
    linked = T0 + timedelta(days=1)
    item = facts(links=(LinkFact("KNT-2026-000123", "domestic-abuse", linked),))
    due = decide(item, POLICY, T0).keep_until
    settled = replace(item, reviewed_dispose_at=due)
    assert decide(settled, POLICY, due).action == "dispose"
    later_link = LinkFact("KNT-2027-000001", "theft", due - timedelta(days=10))  # linked before the review
    newer = replace(settled, links=(*settled.links, later_link))
    assert decide(newer, POLICY, due.replace(year=due.year + 7)).action == "review"  # its date came after


def test_a_keep_review_is_a_new_review_date() -> None:
    item = facts(links=(LinkFact("KNT-2026-000123", "domestic-abuse", T0),))
    due = decide(item, POLICY, T0).keep_until
    kept = replace(item, reviewed_keep_until=due + timedelta(days=700))
    decision = decide(kept, POLICY, due + timedelta(days=1))
    assert (decision.action, decision.keep_until, decision.rule) == (
        "keep",
        due + timedelta(days=700),
        "kept by review",
    )
    assert decide(kept, POLICY, due + timedelta(days=701)).action == "review"


@settings(max_examples=300, deadline=None)
@given(items(), policies(), moments, st.none() | moments, st.none() | moments)
def test_a_review_never_brings_a_date_forward_nor_beats_a_hold(
    item: RetentionFacts,
    policy: RetentionPolicy,
    now: datetime,
    kept: datetime | None,
    settled: datetime | None,
) -> None:
    reviewed = replace(item, reviewed_keep_until=kept, reviewed_dispose_at=settled)
    before, after = decide(item, policy, now), decide(reviewed, policy, now)
    assert after.keep_until >= before.keep_until
    if after.action == "dispose":
        assert now >= after.keep_until and not item.holds
    if item.holds:
        assert after.action == "keep"
