"""Feed linking: a records-system export of incidents links every item whose officer and recording time
fit exactly one incident; ambiguous items are reported, bad rows rejected with their row number, and
running the same feed again changes nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from cli.commands import app
from evidence.errors import AccessDenied, InvalidInput
from evidence.feed import (
    MAX_WINDOW,
    READ_CHUNK,
    DatedItem,
    Feed,
    FeedIncident,
    feed_rows,
    match_feed,
    parse_feed,
)
from evidence.incident import IncidentRef
from evidence.manifest import encode_manifest
from evidence.times import CLOCK_SKEW, DEVICE_ERA_START
from flows.records import note_item
from storage.catalog import Catalog
from storage.vault import Vault
from tests.station import Station, make_station
from tests.test_catalog import fake_event, fake_id, fake_manifest

TOLERANCE = timedelta(minutes=15)
BASE = datetime(2026, 3, 14, 8, 0, tzinfo=UTC)
USERS = """
[users.det-a]
role = "investigator"
[users.records-feed]
role = "investigator"
[users.admin]
role = "storage-admin"
[users.pc-1]
role = "officer"
"""


# -- reading an export ----------------------------------------------------------------------------


def test_csv_rows_are_read_and_bad_rows_rejected_with_their_line_number() -> None:
    feed = parse_feed(
        (
            "\ufeffIncident_Ref , Officer_ID,start,end,category\n"  # BOM and header spacing from a spreadsheet
            "knt-2026-000001,PC-1,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,Domestic-Abuse\n"
            "../x,PC-1,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,\n"
            "\u041aNT-2026-000002,PC-1,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,\n"
            "KNT-2026-000003,PC-1,yesterday,2026-03-14T09:00:00Z,\n"
            "KNT-2026-000004,PC-1,2026-03-14T09:00:00Z,2026-03-14T08:00:00Z,\n"
            "KNT-2026-000005,,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,\n"
            "KNT-2026-000006,PC 1,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,\n"
            "KNT-2026-000007,PC-1,2026-03-14T08:00:00Z,2026-05-14T09:00:00Z,\n"
            "KNT-2026-000001,PC-2,2026-03-14T08:00:00,2026-03-14T09:00:00+01:00,theft\n"
            '"KNT-2026-000008\'; DROP TABLE links;--",PC-1,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,\n'
            "KNT-2026-000009,PC-3,2026-03-14T08:00:00,2026-03-14T09:00:00+01:00,\n"
        ).encode(),
        name="export.csv",
    )
    assert [(i.row, i.incident.value, i.officer_id, i.category) for i in feed.incidents] == [
        (2, "KNT-2026-000001", "PC-1", "domestic-abuse"),
        (12, "KNT-2026-000009", "PC-3", None),
    ]
    last = feed.incidents[1]
    assert last.start == datetime(2026, 3, 14, 8, 0, tzinfo=UTC)  # no offset: taken as UTC
    assert last.end == last.start  # 09:00+01:00 is 08:00 UTC
    rejected = {r.row: r.reason for r in feed.rejected}
    assert sorted(rejected) == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert "not an incident reference" in rejected[3]
    assert "ASCII" in rejected[4]
    assert "ISO 8601" in rejected[5]
    assert "before start" in rejected[6]
    assert "missing officer_id" in rejected[7]
    assert "officer id" in rejected[8]
    assert "longer than 31 days" in rejected[9]
    assert "conflicts with 'domestic-abuse'" in rejected[10] and "row 2" in rejected[10]
    assert "not an incident reference" in rejected[11]
    assert all("\n" not in reason for reason in rejected.values())


def test_json_export_and_whole_file_problems() -> None:
    feed = parse_feed(
        json.dumps(
            [
                {
                    "incident_ref": "37/12345/26",
                    "officer_id": "PC-1",
                    "start": "2026-03-14T08:00:00Z",
                    "end": "2026-03-14T09:00:00Z",
                    "category": "domestic-abuse",
                },
                "not an object",
                {"incident_ref": "KNT-2026-000001", "officer_id": "PC-1", "start": 1773475200, "end": "x"},
                {
                    "incident_ref": "K" * 10_000,
                    "officer_id": "PC-1",
                    "start": "2026-03-14",
                    "end": "2026-03-15",
                },
            ]
        ).encode(),
        name="export.json",
    )
    assert [i.incident.value for i in feed.incidents] == ["37/12345/26"]
    assert [r.row for r in feed.rejected] == [2, 3, 4]
    assert "must be text" in feed.rejected[1].reason
    with pytest.raises(InvalidInput, match="no column end"):
        parse_feed(b"incident_ref,officer_id,start\nKNT-2026-000001,PC-1,2026-03-14\n", name="x.csv")
    with pytest.raises(InvalidInput, match="JSON list"):
        parse_feed(b'{"incident_ref": "KNT-2026-000001"}', name="x.json")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        parse_feed(b"\xff\xfe\x00bad", name="x.csv")


# times anywhere in the calendar, in any zone a datetime can carry (up to a minute short of a day),
# weighted towards the plausible years and the calendar's ends where overflows lived
OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda minutes: timezone(timedelta(minutes=minutes)))
ANY_TIME = st.one_of(
    st.datetimes(timezones=OFFSETS),
    st.datetimes(min_value=datetime(1999, 12, 30), max_value=datetime(2027, 1, 5), timezones=OFFSETS),
    st.sampled_from([datetime.min, datetime.max]).flatmap(
        lambda end: st.builds(end.replace, tzinfo=st.none() | OFFSETS)
    ),
)
CLOCK = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def plausible(moment: datetime) -> bool:
    """The definition, by subtraction (which never overflows), not by the code's own conversion."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware - DEVICE_ERA_START >= timedelta(0) and aware - (CLOCK + CLOCK_SKEW) <= timedelta(0)


