"""Retention policy and decisions, pure: the shipped policy loads, every mistake in a policy file is
refused with a clear message, and decisions never dispose of held or unexpired evidence (properties)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.custody import CustodyEvent
from evidence.errors import ConfigError
from evidence.retention import (
    LinkFact,
    Period,
    RetentionFacts,
    RetentionPolicy,
    decide,
    facts_from_events,
    load_policy,
    lock_extension,
    parse_policy,
    parse_recorded_at,
    recording_anchor,
)
from evidence.settings import Settings

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "evidence" / "default_policy.toml"
POLICY = load_policy(DEFAULT_POLICY)
ITEM = "ev-" + "a" * 26
T0 = datetime(2026, 3, 14, 20, 0, tzinfo=UTC)

MINIMAL = """
default_category = "short"
unclassified_category = "evidential"
[categories.short]
period = "31 days"
from = "recording"
action = "dispose"
[categories.evidential]
period = "7 years"
from = "link"
action = "review"
"""

MIXED = """
default_category = "short"
unclassified_category = "evidential"
minimum_after_ingest = "1 day"
[categories.short]
period = "31 days"
from = "recording"
action = "dispose"
[categories.evidential]
period = "2 years"
from = "link"
action = "review"
[categories.archive]
period = "20 years"
from = "recording"
action = "dispose"
[categories.quick]
period = "40 days"
from = "link"
action = "review"
[categories.after-case]
period = "3 years"
from = "closure"
action = "dispose"
[incident_categories]
theft = "quick"
homicide = "archive"
assault = "after-case"
"""
MIXED_POLICY = parse_policy(MIXED.encode(), source="mixed.toml")


def facts(
    *,
    recorded: datetime | None = T0,
    ingested: datetime | None = None,
    links: tuple[LinkFact, ...] = (),
    holds: tuple[str, ...] = (),
) -> RetentionFacts:
    return RetentionFacts(ITEM, ingested or (recorded or T0) + timedelta(hours=2), recorded, links, holds)


# -- the policy file --------------------------------------------------------------------------------


def test_the_shipped_policy_is_the_default_and_loads() -> None:
    settings = Settings()
    assert settings.retention_policy == DEFAULT_POLICY
    assert POLICY.default_category == "non-evidential"
    rule = POLICY.rule("non-evidential")
    assert (rule.period, rule.anchor, rule.action) == (Period(days=31), "recording", "dispose")
    assert POLICY.category_for_incident("domestic-abuse") == "evidential-da"
    assert POLICY.category_for_incident("Domestic-Abuse ") == "evidential-da"
    assert POLICY.category_for_incident("evidential-group3") == "evidential-group3"  # a category's own name
    assert POLICY.category_for_incident("smuggling") == POLICY.unclassified_category
    assert POLICY.category_for_incident(None) == POLICY.unclassified_category
    assert POLICY.label.startswith("default v1 sha256:") and len(POLICY.digest) == 64


def test_a_changed_policy_file_has_another_label() -> None:
    first = parse_policy(MINIMAL.encode())
    second = parse_policy((MINIMAL + "\n# edited\n").encode())
    assert first.label != second.label


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("31 days", Period(days=31)),
        ("1 day", Period(days=1)),
        ("2 weeks", Period(days=14)),
        ("7 years", Period(years=7)),
        ("1 year 6 months", Period(years=1, months=6)),
        ("1 year, 6 months and 2 days", Period(years=1, months=6, days=2)),
        (" 6 Months ", Period(months=6)),
    ],
)
def test_periods_parse(text: str, period: Period) -> None:
    assert Period.parse(text) == period


@pytest.mark.parametrize(
    "text", ["", "31", "days", "31 fortnights", "-3 days", "0 days", "31 days ago", "1.5 years"]
)
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="period"):
        Period.parse(text)


def test_calendar_periods_never_come_up_short() -> None:
    assert Period(months=1).after(datetime(2026, 1, 31, tzinfo=UTC)) == datetime(2026, 3, 1, tzinfo=UTC)
    assert Period(years=1).after(datetime(2024, 2, 29, tzinfo=UTC)) == datetime(2025, 3, 1, tzinfo=UTC)
    assert Period(months=1).after(datetime(2026, 12, 31, tzinfo=UTC)) == datetime(2027, 1, 31, tzinfo=UTC)
    assert Period(years=7).after(datetime(2026, 3, 14, tzinfo=UTC)) == datetime(2033, 3, 14, tzinfo=UTC)
    assert Period(days=31).after(T0) == T0 + timedelta(days=31)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 400),
)
def test_a_period_is_at_least_its_length(moment: datetime, years: int, months: int, days: int) -> None:
    end = Period(years, months, days).after(moment)
    assert end >= moment + timedelta(days=365 * years + 28 * months + days)
    assert end - moment <= timedelta(days=366 * years + 31 * months + days + 3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('period = "31 days"', 'peroid = "31 days"'), "unknown key.*peroid"),
        (lambda t: t.replace('from = "link"', 'from = "arrest"'), "from = 'arrest'"),
        (lambda t: t.replace('action = "review"', 'action = "delete"'), "action = 'delete'"),
        (lambda t: t.replace('default_category = "short"', 'default_category = "long"'), "default_category"),
        (lambda t: t.replace('from = "recording"', 'from = "link"'), 'must count from "recording"'),
        (lambda t: t.replace('action = "review"', 'action = "dispose"'), 'must end in action = "review"'),
        (lambda t: t + '[incident_categories]\ntheft = "nowhere"\n', "theft.*not a category"),
        (lambda t: "retention_days = 3\n" + t, "unknown setting.*retention_days"),
        (lambda t: t + "[categories.Bad_Name]\nperiod = '1 day'\n", "category name"),
        (lambda t: t.replace('period = "7 years"', 'period = "seven years"'), "evidential.*not understood"),
        (lambda t: t + "minimum_after_ingest = 'soon'\n", "minimum_after_ingest"),
        (lambda t: t.replace("[categories.short]", "[categories.short"), "not valid TOML"),
    ],
)
def test_policy_mistakes_are_refused_by_name(change: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy(change(MINIMAL).encode(), source="edited.toml")  # type: ignore[operator]


def test_a_missing_policy_file_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EVIDENCE_RETENTION_POLICY"):
        load_policy(tmp_path / "nowhere.toml")


# -- decisions: the stories -------------------------------------------------------------------------


def test_non_evidential_footage_is_kept_31_days_from_recording_then_disposed() -> None:
    item = facts(ingested=T0 + timedelta(days=1))
    assert decide(item, POLICY, T0 + timedelta(days=30)).action == "keep"
    decision = decide(item, POLICY, T0 + timedelta(days=32))
    assert decision.action == "dispose"
    assert decision.keep_until == T0 + timedelta(days=31)
    assert decision.category == "non-evidential"
    assert "31 days from recording" in decision.rule and "elapsed" in decision.reason


def test_linked_domestic_abuse_evidence_is_kept_then_reviewed_never_disposed() -> None:
    linked = T0 + timedelta(days=3)
    item = facts(links=(LinkFact("KNT-2026-000123", "domestic-abuse", linked),))
    kept = decide(item, POLICY, T0 + timedelta(days=32))
    assert (kept.action, kept.category, kept.keep_until) == (
        "keep",
        "evidential-da",
        linked.replace(year=2036),
    )
    assert decide(item, POLICY, linked.replace(year=2037)).action == "review"


def test_an_incident_of_unknown_category_gets_the_unclassified_review_rule() -> None:
    for category in (None, "smuggling"):
        item = facts(links=(LinkFact("KNT-2026-000123", category, T0),))
        decision = decide(item, POLICY, T0 + timedelta(days=32))
        assert decision.category == "evidential-unclassified"
        assert decide(item, POLICY, T0.replace(year=2040)).action == "review"


def test_several_incidents_take_the_longest_and_review_wins() -> None:
    links = (
        LinkFact("KNT-2026-000001", "no-crime", T0),  # 1 year, then dispose
        LinkFact("KNT-2026-000002", "theft", T0 + timedelta(days=10)),  # 6 years, then review
    )
    decision = decide(facts(links=links), POLICY, T0 + timedelta(days=400))
    assert decision.category == "evidential-group3"
    assert decision.keep_until == (T0 + timedelta(days=10)).replace(year=2032)
    assert decide(facts(links=links), POLICY, T0.replace(year=2040)).action == "review"


def test_one_review_rule_makes_the_end_a_review_even_when_a_dispose_rule_is_longer() -> None:
    links = (LinkFact("KNT-2026-000001", "homicide", T0), LinkFact("KNT-2026-000002", "theft", T0))
    decision = decide(facts(links=links), MIXED_POLICY, T0.replace(year=2047))
    assert (decision.category, decision.action) == ("archive", "review")


def test_a_no_further_action_link_alone_is_disposed_after_its_period() -> None:
    item = facts(links=(LinkFact("KNT-2026-000001", "no-crime", T0),))
    assert decide(item, POLICY, T0 + timedelta(days=364)).action == "keep"
    assert decide(item, POLICY, T0 + timedelta(days=366)).action == "dispose"


def test_a_held_item_is_kept_past_its_date() -> None:
    item = facts(holds=("incident:KNT-2026-000123",))
    decision = decide(item, POLICY, T0 + timedelta(days=400))
    assert decision.action == "keep" and decision.held
    assert "legal hold incident:KNT-2026-000123" in decision.reason
    assert decide(facts(), POLICY, T0 + timedelta(days=400)).action == "dispose"


def test_a_camera_clock_in_the_future_counts_from_ingest() -> None:
    item = facts(recorded=datetime(2099, 1, 1, tzinfo=UTC), ingested=T0)
    assert recording_anchor(item)[0] == T0
    assert decide(item, POLICY, T0 + timedelta(days=32)).action == "dispose"


def test_late_docking_or_a_clock_in_the_past_still_leaves_time_to_link() -> None:
    item = facts(recorded=datetime(1970, 1, 1, tzinfo=UTC), ingested=T0)
    decision = decide(item, POLICY, T0 + timedelta(days=1))
    assert decision.action == "keep"
    assert decision.keep_until == T0 + timedelta(days=7)
    assert "at least 7 days after ingest" in decision.reason


def test_no_capture_time_counts_from_ingest() -> None:
    item = facts(recorded=None, ingested=T0)
    assert decide(item, POLICY, T0 + timedelta(days=30)).action == "keep"
    assert decide(item, POLICY, T0 + timedelta(days=31, seconds=1)).action == "dispose"


def test_recorded_times_without_a_zone_are_utc() -> None:
    assert parse_recorded_at("2026-03-14T21:05:09") == datetime(2026, 3, 14, 21, 5, 9, tzinfo=UTC)
    assert parse_recorded_at("2026-03-14T21:05:09+01:00") == datetime(2026, 3, 14, 20, 5, 9, tzinfo=UTC)
    assert parse_recorded_at(None) is None and parse_recorded_at("last tuesday") is None


def test_a_closed_case_counts_from_its_closure_then_follows_its_rule() -> None:
    linked, closed = T0 + timedelta(days=2), T0.replace(year=2028)
    item = facts(links=(LinkFact("KNT-2026-000123", "assault", linked, closed_at=closed),))
    decision = decide(item, MIXED_POLICY, T0.replace(year=2030))
    assert (decision.action, decision.category, decision.keep_until) == (
        "keep",
        "after-case",
        closed.replace(year=2031),
    )
    assert "case KNT-2026-000123 closed 2028-03-14" in decision.reason
    assert decide(item, MIXED_POLICY, closed.replace(year=2031) + timedelta(seconds=1)).action == "dispose"


def test_an_open_case_is_reviewed_a_period_after_its_link_never_disposed() -> None:
    linked = T0 + timedelta(days=2)
    item = facts(links=(LinkFact("KNT-2026-000123", "assault", linked),))
    decision = decide(item, MIXED_POLICY, T0.replace(year=2040))
    assert (decision.action, decision.keep_until) == ("review", linked.replace(year=2029))
    assert "not recorded as closed" in decision.reason
    assert decide(item, MIXED_POLICY, linked.replace(year=2029) - timedelta(seconds=1)).action == "keep"


def test_an_item_linked_after_the_case_closed_counts_from_its_link() -> None:
    closed, linked = T0, T0 + timedelta(days=100)
    item = facts(links=(LinkFact("KNT-2026-000123", "assault", linked, closed_at=closed),))
    decision = decide(item, MIXED_POLICY, T0)
    assert decision.keep_until == linked.replace(year=2029)
    assert "linked after closure" in decision.reason


def test_lock_extension_only_ever_moves_later() -> None:
    decision = decide(facts(links=(LinkFact("KNT-2026-000123", "domestic-abuse", T0),)), POLICY, T0)
    assert lock_extension(decision, T0 + timedelta(days=31), T0) == decision.keep_until
    assert lock_extension(decision, None, T0) == decision.keep_until
    assert lock_extension(decision, decision.keep_until, T0) is None
    assert lock_extension(decision, decision.keep_until + timedelta(days=1), T0) is None
    assert lock_extension(decision, T0, decision.keep_until + timedelta(seconds=1)) is None  # date passed


# -- the chain fold ---------------------------------------------------------------------------------


def event(seq: int, type: str, at: datetime, **details: object) -> CustodyEvent:
    return CustodyEvent(ITEM, seq, None, type, at, "someone", "investigator", "station", details)


def test_facts_from_a_chain() -> None:
    events = [
        event(0, "ingest", T0),
        event(1, "link", T0 + timedelta(days=1), incident="A-2026-001", category="theft"),
        event(2, "link", T0 + timedelta(days=2), incident="B-2026-002", category=None),
        event(3, "hold", T0 + timedelta(days=3), hold_id="incident:A-2026-001", incident="A-2026-001"),
        event(4, "hold", T0 + timedelta(days=3), hold_id="incident:B-2026-002", incident="B-2026-002"),
        event(5, "release", T0 + timedelta(days=4), hold_id="incident:B-2026-002"),
        event(6, "unlink", T0 + timedelta(days=5), incident="B-2026-002"),
        event(7, "link", T0 + timedelta(days=6), incident="A-2026-001"),  # re-link: keeps the category
        event(8, "retention", T0 + timedelta(days=7), retain_until="2033-03-20T00:00:00+00:00"),
    ]
    state = facts_from_events(ITEM, T0 + timedelta(hours=1), T0, events)
    assert state.facts.links == (LinkFact("A-2026-001", "theft", T0 + timedelta(days=6)),)
    assert state.facts.holds == ("incident:A-2026-001",)
    assert state.hold_incidents == {"incident:A-2026-001": "A-2026-001"}
    assert state.retain_until == datetime(2033, 3, 20, tzinfo=UTC)
    assert state.disposed_at is None
    disposed = facts_from_events(
        ITEM, T0, T0, [*events, event(9, "disposal", T0.replace(year=2034), rule="x")]
    )
    assert disposed.disposed_at == T0.replace(year=2034) and disposed.disposal_rule == "x"


def test_closures_from_a_chain_latest_not_reopened_and_outliving_a_relink() -> None:
    def closed_at(*events: CustodyEvent) -> list[datetime | None]:
        state = facts_from_events(ITEM, T0, T0, [event(0, "ingest", T0), *events])
        return [link.closed_at for link in state.facts.links]

    link = event(1, "link", T0, incident="A-2026-001", category="assault")
    first = event(
        2, "closure", T0 + timedelta(days=9), incident="A-2026-001", closed_at="2026-04-01T00:00:00Z"
    )
    reopen = event(3, "reopen", T0 + timedelta(days=20), incident="A-2026-001", reason="appeal")
    again = event(
        4, "closure", T0 + timedelta(days=40), incident="A-2026-001", closed_at="2026-05-01T00:00:00"
    )
    assert closed_at(link) == [None]
    assert closed_at(link, first) == [datetime(2026, 4, 1, tzinfo=UTC)]
    assert closed_at(link, first, reopen) == [None]
    assert closed_at(link, first, reopen, again) == [datetime(2026, 5, 1, tzinfo=UTC)]
    unlink = event(5, "unlink", T0 + timedelta(days=50), incident="A-2026-001")
    relink = event(6, "link", T0 + timedelta(days=60), incident="A-2026-001")
    assert closed_at(link, first, unlink, relink) == [datetime(2026, 4, 1, tzinfo=UTC)]
    other = event(2, "closure", T0, incident="B-2026-002", closed_at="2026-04-01T00:00:00Z")
    assert closed_at(link, other) == [None]  # another incident's closure
    unreadable = event(2, "closure", T0, incident="A-2026-001", closed_at="last week")
    assert closed_at(link, unreadable) == [None]  # an unreadable date leaves the case open


# -- properties -------------------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2045, 1, 1), timezones=st.just(UTC))
offsets = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4000))
link_categories = st.sampled_from(
    [None, "domestic-abuse", "theft", "no-crime", "smuggling", "homicide", "assault"]
)


@st.composite
def items(draw: st.DrawFn) -> RetentionFacts:
    recorded = draw(st.none() | moments)
    ingested = draw(moments)
    links = tuple(
        LinkFact(
            f"KNT-2026-{n:06d}", draw(link_categories), ingested + draw(offsets), draw(st.none() | moments)
        )
        for n in range(draw(st.integers(0, 3)))
    )
    holds = tuple(f"incident:H-{n}" for n in range(draw(st.integers(0, 2))))
    naive = draw(st.booleans())
    if naive and recorded is not None:
        recorded = recorded.replace(tzinfo=None)  # device times without an offset
    return RetentionFacts(ITEM, ingested, recorded, links, holds)


def policies() -> st.SearchStrategy[RetentionPolicy]:
    return st.sampled_from([POLICY, parse_policy(MINIMAL.encode()), MIXED_POLICY])


@settings(max_examples=300, deadline=None)
@given(items(), policies(), moments)
def test_never_disposes_of_a_held_item_or_before_its_date(
    item: RetentionFacts, policy: RetentionPolicy, now: datetime
) -> None:
    decision = decide(item, policy, now)
    if item.holds:
        assert decision.action == "keep" and decision.held
    if decision.action != "keep":
        assert now >= decision.keep_until
    else:
        assert now < decision.keep_until or decision.held


@settings(max_examples=300, deadline=None)
@given(items(), policies(), moments)
def test_keep_until_is_never_before_any_applicable_rule(
    item: RetentionFacts, policy: RetentionPolicy, now: datetime
) -> None:
    decision = decide(item, policy, now)
    ingested = item.ingested_at
    recorded = recording_anchor(item)[0]
    default = policy.rule(policy.default_category)
    assert decision.keep_until >= default.period.after(recorded)
    assert decision.keep_until >= policy.minimum_after_ingest.after(ingested)
    for link in item.links:
        rule = policy.rule(policy.category_for_incident(link.category))
        if rule.anchor == "closure":
            start = max(link.linked_at, link.closed_at or link.linked_at)
        else:
            start = link.linked_at if rule.anchor == "link" else recorded
        assert decision.keep_until >= rule.period.after(start)


@settings(max_examples=300, deadline=None)
@given(items(), policies(), moments, moments)
def test_a_case_still_open_is_never_disposed_and_closing_it_never_shortens(
    item: RetentionFacts, policy: RetentionPolicy, now: datetime, closed: datetime
) -> None:
    opened = replace(item, links=tuple(replace(link, closed_at=None) for link in item.links))
    open_decision = decide(opened, policy, now)
    if any(
        policy.rule(policy.category_for_incident(link.category)).anchor == "closure" for link in item.links
    ):
        assert open_decision.action != "dispose"
    closed_all = replace(item, links=tuple(replace(link, closed_at=closed) for link in item.links))
    assert decide(closed_all, policy, now).keep_until >= open_decision.keep_until


@settings(max_examples=300, deadline=None)
@given(items(), policies(), moments, offsets)
def test_decisions_are_monotonic_in_time(
    item: RetentionFacts, policy: RetentionPolicy, now: datetime, later: timedelta
) -> None:
    first, second = decide(item, policy, now), decide(item, policy, now + later)
    assert (first.keep_until, first.category, first.rule) == (second.keep_until, second.category, second.rule)
    if first.action != "keep":
        assert second.action == first.action


@settings(max_examples=300, deadline=None)
@given(items(), policies(), moments, link_categories, offsets)
def test_linking_never_shortens_retention_nor_makes_review_a_disposal(
    item: RetentionFacts, policy: RetentionPolicy, now: datetime, category: str | None, after: timedelta
) -> None:
    before = decide(item, policy, now)
    link = LinkFact("NEW-2026-000001", category, item.ingested_at + after)
    linked = RetentionFacts(
        item.evidence_id, item.ingested_at, item.recorded_at, (*item.links, link), item.holds
    )
    after_link = decide(linked, policy, now)
    assert after_link.keep_until >= before.keep_until
    if before.action == "review":
        assert after_link.action in ("review", "keep")
    if policy.rule(policy.category_for_incident(category)).action == "review":
        assert after_link.action != "dispose"


@settings(max_examples=200, deadline=None)
@given(items(), policies(), moments, st.none() | moments, moments)
def test_lock_extension_never_shortens(
    item: RetentionFacts, policy: RetentionPolicy, now: datetime, locked: datetime | None, real_now: datetime
) -> None:
    decision = decide(item, policy, now)
    target = lock_extension(decision, locked, real_now)
    if target is not None:
        assert target == decision.keep_until and target > real_now
        assert locked is None or target > locked


def test_times_with_other_offsets_decide_like_utc() -> None:
    bst = timezone(timedelta(hours=1))
    local = facts(recorded=T0.astimezone(bst), ingested=(T0 + timedelta(hours=2)).astimezone(bst))
    assert decide(local, POLICY, T0 + timedelta(days=30)) == decide(facts(), POLICY, T0 + timedelta(days=30))
