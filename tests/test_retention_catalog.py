"""The nightly retention pass decides from the catalog; before anything changes in storage the action
re-decides from the item's custody chain. The two must agree, or a lock is extended to the wrong date
and an item comes up for review early. These tests write custody events into a real catalog, read the
item back, and compare what the catalog gives the policy with what the chain gives it."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from evidence.custody import CustodyEvent
from evidence.retention import RetentionFacts, decide, facts_from_events, parse_policy
from flows.retention import facts_from_catalog
from storage.catalog import Catalog, CatalogItem

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = parse_policy(
    b"""
name = "catalog-agreement"
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
[categories.evidential-da]
period = "10 years"
from = "link"
action = "review"
[categories.after-closure]
period = "2 years"
from = "closure"
action = "dispose"
[incident_categories]
domestic-abuse = "evidential-da"
theft = "after-closure"
"""
)
INCIDENTS = ("A-2026-001", "B-2026-002", "C-2026-003")

_catalog: Catalog | None = None
_serial = itertools.count()


def shared_catalog() -> Catalog:
    """One SQLite catalog for every example (a fresh one each would make the property test slow);
    each example writes an item of its own."""
    global _catalog
    if _catalog is None:
        folder = Path(tempfile.mkdtemp(prefix="retention-catalog-"))
        _catalog = Catalog(f"sqlite:///{folder / 'catalog.sqlite'}")
    return _catalog


def chain(steps: Sequence[tuple[str, int, dict[str, Any]]]) -> list[CustodyEvent]:
    """An item's chain: its ingest event, then ``(type, day, details)`` steps, one day apart or more."""
    evidence_id = f"ev-{next(_serial):026d}"
    events = [
        CustodyEvent(
            evidence_id, 0, None, "ingest", T0, "station-1", "station", "station-1", {"device": "BWC"}
        )
    ]
    for seq, (kind, day, details) in enumerate(steps, start=1):
        at = T0 + timedelta(days=day, seconds=seq)
        events.append(
            CustodyEvent(evidence_id, seq, "0" * 64, kind, at, "ivy", "investigator", "ws", details)
        )
    return events


def through_catalog(events: list[CustodyEvent]) -> CatalogItem:
    catalog = shared_catalog()
    catalog.record_item(None, events)
    item = catalog.item(events[0].evidence_id)
    assert item is not None
    return item


def from_chain(item: CatalogItem, events: list[CustodyEvent]) -> RetentionFacts:
    return facts_from_events(item.evidence_id, item.ingested_at, item.recorded_at, events).facts


def same_facts(left: RetentionFacts, right: RetentionFacts) -> None:
    assert sorted(left.links, key=lambda link: link.incident) == sorted(
        right.links, key=lambda link: link.incident
    )
    assert (left.holds, left.reviewed_keep_until, left.reviewed_dispose_at) == (
        right.holds,
        right.reviewed_keep_until,
        right.reviewed_dispose_at,
    )


def test_each_link_counts_from_its_own_time() -> None:
    """A DA item linked to a second DA incident two years later is kept ten years from the later
    link. The catalog once counted every link from the earliest: its lock stayed two years short
    and the item came up for review two years early."""
    events = chain(
        [
            ("link", 0, {"incident": INCIDENTS[0], "category": "domestic-abuse"}),
            ("link", 730, {"incident": INCIDENTS[1], "category": "domestic-abuse"}),
        ]
    )
    item = through_catalog(events)
    now = T0 + timedelta(days=800)
    by_catalog = decide(facts_from_catalog(item), POLICY, now)
    by_chain = decide(from_chain(item, events), POLICY, now)
    assert by_catalog.keep_until == by_chain.keep_until
    assert by_catalog.keep_until.year == T0.year + 12
    assert [link.linked_at.date() for link in item.links] == [
        T0.date(),
        (T0 + timedelta(days=730)).date(),
    ]


def test_a_relink_after_an_unlink_counts_from_the_new_link() -> None:
    events = chain(
        [
            ("link", 0, {"incident": INCIDENTS[0], "category": "domestic-abuse"}),
            ("unlink", 10, {"incident": INCIDENTS[0]}),
            ("link", 400, {"incident": INCIDENTS[0], "category": None}),
        ]
    )
    item = through_catalog(events)
    [link] = item.links
    assert link.linked_at.date() == (T0 + timedelta(days=400)).date()
    same_facts(facts_from_catalog(item), from_chain(item, events))


step = st.one_of(
    st.tuples(
        st.just("link"),
        st.integers(0, 3000),
        st.fixed_dictionaries(
            {
                "incident": st.sampled_from(INCIDENTS),
                "category": st.sampled_from([None, "domestic-abuse", "theft", "unknown-kind"]),
            }
        ),
    ),
    st.tuples(
        st.just("unlink"),
        st.integers(0, 3000),
        st.fixed_dictionaries({"incident": st.sampled_from(INCIDENTS)}),
    ),
    st.tuples(
        st.sampled_from(["closure", "reopen"]),
        st.integers(0, 3000),
        st.fixed_dictionaries(
            {
                "incident": st.sampled_from(INCIDENTS),
                "closed_at": st.sampled_from(
                    ["2027-01-05T00:00:00+00:00", "2029-06-30T12:00:00+00:00", "soon"]
                ),
            }
        ),
    ),
    st.tuples(
        st.just("review"),
        st.integers(0, 3000),
        st.fixed_dictionaries(
            {
                "decision": st.sampled_from(["keep", "dispose", "junk"]),
                "keep_until": st.sampled_from(["2040-01-01T00:00:00+00:00", "later"]),
                "review_due": st.sampled_from(["2033-03-01T00:00:00+00:00", "later"]),
            }
        ),
    ),
    st.tuples(
        st.sampled_from(["hold", "release"]),
        st.integers(0, 3000),
        st.fixed_dictionaries(
            {
                "hold_id": st.sampled_from(["incident:A-2026-001", "incident:B-2026-002"]),
                "incident": st.just("A"),
            }
        ),
    ),
)


@settings(max_examples=250, deadline=None)
@given(st.lists(step, max_size=10).map(lambda steps: sorted(steps, key=lambda s: s[1])), st.integers(0, 6000))
@example(  # two cases closed the same day: the reason named whichever link came first
    steps=[
        ("link", 0, {"incident": "A-2026-001", "category": None}),
        ("link", 0, {"incident": "B-2026-002", "category": "theft"}),
        ("closure", 0, {"incident": "A-2026-001", "closed_at": "2029-06-30T12:00:00+00:00"}),
        ("closure", 0, {"incident": "B-2026-002", "closed_at": "2029-06-30T12:00:00+00:00"}),
        ("unlink", 0, {"incident": "A-2026-001"}),
        ("link", 0, {"incident": "A-2026-001", "category": "theft"}),
    ],
    day=0,
)
def test_the_catalog_gives_the_policy_what_the_chain_gives_it(
    steps: list[tuple[str, int, dict[str, Any]]], day: int
) -> None:
    """Whatever links, unlinks, re-links, closures, reviews and holds an item went through, the
    catalog's facts and decision are the chain's."""
    events = chain(steps)
    item = through_catalog(events)
    by_catalog, by_chain = facts_from_catalog(item), from_chain(item, events)
    same_facts(by_catalog, by_chain)
    now = T0 + timedelta(days=day)
    assert decide(by_catalog, POLICY, now) == decide(by_chain, POLICY, now)