@settings(max_examples=300, deadline=None)
@given(ANY_TIME, ANY_TIME, st.none() | ANY_TIME)
def test_a_feed_row_with_any_times_is_accepted_only_when_they_are_plausible_and_never_crashes(
    start: datetime, end: datetime, closed_at: datetime | None
) -> None:
    closed_text = "" if closed_at is None else closed_at.isoformat()
    feed = parse_feed(
        (
            "incident_ref,officer_id,start,end,closed_at\n"
            f"KNT-2026-000001,PC-1,{start.isoformat()},{end.isoformat()},{closed_text}\n"
            "KNT-2026-000002,PC-1,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,\n"
        ).encode(),
        name="export.csv",
        now=CLOCK,
    )
    aware_start, aware_end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    acceptable = (
        plausible(start)
        and plausible(end)
        and timedelta(0) <= aware_end - aware_start <= MAX_WINDOW
        and (
            closed_at is None
            or (plausible(closed_at) and closed_at.replace(tzinfo=closed_at.tzinfo or UTC) >= aware_start)
        )
    )
    assert [i.row for i in feed.incidents] == ([2, 3] if acceptable else [3])  # the rest is always read
    if not acceptable:
        (rejected,) = feed.rejected
        assert rejected.row == 2 and "\n" not in rejected.reason
    else:
        accepted = feed.incidents[0]
        assert (accepted.start, accepted.end) == (aware_start, aware_end)
        assert accepted.start.tzinfo == UTC and accepted.end.tzinfo == UTC


def test_feed_rows_at_the_limits_of_time_are_rejected_by_row_and_the_rest_read() -> None:
    limits = [
        "9999-12-31T23:50:00",
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59.999999+14:00",
        "0001-01-01T00:00:00-14:00",
    ]
    window = ("2026-03-14T08:00:00Z", "2026-03-14T09:00:00Z")
    rows = [("KNT-2026-000001", *window, "")]
    for value in limits:
        rows += [("KNT-2026-000002", value, window[1], ""), ("KNT-2026-000003", window[0], value, "")]
        rows += [("KNT-2026-000004", *window, value)]
    skewed = datetime.now(UTC) + CLOCK_SKEW  # this machine's clock: a feed is judged by it
    rows += [
        ("KNT-2026-000005", "1999-12-31T23:59:59Z", window[1], ""),
        ("KNT-2026-000006", window[0], (skewed + timedelta(hours=1)).isoformat(), ""),
        ("KNT-2026-000007", *window, (skewed - timedelta(hours=1)).isoformat()),  # tomorrow: plausible
        ("KNT-2026-000008", DEVICE_ERA_START.isoformat(), "2000-01-01T01:00:00", ""),  # the first moment
    ]
    text = "incident_ref,officer_id,start,end,closed_at\n" + "".join(
        f"{ref},PC-1,{start},{end},{closed}\n" for ref, start, end, closed in rows
    )
    for fmt, data in (
        ("csv", text.encode()),
        (
            "json",
            json.dumps(
                [
                    {"incident_ref": r, "officer_id": "PC-1", "start": s, "end": e, "closed_at": c}
                    for r, s, e, c in rows
                ]
            ).encode(),
        ),
    ):
        feed = parse_feed(data, name=f"export.{fmt}")
        first = 2 if fmt == "csv" else 1  # CSV rows count lines (the header is line 1); JSON objects from 1
        assert [i.incident.value for i in feed.incidents] == [
            "KNT-2026-000001",
            "KNT-2026-000007",
            "KNT-2026-000008",
        ]
        rejected = {r.row - first: r.reason for r in feed.rejected}
        assert sorted(rejected) == [n for n in range(1, len(rows)) if n not in (len(rows) - 2, len(rows) - 1)]
        for n, value in enumerate(limits):
            start_row, end_row, closed_row = 1 + 3 * n, 2 + 3 * n, 3 + 3 * n
            past = value.startswith("0001")
            why = "is before 2000-01-01" if past else "is in the future"
            assert rejected[start_row].startswith("start ") and why in rejected[start_row]
            assert rejected[end_row].startswith("end ") and why in rejected[end_row]
            assert rejected[closed_row].startswith("closed_at ") and why in rejected[closed_row]
        assert "before 2000-01-01" in rejected[len(rows) - 4]
        assert "in the future" in rejected[len(rows) - 3]


class Pieces:
    """A feed file served at most ``most`` bytes per read, as a pipe or a slow disk may; counts what
    was served."""

    def __init__(self, data: bytes, most: int = READ_CHUNK) -> None:
        self.data, self.most, self.served = data, most, 0

    def read(self, size: int = -1) -> bytes:
        size = self.most if size < 0 else min(size, self.most)
        piece = self.data[self.served : self.served + size]
        self.served += len(piece)
        return piece


