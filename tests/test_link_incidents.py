"""Linking evidence to incidents: references validated wherever they enter, links and unlinks as
signed custody events with who, when and why, at ingest and by hand; listings recorded as accesses."""

from __future__ import annotations

import hashlib
import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from cli.commands import app
from evidence.errors import (
    AccessDenied,
    ConfigError,
    InvalidInput,
    InvalidReference,
    NotFound,
    StorageUnavailable,
)
from evidence.incident import parse_incident_ref
from evidence.settings import DEFAULT_INCIDENT_REF_PATTERN
from flows.ingest import ingest_file, resolve_device
from flows.records import record
from tests.factories import make_device, make_jpeg
from tests.station import Station, make_station

INC = "KNT-2026-000123"
OTHER = "KNT-2026-000456"
USERS = """
[users.pc-1]
role = "officer"
[users.det-a]
role = "investigator"
[users.admin]
role = "storage-admin"
"""
MALFORMED = [
    "",
    "   ",
    "../x",
    "a/b",
    "KNT-2026-000123/../../etc",
    "K" * 10_000,
    "KNT-2026-000123'; DROP TABLE links; --",
    "KNT-2026-000123' OR '1'='1",
    "\u041aNT-2026-000123",  # Cyrillic capital KA
    "KNT-\uff12\uff10\uff12\uff16-000123",  # full-width digits
    "\u0131NT-2026-000123",  # dotless i: upper-cases to a plain 'I'
    "\u017fNT-2026-000123",  # long s: upper-cases to a plain 'S'
    "\ufb00-2026-000123",  # 'ff' ligature: upper-cases to 'FF'
    "KNT-2026-000123\x00",
    "KNT-2026-\n000123",
    "knt 2026 000123",
    "KNT-2026-[/x]",  # console markup: shown as typed, never read as a style (nor a crash)
    "[bold]KNT-2026-000123",
]


# -- the reference format -------------------------------------------------------------------------


def test_references_are_normalised() -> None:
    assert parse_incident_ref("  knt-2026-000123 ").value == INC
    assert parse_incident_ref("37/12345/26").value == "37/12345/26"