def test_a_feed_is_read_a_piece_at_a_time_as_its_rows_are_taken() -> None:
    rows = [
        (f"KNT-2026-{n:06d}", f"PC-{n % 50}", "2026-03-14T08:00:00Z", "2026-03-14T09:00:00Z")
        for n in range(20_000)
    ]
    as_csv = ("incident_ref,officer_id,start,end\n" + "".join(",".join(r) + "\n" for r in rows)).encode()
    as_json = json.dumps(
        [dict(zip(("incident_ref", "officer_id", "start", "end"), r, strict=True)) for r in rows]
    )
    for fmt, data in (("csv", as_csv), ("json", as_json.encode())):
        stream = Pieces(data)
        taken = feed_rows(stream, name=f"export.{fmt}")
        number, first = next(taken)
        assert (number, first["incident_ref"]) == (2 if fmt == "csv" else 1, "KNT-2026-000000")
        assert stream.served <= 2 * READ_CHUNK < len(data) / 4  # only the start of the file was read
        assert len(list(taken)) == len(rows) - 1 and stream.served == len(data)
    broken = as_csv[:100_000] + b"\xc3(" + as_csv[100_000:]
    with pytest.raises(InvalidInput, match=r"is not UTF-8 text \(byte 100000\)"):
        list(feed_rows(Pieces(broken, most=7), name="export.csv"))


FIELD_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(FIELD_TEXT, FIELD_TEXT, FIELD_TEXT, FIELD_TEXT), max_size=8),
    st.sampled_from(["\r\n", "\n", "\r"]),
    st.booleans(),
    st.integers(1, 9),
)
def test_rows_read_in_pieces_of_any_size_are_the_rows_of_the_whole_file(
    rows: list[tuple[str, str, str, str]], line_end: str, byte_order_mark: bool, most: int
) -> None:
    """The piecewise reader gives what reading the whole text at once gave, whatever the pieces cut:
    a CR LF, a quoted line break, a UTF-8 character."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator=line_end)
    writer.writerows([("incident_ref", "officer_id", "start", "end"), *rows])
    data = ("\ufeff" if byte_order_mark else "").encode() + text.getvalue().encode()
    whole = csv.DictReader(io.StringIO(text.getvalue(), newline=""))
    expected: list[tuple[int, object]] = []
    while True:
        try:
            row: object = next(whole)
        except StopIteration:
            break
        except csv.Error as err:
            row = str(err)
        expected.append((whole.line_num, row))
    read = [
        (n, str(row) if isinstance(row, csv.Error) else row)
        for n, row in feed_rows(Pieces(data, most), name="export.csv")
    ]
    assert read == [(n, row if isinstance(row, str) else dict(row)) for n, row in expected]
    items = [dict(zip(("incident_ref", "officer_id", "start", "end"), r, strict=True)) for r in rows]
    for document in (json.dumps(items), json.dumps(items, indent=1), json.dumps(items, ensure_ascii=False)):
        pieces = Pieces(("\ufeff" if byte_order_mark else "").encode() + document.encode(), most)
        assert list(feed_rows(pieces, name="export.json")) == list(enumerate(items, start=1))


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("", "must hold a JSON list"),
        ('{"incident_ref": "KNT-2026-000001"}', "must hold a JSON list"),
        ("[{}, {}", "',' or ']' expected after item 2"),
        ("[{}, ]", "Expecting value (item 2)"),
        ("[{}] []", "text after the end of the list"),
        ("[12", "',' or ']' expected after item 1"),
    ],
)
def test_a_json_feed_that_is_not_a_list_of_items_is_refused_as_a_whole(document: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(problem)):
        list(feed_rows(Pieces(document.encode(), most=1), name="export.json"))


# -- matching -------------------------------------------------------------------------------------


def incident(
    ref: str, officer: str, start: datetime, minutes: int = 60, row: int = 1, category: str | None = None
) -> FeedIncident:
    return FeedIncident(row, IncidentRef(ref), officer, start, start + timedelta(minutes=minutes), category)


def item(
    n: int,
    officer: str | None,
    at: datetime | None,
    linked: tuple[str, ...] = (),
    unlinked: tuple[str, ...] = (),
) -> DatedItem:
    return DatedItem(fake_id(n), officer, at, frozenset(linked), frozenset(unlinked))


def test_officer_must_match_exactly_and_the_tolerance_is_inclusive() -> None:
    feed = Feed((incident("KNT-2026-000001", "PC-1", BASE, category="domestic-abuse"),), ())
    items = [
        item(1, "PC-1", BASE - TOLERANCE),  # opens exactly at start - tolerance
        item(2, "PC-1", BASE + timedelta(minutes=60) + TOLERANCE),  # the last moment
        item(3, "PC-1", BASE - TOLERANCE - timedelta(seconds=1)),
        item(4, "PC-1", BASE + timedelta(minutes=75, seconds=1)),
        item(5, "pc-1", BASE + timedelta(minutes=5)),
        item(6, "PC-2", BASE + timedelta(minutes=5)),
        item(7, None, BASE + timedelta(minutes=5)),
        item(8, "PC-1", None),
    ]
    plan = match_feed(feed, items, TOLERANCE)
    assert [(x.evidence_id, x.incident, x.category) for x in plan.to_link] == [
        (fake_id(1), "KNT-2026-000001", "domestic-abuse"),
        (fake_id(2), "KNT-2026-000001", "domestic-abuse"),
    ]
    assert plan.undated == (fake_id(8),)  # never matched on its ingest time
    assert plan.ambiguous == () and plan.already_linked == ()
    assert match_feed(feed, items, timedelta(0)).to_link == ()
    with pytest.raises(InvalidInput):
        match_feed(feed, items, timedelta(minutes=-1))


def test_two_incidents_that_fit_are_reported_never_guessed() -> None:
    feed = Feed(
        (
            incident("KNT-2026-000001", "PC-1", BASE),
            incident("KNT-2026-000002", "PC-1", BASE + timedelta(minutes=50)),
            incident("KNT-2026-000002", "PC-2", BASE),  # another officer at the same incident
        ),
        (),
    )
    items = [
        item(1, "PC-1", BASE + timedelta(minutes=10)),
        item(2, "PC-1", BASE + timedelta(minutes=55)),  # fits both
        item(3, "PC-1", BASE + timedelta(minutes=55), linked=("KNT-2026-000002",)),  # a person decided
        item(4, "PC-1", BASE + timedelta(minutes=55), unlinked=("KNT-2026-000001",)),  # not that one
        item(5, "PC-2", BASE + timedelta(minutes=55)),
        item(6, "PC-1", BASE + timedelta(minutes=10), unlinked=("KNT-2026-000001",)),
    ]
    plan = match_feed(feed, items, TOLERANCE)
    assert [(x.evidence_id, x.incident) for x in plan.to_link] == [
        (fake_id(1), "KNT-2026-000001"),
        (fake_id(4), "KNT-2026-000002"),
        (fake_id(5), "KNT-2026-000002"),
    ]
    assert [(a.evidence_id, a.incidents) for a in plan.ambiguous] == [
        (fake_id(2), ("KNT-2026-000001", "KNT-2026-000002"))
    ]
    assert plan.already_linked == ((fake_id(3), "KNT-2026-000002"),)
    assert set(plan.kept_unlinked) == {(fake_id(4), "KNT-2026-000001"), (fake_id(6), "KNT-2026-000001")}


def utc_time_in_any_zone(moment: datetime, zone: timezone) -> datetime:
    try:
        return moment.astimezone(zone)
    except OverflowError:  # no such time in that zone: the calendar ends first
        return moment


MOMENTS = st.builds(utc_time_in_any_zone, st.datetimes(timezones=st.just(UTC)), OFFSETS)
TWO_DAYS = st.timedeltas(timedelta(0), timedelta(days=2))
NEAR_THE_ENDS = TWO_DAYS.map(lambda shift: datetime.min.replace(tzinfo=UTC) + shift) | TWO_DAYS.map(
    lambda shift: datetime.max.replace(tzinfo=UTC) - shift
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.datetimes(timezones=st.just(UTC)), NEAR_THE_ENDS),
            st.timedeltas(timedelta(0), timedelta(days=40)),
        ),
        max_size=6,
    ),
    st.lists(st.one_of(MOMENTS, NEAR_THE_ENDS), max_size=6),
    st.one_of(st.timedeltas(timedelta(0), timedelta(days=3)), st.just(timedelta.max)),
)
def test_the_window_arithmetic_matches_the_definition_at_any_time_and_never_overflows(
    windows: list[tuple[datetime, timedelta]], moments: list[datetime], tolerance: timedelta
) -> None:
    incidents = []
    for n, (start, length) in enumerate(windows):
        end = (
            start + length
            if start <= datetime.max.replace(tzinfo=UTC) - length
            else datetime.max.replace(tzinfo=UTC)
        )
        incidents.append(FeedIncident(n + 1, IncidentRef(f"KNT-2026-{n:06d}"), "PC-1", start, end, None))
    items = [item(n, "PC-1", moment) for n, moment in enumerate(moments)]
    plan = match_feed(Feed(tuple(incidents), ()), items, tolerance)
    fits = {  # by subtraction of aware times, which never overflows: start - tol <= t <= end + tol
        x.evidence_id: {
            i.incident.value
            for i in incidents
            if i.start - x.recorded_at <= tolerance and x.recorded_at - i.end <= tolerance
        }
        for x in items
        if x.recorded_at is not None
    }
    assert {x.evidence_id: {x.incident} for x in plan.to_link} == {
        e: r for e, r in fits.items() if len(r) == 1
    }
    assert {a.evidence_id: set(a.incidents) for a in plan.ambiguous} == {
        e: r for e, r in fits.items() if len(r) > 1
    }


def generated(
    seed: int = 3, officers: int = 100, per_officer: int = 10, items: int = 10_000
) -> tuple[Feed, list[DatedItem]]:
    """1,000 incidents (10 per officer, some overlapping) and 10,000 items around them."""
    rng = random.Random(seed)
    incidents = []
    for o in range(officers):
        officer = f"PC-{o:03d}"
        at = BASE + timedelta(minutes=rng.randrange(0, 120))
        for k in range(per_officer):
            length = rng.randrange(20, 180)
            ref = f"KNT-2026-{o * per_officer + k:06d}"
            incidents.append(
                incident(
                    ref,
                    officer,
                    at,
                    length,
                    row=len(incidents) + 2,
                    category="domestic-abuse" if k % 4 == 0 else None,
                )
            )
            # usually a gap before the next; sometimes the next call comes in while this one is open
            at += timedelta(minutes=length + rng.choice([-40, -10, 5, 45, 90, 240, 600]))
    span = (incidents[-1].end - BASE).total_seconds() + 4 * 3600
    dated = []
    for n in range(items):
        officer = f"PC-{rng.randrange(officers + 5):03d}"  # a few officers the feed does not name
        at = None if n % 97 == 0 else BASE + timedelta(seconds=rng.randrange(-3600, int(span)))
        dated.append(item(n, officer, at))
    return Feed(tuple(incidents), ()), dated


def oracle(feed: Feed, items: list[DatedItem]) -> dict[str, set[str]]:
    """What fits, by the definition: the same officer, recording start inside the widened window."""
    by_officer: dict[str, list[FeedIncident]] = {}
    for entry in feed.incidents:
        by_officer.setdefault(entry.officer_id, []).append(entry)
    fits = {}
    for x in items:
        if x.recorded_at is None:
            continue
        fitting = {
            i.incident.value
            for i in by_officer.get(x.officer_id or "", [])
            if i.start - TOLERANCE <= x.recorded_at <= i.end + TOLERANCE
        }
        if fitting:
            fits[x.evidence_id] = fitting
    return fits


def test_a_thousand_incidents_and_ten_thousand_items_match_exactly_and_fast() -> None:
    feed, items = generated()
    assert len(feed.incidents) == 1000 and len(items) == 10_000
    started = time.perf_counter()
    plan = match_feed(feed, items, TOLERANCE)
    elapsed = time.perf_counter() - started
    expected = oracle(feed, items)
    single = {e: next(iter(refs)) for e, refs in expected.items() if len(refs) == 1}
    several = {e: tuple(sorted(refs)) for e, refs in expected.items() if len(refs) > 1}
    assert {x.evidence_id: x.incident for x in plan.to_link} == single
    assert {a.evidence_id: a.incidents for a in plan.ambiguous} == several
    assert len(single) > 3000 and len(several) > 100  # the generated feed exercises both
    categories = feed.categories()
    assert all(x.category == categories.get(x.incident) for x in plan.to_link)
    assert elapsed < 2.0, f"matching took {elapsed:.2f} s: it should bisect, not compare every pair"


@pytest.mark.slow
def test_at_catalog_scale_all_unambiguous_matches_link_and_a_second_run_is_a_no_op(tmp_path: Path) -> None:
    from flows.linking import feed_candidates

    feed, dated = generated(seed=5)
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    catalog.record_manifests(
        fake_manifest(
            n,
            officer=x.officer_id,
            recorded_at=x.recorded_at.isoformat() if x.recorded_at else None,
            ingested_at=BASE + timedelta(days=30),
        )
        for n, x in enumerate(dated)
    )
    started = time.perf_counter()
    candidates = feed_candidates(catalog, feed, TOLERANCE)
    plan = match_feed(feed, candidates, TOLERANCE)
    assert time.perf_counter() - started < 10
    expected = oracle(feed, dated)
    assert {x.evidence_id for x in plan.to_link} == {e for e, refs in expected.items() if len(refs) == 1}
    assert {a.evidence_id for a in plan.ambiguous} == {e for e, refs in expected.items() if len(refs) > 1}

    # what linking writes, folded into the catalog as the records helper would
    catalog.record_events(
        fake_event(
            x.evidence_id, 1, "link", incident=x.incident, category=x.category, reason="feed", source="feed"
        )
        for x in plan.to_link
    )
    again = match_feed(feed, feed_candidates(catalog, feed, TOLERANCE), TOLERANCE)
    assert again.to_link == ()
    assert len(again.already_linked) == len(plan.to_link)
    assert again.ambiguous == plan.ambiguous
    some = plan.to_link[0]
    assert [i.evidence_id for i in catalog.items(incident=some.incident)] >= [some.evidence_id]


# -- end to end through the vault -----------------------------------------------------------------


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Station:
    data_dir = tmp_path / "station"
    station = make_station(data_dir)
    (data_dir / "users.toml").write_text(USERS)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(data_dir))
    return station


def stored_item(vault: Vault, catalog: Catalog, n: int, officer: str, at: datetime | None) -> str:
    """An item as ingest leaves it (manifest, custody event 0, catalogued), without encoding media."""
    manifest = fake_manifest(n, officer=officer, recorded_at=at.isoformat() if at else None)
    vault.store.put_bytes(
        f"items/{manifest.evidence_id}/manifest.json",
        encode_manifest(manifest),
        retention=vault.retention_for_new_objects(),
        if_absent=True,
    )
    vault.record_ingest(manifest)
    note_item(vault, catalog, manifest)
    return manifest.evidence_id


FEED_CSV = (
    "incident_ref,officer_id,start,end,category\n"
    "KNT-2026-000001,PC-1,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,domestic-abuse\n"
    "KNT-2026-000002,PC-1,2026-03-14T08:50:00Z,2026-03-14T10:00:00Z,\n"
    "KNT-2026-000002,PC-2,2026-03-14T08:50:00Z,2026-03-14T10:00:00Z,\n"
    "KNT-2026-000003,PC-2,2026-03-14T12:00:00,2026-03-14T13:00:00,\n"
    "BAD/REF,PC-2,2026-03-14T12:00:00Z,2026-03-14T13:00:00Z,\n"
)


@pytest.fixture
def fed(station: Station, tmp_path: Path) -> tuple[Path, list[str]]:
    placed = [
        ("PC-1", BASE + timedelta(minutes=10)),  # 0: KNT-1
        ("PC-1", BASE + timedelta(minutes=55)),  # 1: KNT-1 and KNT-2: ambiguous
        ("PC-1", BASE + timedelta(minutes=90)),  # 2: KNT-2
        ("PC-2", BASE + timedelta(minutes=60)),  # 3: KNT-2
        ("PC-2", BASE + timedelta(hours=4, minutes=30)),  # 4: KNT-3 (naive times in the feed: UTC)
        ("PC-2", BASE + timedelta(hours=7)),  # 5: nothing
        ("PC-3", BASE + timedelta(minutes=10)),  # 6: officer not in the feed
        ("PC-1", None),  # 7: no recording time
    ]
    ids = [
        stored_item(station.vault, station.catalog, 100 + n, officer, at)
        for n, (officer, at) in enumerate(placed)
    ]
    feed = tmp_path / "incidents.csv"
    feed.write_text(FEED_CSV)
    return feed, ids


def run(*args: str, user: str | None = "det-a") -> Result:
    return CliRunner().invoke(app, (["--user", user] if user else []) + list(args))


def chain_lengths(station: Station, ids: list[str]) -> list[int]:
    return [len(station.vault.custody.stored(e)) for e in ids]


@contextmanager
def fsync_skipped() -> Iterator[None]:
    """Setting up thousands of items is not what is measured or tested: their fsyncs are skipped."""
    real = os.fsync
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = real


def link_generated_feed_through_the_vault(station: Station, *, officers: int, items: int) -> dict[str, float]:
    """A generated feed (``officers`` x 10 incidents) over ``items`` items stored as ingest leaves them
    (without media), linked by the real ``link_feed`` twice; every link and every ambiguity checked
    against the oracle, every item's chain read back, and the second run must write nothing. Returns
    the seconds each phase took. The test runs it at a tenth of the issue's scale; ``python -m
    bench.feed_linking`` at the issue's 1,000 incidents and 10,000 items."""
    from concurrent.futures import ThreadPoolExecutor

    from evidence.access import UserDirectory
    from flows.linking import link_feed

    feed, dated = generated(seed=5, officers=officers, items=items)
    assert (len(feed.incidents), len(dated)) == (officers * 10, items)
    started = time.perf_counter()
    with fsync_skipped(), ThreadPoolExecutor(max_workers=4) as pool:
        stored = list(
            pool.map(
                lambda nx: stored_item(
                    station.vault, station.catalog, nx[0], nx[1].officer_id, nx[1].recorded_at
                ),
                enumerate(dated),
            )
        )
    stored_at = time.perf_counter()
    assert stored == [x.evidence_id for x in dated]
    actor = UserDirectory.load(station.settings.users_file).resolve("det-a")
    expected = oracle(feed, dated)
    unambiguous = {e: next(iter(refs)) for e, refs in expected.items() if len(refs) == 1}
    ambiguous = {e: refs for e, refs in expected.items() if len(refs) > 1}
    assert len(unambiguous) > items * 0.15 and len(ambiguous) > items * 0.03, "the feed must exercise both"

    report = link_feed(station.vault, station.catalog, feed, actor, tolerance=TOLERANCE)
    linked_at = time.perf_counter()
    assert {(x.evidence_id, x.incident) for x in report.linked} == set(unambiguous.items())
    assert {a.evidence_id: set(a.incidents) for a in report.ambiguous} == ambiguous
    assert (report.failed, report.skipped) == ((), ())
    for evidence_id in stored:  # the vault, the source of truth, says the same
        links = [e.details["incident"] for e in station.vault.custody.events(evidence_id) if e.type == "link"]
        assert links == ([unambiguous[evidence_id]] if evidence_id in unambiguous else [])
    records = sum(1 for _ in station.vault.store.list_versions("custody/"))

    checked_at = time.perf_counter()
    again = link_feed(station.vault, station.catalog, feed, actor, tolerance=TOLERANCE)
    again_at = time.perf_counter()
    assert again.linked == () and again.already_linked == len(unambiguous)
    assert again.ambiguous == report.ambiguous
    assert sum(1 for _ in station.vault.store.list_versions("custody/")) == records, "nothing written"
    return {
        "incidents": officers * 10,
        "items": items,
        "linked": len(report.linked),
        "ambiguous": len(report.ambiguous),
        "store_seconds": stored_at - started,
        "link_seconds": linked_at - stored_at,
        "second_run_seconds": again_at - checked_at,
    }