@pytest.mark.parametrize("raw", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_references_are_refused_with_one_clear_line(raw: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse_incident_ref(raw)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200
    assert "reference" in message


def test_a_force_sets_its_own_reference_format() -> None:
    pattern = r"MPS-[0-9]{6}"
    assert parse_incident_ref("mps-123456", pattern).value == "MPS-123456"
    with pytest.raises(InvalidReference):
        parse_incident_ref(INC, pattern)
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        parse_incident_ref(INC, "[unclosed")


@given(st.text(max_size=80))
def test_whatever_is_accepted_is_a_plain_ascii_reference_in_the_format(raw: str) -> None:
    try:
        ref = parse_incident_ref(raw)
    except InvalidReference:
        return
    assert raw.strip().isascii(), "only what was typed in plain ASCII is accepted, not what upper-cases to it"
    assert ref.value.isascii() and ref.value.isprintable() and ref.value == raw.strip().upper()
    assert ".." not in ref.value and "'" not in ref.value and not ref.value.startswith("/")
    import re

    assert re.fullmatch(DEFAULT_INCIDENT_REF_PATTERN, ref.value, re.ASCII)


# -- a station with items -------------------------------------------------------------------------


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Station:
    data_dir = tmp_path / "station"
    station = make_station(data_dir)
    (data_dir / "users.toml").write_text(USERS)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("EVIDENCE_SETTLE_SECONDS", "0")
    return station


@pytest.fixture
def items(station: Station, tmp_path: Path) -> list[str]:
    device = make_device(tmp_path / "BWC-LINK01", photos=3, videos=0, seed=7)
    stored = [str(o.evidence_id) for o in station.ingest(device).by_status("ingested")]
    return [item.evidence_id for item in station.catalog.items()] if len(stored) == 3 else []


def run(*args: str, user: str | None = "pc-1") -> Result:
    argv = (["--user", user] if user else []) + list(args)
    return CliRunner().invoke(app, argv)


def chain_types(station: Station, evidence_id: str) -> list[str]:
    return [e.type for e in station.vault.custody.events(evidence_id)]


def catalog_lengths(station: Station, evidence_ids: list[str]) -> list[int]:
    return [station.catalog.item(e).custody_length for e in evidence_ids]  # type: ignore[union-attr]


# -- link and unlink by hand ----------------------------------------------------------------------


def test_link_records_who_when_why_and_a_second_link_writes_nothing(
    station: Station, items: list[str]
) -> None:
    result = run("link", items[0], items[1], "--incident", " knt-2026-000123", "--reason", "seen on CAD log")
    assert result.exit_code == 0, result.output
    assert f"{items[0]} linked to {INC}" in result.output
    event = station.vault.custody.events(items[0])[-1]
    assert event.type == "link" and event.actor == "pc-1" and event.role == "officer"
    assert dict(event.details) == {
        "incident": INC,
        "category": None,
        "reason": "seen on CAD log",
        "source": "manual",
    }
    assert station.vault.custody.verify(items[0]).intact
    assert [i.evidence_id for i in station.catalog.items(incident=INC)] == items[:2]

    again = run("link", items[0], items[2], "--incident", INC, "--json", user="det-a")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == {"incident": INC, "changed": [items[2]], "unchanged": [items[0]]}
    assert chain_types(station, items[0]) == ["ingest", "link"]


def test_unlink_keeps_the_history_and_needs_a_reason(station: Station, items: list[str]) -> None:
    assert run("link", items[0], "--incident", INC).exit_code == 0
    missing_reason = run("unlink", items[0], "--incident", INC)
    assert missing_reason.exit_code == 2  # usage error: --reason is required
    blank = run("unlink", items[0], "--incident", INC, "--reason", "  ")
    assert isinstance(blank.exception, InvalidInput)
    result = run("unlink", items[0], "--incident", INC, "--reason", "wrong job", user="det-a")
    assert result.exit_code == 0, result.output
    assert chain_types(station, items[0]) == ["ingest", "link", "unlink"]
    unlink = station.vault.custody.events(items[0])[-1]
    assert dict(unlink.details) == {"incident": INC, "reason": "wrong job"} and unlink.actor == "det-a"
    assert station.catalog.items(incident=INC) == []


def test_unlinking_an_item_that_is_not_linked_is_refused_and_writes_nothing(
    station: Station, items: list[str]
) -> None:
    assert run("link", items[0], "--incident", INC).exit_code == 0
    result = run("unlink", items[0], items[1], "--incident", INC, "--reason", "tidy up")
    assert isinstance(result.exception, InvalidInput)
    assert f"{items[1]} is not linked to {INC}; nothing was unlinked" in str(result.exception)
    assert chain_types(station, items[0]) == ["ingest", "link"]
    assert chain_types(station, items[1]) == ["ingest"]


def front_door(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``evidence ARGV`` as a person does (``cli.main.main``): exit code, stdout, stderr."""
    from cli.main import main

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["evidence", *argv])
        with pytest.raises(SystemExit) as exited:
            main()
    written = capsys.readouterr()
    return int(exited.value.code or 0), written.out, written.err


def catalog_rows(station: Station) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every catalog table, in primary-key order."""
    import sqlalchemy as sa

    from storage.catalog import metadata

    engine = sa.create_engine(station.catalog.url)
    try:
        with engine.connect() as conn:
            return {
                table.name: [
                    tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))
                ]
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()


def vault_listing(station: Station) -> list[tuple[str, str, bool]]:
    store = station.vault.store
    return sorted((v.key, v.version_id, v.is_delete_marker) for v in store.list_versions("")) + [
        (u.key, u.upload_id, False) for u in store.list_incomplete_uploads("")
    ]


def device_state(device: Path) -> dict[str, tuple[str, int, int]]:
    return {
        str(path.relative_to(device)): (hashlib.sha256(path.read_bytes()).hexdigest(), *_stat(path))
        for path in sorted(device.rglob("*"))
        if path.is_file()
    }


def _stat(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_ino, status.st_mtime_ns


@pytest.mark.parametrize("raw", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_references_write_nothing_anywhere(
    station: Station, items: list[str], raw: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command that takes an incident reference refuses a malformed one with one line and exit 2
    before it writes anything: no custody event, no catalog row, no object, no bag or preview folder,
    and at ingest not a byte read into the vault nor a file wiped from the device. An empty or blank
    reference is refused by the same check ("incident reference is empty"); typer passes it through."""
    device = make_device(tmp_path / "BWC-LINK07", photos=2, videos=0, seed=19)
    bag, previews = tmp_path / "bag", tmp_path / "previews"
    before = [len(station.vault.custody.events(e)) for e in items]
    assert before == [1, 1, 1]
    rows, objects, on_device = catalog_rows(station), vault_listing(station), device_state(device)
    with pytest.raises(InvalidReference) as expected:
        parse_incident_ref(raw)
    for argv in (
        ["link", items[0], "--incident", raw, "--reason", "x"],
        ["unlink", items[0], "--incident", raw, "--reason", "x"],
        ["incident", "show", raw],
        ["incident", "close", raw, "--reason", "x"],
        ["incident", "reopen", raw, "--reason", "x"],
        ["export", "--incident", raw, "--out", str(bag), "--purpose", "x"],
        ["thumbs", "--incident", raw, "--out", str(previews)],
        ["hold", "set", "--incident", raw, "--reason", "x"],
        ["hold", "release", "--incident", raw, "--reason", "x"],
        ["ingest", str(device), "--incident", raw, "--wipe"],
    ):
        code, stdout, stderr = front_door(["--user", "det-a", *argv], capsys)  # may link, hold, export
        assert (code, stdout) == (InvalidReference.exit_code, ""), (argv, stdout, stderr)
        assert stderr == f"error: {expected.value}\n", (argv, stderr)  # one line, the reference's fault
    assert not bag.exists() and not previews.exists()
    assert device_state(device) == on_device  # nothing wiped, nothing touched
    assert [len(station.vault.custody.events(e)) for e in items] == before
    assert catalog_rows(station) == rows
    assert vault_listing(station) == objects


@pytest.mark.parametrize("raw", MALFORMED, ids=range(len(MALFORMED)))
def test_a_feed_row_with_a_malformed_reference_is_rejected_and_links_nothing(
    station: Station, items: list[str], raw: str, tmp_path: Path
) -> None:
    """A feed row is refused by row, not the whole feed: the row would fit all three items (same officer,
    window over their recording times), so only the reference check stands between it and three links.
    An empty reference is a missing column to the feed reader; a blank one is an empty reference."""
    feed = tmp_path / "incidents.json"
    row = {"incident_ref": raw, "officer_id": "PC-1", "start": "2026-03-14T19:30:00Z"}
    feed.write_text(json.dumps([row | {"end": "2026-03-14T21:00:00Z"}]))
    before = [len(station.vault.custody.events(e)) for e in items]
    rows, objects = catalog_rows(station), vault_listing(station)
    result = run("link-feed", str(feed), "--json", user="det-a")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    if raw == "":
        reason = "missing incident_ref"
    else:
        with pytest.raises(InvalidReference) as expected:
            parse_incident_ref(raw)
        reason = str(expected.value)
    assert doc["rejected_rows"] == [{"row": 1, "reason": reason}] and "\n" not in reason
    assert (doc["incidents"], doc["linked"], doc["ambiguous"]) == (0, [], [])
    assert [len(station.vault.custody.events(e)) for e in items] == before
    assert catalog_rows(station) == rows
    assert vault_listing(station) == objects


def test_who_may_link(station: Station, items: list[str]) -> None:
    for user, error in (
        ("admin", "may not link"),
        ("stranger", "not in the users file"),
        (None, "no user given"),
    ):
        result = run("link", items[0], "--incident", INC, user=user)
        assert isinstance(result.exception, AccessDenied), result.output
        assert error in str(result.exception)
    assert chain_types(station, items[0]) == ["ingest"]


def test_link_needs_every_item_to_exist_and_not_be_disposed(station: Station, items: list[str]) -> None:
    missing = "ev-" + "a" * 26
    result = run("link", items[0], missing, "--incident", INC)
    assert isinstance(result.exception, NotFound) and missing in str(result.exception)
    bad = run("link", items[0], "not-an-id", "--incident", INC)
    assert isinstance(bad.exception, InvalidInput)
    record(
        station.vault,
        station.catalog,
        items[1],
        "disposal",
        actor="retention",
        role="storage-admin",
        details={"rule": "r", "policy": "p", "reason": "expired", "objects_deleted": 0},
    )
    disposed = run("link", items[0], items[1], "--incident", INC)
    assert isinstance(disposed.exception, NotFound) and "disposed" in str(disposed.exception)
    assert chain_types(station, items[0]) == ["ingest"]  # nothing written for the good one either


def test_a_manual_link_carries_the_category_the_feed_gave_the_incident(
    station: Station, items: list[str]
) -> None:
    record(
        station.vault,
        station.catalog,
        items[0],
        "link",
        actor="feed",
        role="investigator",
        details={"incident": INC, "category": "domestic-abuse", "reason": "feed", "source": "feed"},
    )
    assert run("link", items[1], "--incident", INC).exit_code == 0
    assert station.vault.custody.events(items[1])[-1].details["category"] == "domestic-abuse"
    assert [i.evidence_id for i in station.catalog.items(category="domestic-abuse")] == items[:2]


# -- listings -------------------------------------------------------------------------------------


def test_incident_show_lists_operational_metadata_and_records_each_access(
    station: Station, items: list[str]
) -> None:
    assert run("link", items[0], items[2], "--incident", INC).exit_code == 0
    result = run("incident", "show", INC.lower(), "--json", "--purpose", "case review", user="admin")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["incident"] == INC
    assert [item["evidence_id"] for item in doc["items"]] == [items[0], items[2]]
    shown = doc["items"][0]
    assert (
        shown["officer_id"] == "PC-1" and shown["media_type"] == "image/jpeg" and shown["incidents"] == [INC]
    )
    text = result.output.lower()
    for sealed in ("img_0001", "dcim", "original_name", "gps", "51.501", "sn123", "source_path"):
        assert sealed not in text  # nothing sealed is in the catalog to show
    access = station.vault.custody.events(items[0])[-1]
    assert access.type == "access" and access.actor == "admin" and access.role == "storage-admin"
    assert dict(access.details) == {"action": "list", "purpose": "case review"}
    assert chain_types(station, items[1]) == ["ingest"]  # not listed, not recorded

    table = run("incident", "show", INC)
    assert table.exit_code == 0 and items[0] in table.output and "2 item(s)" in table.output
    assert station.vault.custody.events(items[2])[-1].details == {"action": "list", "purpose": "listing"}


def test_listings_show_catalog_values_with_hidden_characters_escaped_and_json_keeps_them_exact(
    station: Station, items: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The catalog is an index anyone with its database can edit (stations share one PostgreSQL
    catalog): what it holds is shown to people with escape sequences, bidi controls and newlines made
    visible, one row per item, and exactly in ``--json``."""
    import sqlalchemy as sa

    from storage.catalog import items_table

    assert run("link", items[0], "--incident", INC).exit_code == 0
    edited = {"media_type": "image/\x1b[2J", "device_serial": "BWC\u202e\nX"}  # short: never folded
    engine = sa.create_engine(station.catalog.url)
    try:
        with engine.begin() as conn:
            conn.execute(items_table.update().where(items_table.c.evidence_id == items[0]).values(**edited))
    finally:
        engine.dispose()

    for listing in (["incident", "show", INC], ["items", "list"]):
        code, shown, stderr = front_door(["--user", "det-a", *listing], capsys)
        assert code == 0, stderr
        assert not {c for c in shown if c != "\n" and unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}}
        [row] = [line for line in shown.splitlines() if items[0] in line]  # the newline forged no row
        assert "image/\\x1b[2J" in row and "BWC\\u202e\\nX" in row, shown

        code, printed, stderr = front_door(["--user", "det-a", *listing, "--json"], capsys)
        assert code == 0, stderr
        [doc] = [item for item in json.loads(printed)["items"] if item["evidence_id"] == items[0]]
        assert (doc["media_type"], doc["device_serial"]) == (edited["media_type"], edited["device_serial"])


def test_items_list_filters_by_officer_and_time_and_records_access(
    station: Station, items: list[str]
) -> None:
    everything = json.loads(run("items", "list", "--json").output)["items"]
    assert [i["evidence_id"] for i in everything] == items  # in recording order
    first_time = everything[0]["recorded_at"]
    later = run("items", "list", "--officer", "PC-1", "--since", everything[1]["recorded_at"], "--json")
    assert [i["evidence_id"] for i in json.loads(later.output)["items"]] == [
        i["evidence_id"] for i in everything[1:]
    ]
    none = run("items", "list", "--officer", "PC-2", "--json")
    assert json.loads(none.output) == {"items": []}
    until = run("items", "list", "--until", first_time, "--json")
    assert json.loads(until.output) == {"items": []}
    for item, listed in zip(everything, (1, 2, 2), strict=True):  # the first was not in the later listing
        events = station.vault.custody.events(item["evidence_id"])
        assert [e.details.get("action") for e in events if e.type == "access"] == ["list"] * listed
    bad = run("items", "list", "--since", "last tuesday")
    assert isinstance(bad.exception, InvalidInput)
    stranger = run("items", "list", user="stranger")
    assert isinstance(stranger.exception, AccessDenied)


def test_items_list_between_the_ends_of_the_calendar_lists_everything(
    station: Station, items: list[str]
) -> None:
    # past the calendar's ends in UTC (an hour before year 1 began): "from the beginning", "to the end"
    for since, until in (
        ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00"),
        ("0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59.999999+14:00"),
        ("0001-01-01", "9999-12-31T23:59:59"),
    ):
        listed = run("items", "list", "--since", since, "--until", until, "--json")
        assert listed.exit_code == 0, listed.output
        assert [i["evidence_id"] for i in json.loads(listed.output)["items"]] == items
    before_time = run("items", "list", "--until", "0001-01-01T00:00:00+01:00", "--json")
    assert before_time.exit_code == 0 and json.loads(before_time.output) == {"items": []}
    backwards = run("items", "list", "--since", "9999-12-31T23:59:59-14:00", "--until", "9999-12-31T23:59:59")
    assert isinstance(backwards.exception, InvalidInput) and "later than --since" in str(backwards.exception)


def test_catalog_rebuild_command_gives_the_same_answers(station: Station, items: list[str]) -> None:
    assert run("link", items[0], "--incident", INC).exit_code == 0
    before = json.loads(run("incident", "show", INC, "--json").output)
    (station.settings.data_dir / "catalog.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (station.settings.data_dir / f"catalog.sqlite{suffix}").unlink(missing_ok=True)
    result = run("catalog", "rebuild", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["items"] == 3
    after = json.loads(run("incident", "show", INC, "--json").output)
    assert after == before


# -- at ingest ------------------------------------------------------------------------------------


def test_ingest_links_new_and_duplicate_items(station: Station, tmp_path: Path) -> None:
    device = make_device(tmp_path / "BWC-LINK02", photos=2, videos=0, seed=9)
    report = station.ingest(device, incidents=(INC, INC.lower()), user="pc-1")
    stored = sorted(str(o.evidence_id) for o in report.by_status("ingested"))
    for evidence_id in stored:
        link = station.vault.custody.events(evidence_id)[-1]
        assert chain_types(station, evidence_id) == ["ingest", "link"]
        assert link.details["source"] == "ingest" and link.details["incident"] == INC and link.actor == "pc-1"
    again = station.ingest(device, incidents=(INC, OTHER), user="det-a")
    assert len(again.by_status("duplicate")) == 2
    for evidence_id in stored:
        assert chain_types(station, evidence_id) == ["ingest", "link", "link"]
        assert station.vault.custody.events(evidence_id)[-1].details["incident"] == OTHER
    assert [i.evidence_id for i in station.catalog.items(incident=OTHER)] == sorted(
        stored,
        key=lambda e: station.catalog.item(e).recorded_at,  # type: ignore[union-attr]
    )


def test_ingest_refuses_bad_references_and_users_before_reading_a_file(
    station: Station, tmp_path: Path
) -> None:
    device = make_device(tmp_path / "BWC-LINK03", photos=1, videos=0, seed=11)
    with pytest.raises(InvalidReference):
        station.ingest(device, incidents=("../x",), user="pc-1")
    with pytest.raises(AccessDenied):
        station.ingest(device, incidents=(INC,), user="admin")
    with pytest.raises(AccessDenied):
        station.ingest(device, incidents=(INC,), user=None)
    assert list(station.vault.list_items()) == []
    cli = run("ingest", str(device), "--incident", "a/b")
    assert isinstance(cli.exception, InvalidReference)
    assert list(station.vault.list_items()) == []


def test_a_failing_catalog_does_not_fail_the_ingest(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise StorageUnavailable("catalog unavailable")

    monkeypatch.setattr(station.catalog, "record_item", down)
    monkeypatch.setattr(station.catalog, "record_events", down)
    device = make_device(tmp_path / "BWC-LINK04", photos=2, videos=0, seed=13)
    report = station.ingest(device, incidents=(INC,), user="pc-1", wipe=True)
    assert [o.status for o in report.outcomes] == ["ingested", "ingested"]
    assert all(o.wiped for o in report.outcomes)
    monkeypatch.undo()
    assert station.catalog.count() == 0
    station.catalog.rebuild(station.vault)
    assert len(station.catalog.items(incident=INC)) == 2


def test_a_link_that_cannot_be_written_keeps_the_file_on_the_device_until_a_rerun(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evidence.device import scan_device

    device = tmp_path / "BWC-LINK05"
    photo = make_jpeg(device / "IMG_0001.JPG", seed=15)
    context = resolve_device(
        station.settings,
        device,
        serial="BWC-LINK05",
        officer="PC-1",
        wipe=True,
        incidents=[INC],
        linked_by="pc-1",
    )
    [item] = scan_device(device, settle_seconds=0).files

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise StorageUnavailable("throttled")

    monkeypatch.setattr("flows.ingest.link_at_ingest", refuse)
    with pytest.raises(StorageUnavailable):
        ingest_file(station.vault, item, context, station.catalog)
    assert photo.exists()  # not wiped: the link the person asked for is not recorded yet
    monkeypatch.undo()
    [item] = scan_device(device, settle_seconds=0).files
    outcome = ingest_file(station.vault, item, context, station.catalog)
    assert outcome.status == "duplicate" and outcome.wiped
    assert chain_types(station, str(outcome.evidence_id)) == ["ingest", "link"]


@pytest.mark.slow
def test_cli_ingest_with_incidents_links_through_the_flow(
    station: Station, tmp_path: Path, prefect_harness: None
) -> None:
    device = make_device(tmp_path / "BWC-LINK06", photos=2, videos=0, seed=17)
    result = run("ingest", str(device), "--incident", INC, "--incident", OTHER, "--json", user="det-a")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # Prefect logs to stderr
    stored = [entry["evidence_id"] for entry in doc["ingested"]]
    assert len(stored) == 2
    for evidence_id in stored:
        links = [e for e in station.vault.custody.events(evidence_id) if e.type == "link"]
        assert sorted(e.details["incident"] for e in links) == [INC, OTHER]
        assert {e.actor for e in links} == {"det-a"} and {e.details["source"] for e in links} == {"ingest"}
    assert sorted(i.evidence_id for i in station.catalog.items(incident=OTHER)) == sorted(stored)