@pytest.mark.slow
def test_a_feed_links_through_the_vault_at_scale_and_a_second_run_writes_nothing(
    station: Station, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenth of the issue's scale through the vault (its full scale is planned above in the catalog,
    and run through the vault by ``python -m bench.feed_linking``). fsync is skipped here, for the
    linking too, which changes nothing the linking decides or writes; the benchmark keeps it."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    figures = link_generated_feed_through_the_vault(station, officers=10, items=1000)
    assert (figures["linked"], figures["ambiguous"]) == (219, 45)  # as the oracle counts them for seed 5


def test_feed_links_through_the_vault_and_a_second_run_writes_nothing(
    station: Station, fed: tuple[Path, list[str]]
) -> None:
    feed, ids = fed
    dry = run("link-feed", str(feed), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert len(json.loads(dry.stdout)["linked"]) == 4
    assert chain_lengths(station, ids) == [1] * 8

    first = run("link-feed", str(feed), "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert {(x["evidence_id"], x["incident"]) for x in doc["linked"]} == {
        (ids[0], "KNT-2026-000001"),
        (ids[2], "KNT-2026-000002"),
        (ids[3], "KNT-2026-000002"),
        (ids[4], "KNT-2026-000003"),
    }
    assert doc["ambiguous"] == [{"evidence_id": ids[1], "incidents": ["KNT-2026-000001", "KNT-2026-000002"]}]
    assert doc["undated"] == [ids[7]]
    assert [r["row"] for r in doc["rejected_rows"]] == [6]
    link = station.vault.custody.events(ids[0])[-1]
    assert link.type == "link" and link.actor == "det-a" and link.role == "investigator"
    assert link.details["source"] == "feed" and link.details["category"] == "domestic-abuse"
    assert "row 2" in link.details["reason"]
    assert station.vault.custody.verify(ids[0]).intact
    assert [i.evidence_id for i in station.catalog.items(category="domestic-abuse")] == [ids[0]]
    after_first = chain_lengths(station, ids)
    assert after_first == [2, 1, 2, 2, 2, 1, 1, 1]

    second = run("link-feed", str(feed), "--json")
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["linked"] == [] and again["already_linked"] == 4 and again["ambiguous"] == doc["ambiguous"]
    assert chain_lengths(station, ids) == after_first

    # a person decides: the ambiguous item belongs to KNT-2; a wrong feed link is undone
    assert (
        run("link", ids[1], "--incident", "KNT-2026-000002", "--reason", "checked the footage").exit_code == 0
    )
    assert run("unlink", ids[3], "--incident", "KNT-2026-000002", "--reason", "different job").exit_code == 0
    third = json.loads(run("link-feed", str(feed), "--json").stdout)
    assert third["linked"] == [] and third["ambiguous"] == []
    assert third["kept_unlinked"] == [{"evidence_id": ids[3], "incident": "KNT-2026-000002"}]
    assert chain_lengths(station, ids) == [2, 2, 2, 3, 2, 1, 1, 1]

    table = run("link-feed", str(feed))
    assert table.exit_code == 0 and "0 linked" in table.output and "row 6 rejected" in table.output


def test_link_feed_with_rows_at_the_limits_of_time_links_the_rest_and_reports_those_rows(
    station: Station, fed: tuple[Path, list[str]]
) -> None:
    feed, ids = fed
    feed.write_text(
        FEED_CSV
        + "KNT-2026-000009,PC-1,9999-12-31T23:50:00,9999-12-31T23:59:59,\n"
        + "KNT-2026-000010,PC-2,0001-01-01T00:00:00,2026-03-14T09:00:00Z,\n"
        + "KNT-2026-000011,PC-1,2026-03-14T08:00:00Z,9999-12-31T23:59:59-14:00,\n"
        + "KNT-2026-000012,PC-2,0001-01-01T00:00:00+01:00,0001-01-01T01:00:00+01:00,\n"
    )
    result = run("link-feed", str(feed), "--json")
    assert result.exit_code == 0, result.output  # rows are rejected one by one; the feed is processed
    doc = json.loads(result.stdout)
    assert {(x["evidence_id"], x["incident"]) for x in doc["linked"]} == {
        (ids[0], "KNT-2026-000001"),
        (ids[2], "KNT-2026-000002"),
        (ids[3], "KNT-2026-000002"),
        (ids[4], "KNT-2026-000003"),
    }
    reasons = {r["row"]: r["reason"] for r in doc["rejected_rows"]}
    assert sorted(reasons) == [6, 7, 8, 9, 10]
    assert reasons[7].startswith("start 9999-12-31T23:50:00+00:00 is in the future")
    assert reasons[8].startswith("start 0001-01-01T00:00:00+00:00 is before 2000-01-01")
    assert reasons[9].startswith("end 9999-12-31T23:59:59+00:00 is in the future")
    assert reasons[10].startswith("start 0001-01-01T00:00:00+00:00 is before 2000-01-01")
    table = run("link-feed", str(feed))
    assert table.exit_code == 0 and "row 10 rejected: start 0001-01-01" in table.output


FEED_WITH_CLOSURES = (
    "incident_ref,officer_id,start,end,category,closed_at\n"
    "KNT-2026-000001,PC-1,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,domestic-abuse,2026-06-01T00:00:00Z\n"
    "KNT-2026-000002,PC-1,2026-03-14T08:50:00Z,2026-03-14T10:00:00Z,,2026-07-01T00:00:00\n"
    "KNT-2026-000002,PC-2,2026-03-14T08:50:00Z,2026-03-14T10:00:00Z,,\n"  # silent: does not disagree
    "KNT-2026-000003,PC-2,2026-03-14T12:00:00,2026-03-14T13:00:00,,2026-03-14T11:00:00\n"
)


def test_a_feed_with_closure_dates_records_them_on_linked_items_once(
    station: Station, fed: tuple[Path, list[str]], tmp_path: Path
) -> None:
    _, ids = fed
    feed = tmp_path / "closures.csv"
    feed.write_text(FEED_WITH_CLOSURES)

    dry = json.loads(run("link-feed", str(feed), "--dry-run", "--json").stdout)
    assert dry["closures"]["recorded"] == []  # nothing is linked yet, so nothing to close
    assert chain_lengths(station, ids) == [1] * 8

    first = run("link-feed", str(feed), "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert [r["row"] for r in doc["rejected_rows"]] == [5]
    assert "before the incident's start" in doc["rejected_rows"][0]["reason"]
    assert sorted(
        (c["evidence_id"], c["incident"], c["closed_at"]) for c in doc["closures"]["recorded"]
    ) == sorted(
        [
            (ids[0], "KNT-2026-000001", "2026-06-01T00:00:00+00:00"),
            (ids[2], "KNT-2026-000002", "2026-07-01T00:00:00+00:00"),
            (ids[3], "KNT-2026-000002", "2026-07-01T00:00:00+00:00"),
        ]
    )
    closure = station.vault.custody.events(ids[0])[-1]
    assert (
        closure.type == "closure"
        and closure.details["source"] == "feed"
        and "row 2" in closure.details["reason"]
    )
    assert closure.actor == "det-a" and station.vault.custody.verify(ids[0]).intact
    catalogued = station.catalog.item(ids[2])
    assert catalogued is not None and catalogued.closures == (
        ("KNT-2026-000002", datetime(2026, 7, 1, tzinfo=UTC)),
    )
    after_first = chain_lengths(station, ids)
    assert after_first == [3, 1, 3, 3, 1, 1, 1, 1]

    second = json.loads(run("link-feed", str(feed), "--json").stdout)
    assert second["closures"] == {"recorded": [], "already": 3, "refused": None}
    assert chain_lengths(station, ids) == after_first
    assert "case closures: 0 item(s) recorded, 3 already recorded" in run("link-feed", str(feed)).output


def test_a_feed_run_by_an_officer_links_but_leaves_closures_to_someone_who_may_record_them(
    station: Station, fed: tuple[Path, list[str]], tmp_path: Path
) -> None:
    _, ids = fed
    feed = tmp_path / "closures.csv"
    feed.write_text(FEED_WITH_CLOSURES)
    result = run("link-feed", str(feed), "--json", user="pc-1")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["linked"]) == 3 and doc["closures"]["recorded"] == []
    assert "may not record closures" in doc["closures"]["refused"]
    assert [e.type for e in station.vault.custody.events(ids[0])] == ["ingest", "link"]


def test_closure_dates_that_disagree_for_one_incident_are_rejected_by_row() -> None:
    feed = parse_feed(
        (
            b"incident_ref,officer_id,start,end,closed_at\n"
            b"KNT-2026-000001,PC-1,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,2026-06-01T00:00:00Z\n"
            b"KNT-2026-000001,PC-2,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,2026-06-02T00:00:00Z\n"
            b"KNT-2026-000001,PC-3,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,\n"
            b"KNT-2026-000002,PC-3,2026-03-14T08:00:00Z,2026-03-14T09:00:00Z,soon\n"
        ),
        name="export.csv",
    )
    assert [i.officer_id for i in feed.incidents] == ["PC-1", "PC-3"]
    assert feed.closures() == {"KNT-2026-000001": (datetime(2026, 6, 1, tzinfo=UTC), 2)}
    rejected = {r.row: r.reason for r in feed.rejected}
    assert "conflicts with 2026-06-01T00:00:00+00:00" in rejected[3] and "row 2" in rejected[3]
    assert "closed_at 'soon' is not an ISO 8601 time" in rejected[5]


def test_feed_runs_check_the_vault_not_only_a_stale_catalog(
    station: Station, fed: tuple[Path, list[str]], tmp_path: Path
) -> None:
    feed, ids = fed
    assert run("link-feed", str(feed)).exit_code == 0
    # a catalog that missed the links (another machine linked; this one was offline)
    (station.settings.data_dir / "catalog.sqlite").unlink()
    stale = Catalog.open(station.settings)
    stale.record_manifests(station.vault.manifest(evidence_id) for evidence_id in ids)
    before = chain_lengths(station, ids)
    doc = json.loads(run("link-feed", str(feed), "--json").stdout)
    assert doc["linked"] == [] and doc["already_linked"] == 4
    assert chain_lengths(station, ids) == before
    assert len(stale.items(incident="KNT-2026-000002")) == 2  # and the catalog caught up


def test_feed_linking_needs_the_link_role_and_a_readable_feed(
    station: Station, fed: tuple[Path, list[str]], tmp_path: Path
) -> None:
    feed, ids = fed
    for user in ("admin", "stranger", None):
        result = run("link-feed", str(feed), user=user)
        assert isinstance(result.exception, AccessDenied)
    missing = run("link-feed", str(tmp_path / "nope.csv"))
    assert isinstance(missing.exception, InvalidInput) and "does not exist" in str(missing.exception)
    assert chain_lengths(station, ids) == [1] * 8


def test_link_feed_flow_runs_under_prefect(
    station: Station, fed: tuple[Path, list[str]], prefect_harness: None
) -> None:
    from flows.linking_flow import link_feed_flow

    feed, ids = fed
    report = link_feed_flow(str(feed), linked_by="records-feed")
    assert {(x.evidence_id, x.incident) for x in report.linked} == {
        (ids[0], "KNT-2026-000001"),
        (ids[2], "KNT-2026-000002"),
        (ids[3], "KNT-2026-000002"),
        (ids[4], "KNT-2026-000003"),
    }
    assert [a.evidence_id for a in report.ambiguous] == [ids[1]]
    assert station.vault.custody.events(ids[0])[-1].actor == "records-feed"
    lengths = chain_lengths(station, ids)
    again = link_feed_flow(str(feed), linked_by="records-feed")
    assert again.linked == () and again.already_linked == 4
    assert chain_lengths(station, ids) == lengths
    with pytest.raises(AccessDenied):
        link_feed_flow(str(feed), linked_by="admin")
