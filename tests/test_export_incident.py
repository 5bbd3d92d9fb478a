"""An investigator exports an incident: a BagIt bag a standard validator accepts, every original byte for
byte with its chain-of-custody report, or nothing at all."""

from __future__ import annotations

import base64
import csv
import json
import os
from pathlib import Path

import bagit
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.commands import app
from evidence.access import Actor
from evidence.errors import IntegrityError, InvalidInput, NotFound
from evidence.incident import IncidentRef, parse_incident_ref
from flows.export import MAX_NAME_BYTES, export_incident, export_items, safe_file_name
from tests.factories import make_device, make_jpeg
from tests.station import Station, make_station

INCIDENT = parse_incident_ref("KNT-2026-000123")
INVESTIGATOR = Actor("ivy", frozenset({"investigator"}))
OFFICER = Actor("oscar", frozenset({"officer"}))
runner = CliRunner()
USERS_TOML = """
[users.ivy]
role = "investigator"

[users.oscar]
role = "officer"

[users.sam]
role = "storage-admin"
"""


def write_users(station: Station) -> None:
    assert station.settings.users_file is not None
    station.settings.users_file.write_text(USERS_TOML, encoding="utf-8")


def link(station: Station, evidence_ids: list[str], incident: IncidentRef = INCIDENT) -> None:
    """Link as an officer would: a custody event through the records helper (catalog kept in step)."""
    from flows.records import record

    for evidence_id in evidence_ids:
        record(
            station.vault,
            station.catalog,
            evidence_id,
            "link",
            actor=OFFICER.user_id,
            role=OFFICER.role,
            details={"incident": incident.value, "reason": "attended the scene", "source": "manual"},
        )


def ingested_ids(station: Station, device: Path) -> list[str]:
    report = station.ingest(device)
    return [str(o.evidence_id) for o in report.by_status("ingested", "duplicate")]


def flip_stored_byte(station: Station, evidence_id: str) -> None:
    """Alter one byte of an item's stored content the way an attacker with disk access would."""
    content = station.vault.manifest(evidence_id).content
    data_file = (
        station.settings.data_dir / "vault" / "objects" / content.key / "@v" / f"{content.version_id}.data"
    )
    data = bytearray(data_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    data_file.chmod(0o644)
    data_file.write_bytes(bytes(data))


def bag_payload(bag: Path) -> dict[str, bytes]:
    return {str(p.relative_to(bag)): p.read_bytes() for p in (bag / "data").rglob("*") if p.is_file()}


@pytest.fixture
def station(tmp_path: Path) -> Station:
    station = make_station(tmp_path / "station")
    write_users(station)
    return station


# -- the corpus, end to end -----------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.slow
def test_whole_corpus_exports_as_a_valid_bag_byte_for_byte(
    corpus: Path, station: Station, tmp_path: Path
) -> None:
    with (corpus / "MANIFEST.tsv").open(newline="") as handle:
        expected = {row["path"]: row["sha256"] for row in csv.DictReader(handle, delimiter="\t")}
    ids = ingested_ids(station, corpus)
    link(station, ids)

    bag_dir = tmp_path / "exports" / "KNT-2026-000123"
    # the way `evidence export --incident` does it: items from the catalog, each checked against the vault
    report = export_incident(station.settings, INCIDENT, INVESTIGATOR, "CPS file, first disclosure", bag_dir)

    bag = bagit.Bag(str(bag_dir))
    bag.validate()  # a standard validator: structure, Payload-Oxum, every file re-hashed
    assert bag.version_info == (1, 0)
    assert bag.info["External-Identifier"] == "KNT-2026-000123"
    assert bag.info["Contact-Name"] == "ivy"
    assert bag.info["Internal-Sender-Description"] == "CPS file, first disclosure"
    assert bag.info["Evidence-Item-Count"] == str(len(ids))
    assert bag.info["Bagging-Time"].startswith(bag.info["Bagging-Date"])

    payload = bag_payload(bag_dir)
    by_path = {item.path: item for item in report.items}
    assert len(by_path) == len(ids)
    for source, sha256 in expected.items():
        [in_bag] = [p for p, item in by_path.items() if item.sha256 == sha256]
        assert payload[in_bag] == (corpus / source).read_bytes(), source
        assert bag.entries[in_bag]["sha256"] == sha256  # the manifest is the hash taken at ingest
        evidence_id = by_path[in_bag].evidence_id
        custody = json.loads(payload[f"data/reports/{evidence_id}.json"])
        assert base64.b64decode(custody["original"]["name_b64"]) == os.fsencode(Path(source).name)
        assert custody["custody"]["intact"] is True
    assert not list(bag_dir.parent.glob("*.partial-*"))


# -- one small incident ---------------------------------------------------------------------------


@pytest.fixture
def linked(station: Station, tmp_path: Path) -> list[str]:
    ids = ingested_ids(station, make_device(tmp_path / "BWC-EXP01", photos=2, videos=1))
    link(station, ids)
    return ids


def test_custody_report_tells_the_whole_story(station: Station, linked: list[str], tmp_path: Path) -> None:
    bag_dir = tmp_path / "bag"
    export_items(station.vault, linked, INCIDENT, INVESTIGATOR, "defence disclosure", bag_dir)

    for evidence_id in linked:
        report = json.loads((bag_dir / "data" / "reports" / f"{evidence_id}.json").read_text())
        manifest = station.vault.manifest(evidence_id)
        details = station.vault.details(manifest)
        assert report["evidence_id"] == evidence_id
        assert report["original"]["sha256"] == details.sha256
        assert report["ingest"]["station"] == station.settings.station_id
        assert report["ingest"]["device"] == "BWC-TEST01" and report["ingest"]["officer"] == "PC-1"
        assert report["stored_objects"]["content"]["sha256"] == manifest.content.sha256
        assert report["capture_metadata"] == json.loads(json.dumps(dict(details.media)))
        assert [e["type"] for e in report["events"]] == ["ingest", "link", "export"]
        assert report["links"]["current"] == ["KNT-2026-000123"]
        # the export that produced this bag is in the report the court reads
        [export] = report["accesses"]
        assert export["actor"] == "ivy" and export["role"] == "investigator"
        assert export["details"] == {
            "incident": "KNT-2026-000123",
            "purpose": "defence disclosure",
            "bag": "bag",
        }
        assert report["custody"]["intact"] and report["custody"]["signers"]
        assert set(report["custody"]["signer_public_keys"]) == set(report["custody"]["signers"])
        page = (bag_dir / "data" / "reports" / f"{evidence_id}.html").read_text()
        assert "defence disclosure" in page and details.sha256 in page and "Intact" in page
    # the chains in the vault say the same
    assert station.vault.custody.events(linked[0])[-1].type == "export"


def test_flipped_byte_stops_export_naming_the_item_and_leaves_nothing(
    station: Station, linked: list[str], tmp_path: Path
) -> None:
    damaged = linked[1]
    flip_stored_byte(station, damaged)
    bag_dir = tmp_path / "exports" / "bag"

    with pytest.raises(IntegrityError, match=damaged) as raised:
        export_items(station.vault, linked, INCIDENT, INVESTIGATOR, "review", bag_dir)

    assert "nothing was written" in str(raised.value)
    assert not bag_dir.exists()
    assert list((tmp_path / "exports").iterdir()) == [], "no partial bag left behind"
    for evidence_id in linked:  # nothing was exported, so no export was recorded
        assert [e.type for e in station.vault.custody.events(evidence_id)] == ["ingest", "link"]


def test_a_bag_failing_after_the_export_was_recorded_says_so(
    station: Station, linked: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export events are written once every item verified, before the bag is sealed: if sealing
    then fails, the error must not claim that nothing happened."""
    import flows.export

    def refuse(bag: Path) -> None:
        raise IntegrityError(f"bag at {bag} does not validate")

    monkeypatch.setattr(flows.export, "validate_bag", refuse)
    bag_dir = tmp_path / "exports" / "bag"
    with pytest.raises(IntegrityError) as raised:
        export_items(station.vault, linked, INCIDENT, INVESTIGATOR, "review", bag_dir)
    assert f"export events of {len(linked)} item(s) stay in their chains" in str(raised.value)
    assert list((tmp_path / "exports").iterdir()) == []
    for evidence_id in linked:
        assert [e.type for e in station.vault.custody.events(evidence_id)] == ["ingest", "link", "export"]


def test_item_not_linked_by_its_own_chain_is_refused(
    station: Station, linked: list[str], tmp_path: Path
) -> None:
    from flows.records import record

    record(
        station.vault,
        station.catalog,
        linked[2],
        "unlink",
        actor="oscar",
        role="officer",
        details={"incident": INCIDENT.value, "reason": "wrong incident"},
    )
    other = ingested_ids(station, make_device(tmp_path / "BWC-EXP02", photos=1, videos=0, seed=7))

    for ids, culprit in ((linked, linked[2]), (linked[:2] + other, other[0])):
        with pytest.raises(IntegrityError, match=f"{culprit} is not linked to incident KNT-2026-000123"):
            export_items(station.vault, ids, INCIDENT, INVESTIGATOR, "review", tmp_path / "bag")
        assert not (tmp_path / "bag").exists()


def test_chain_shorter_than_the_catalog_saw_is_refused(
    station: Station, linked: list[str], tmp_path: Path
) -> None:
    with pytest.raises(IntegrityError, match=f"custody chain of {linked[0]} is broken"):
        export_items(
            station.vault,
            linked,
            INCIDENT,
            INVESTIGATOR,
            "review",
            tmp_path / "bag",
            expected_lengths={linked[0]: 5},
        )


def test_export_from_an_s3_vault(moto_aws: None, tmp_path: Path) -> None:
    station = make_station(tmp_path / "station", vault_url="s3://evidence-export/vault")
    write_users(station)
    device = make_device(tmp_path / "BWC-S3", photos=1, videos=1)
    ids = ingested_ids(station, device)
    link(station, ids)

    report = export_incident(station.settings, INCIDENT, INVESTIGATOR, "review", tmp_path / "bag")
    bagit.Bag(str(tmp_path / "bag")).validate()
    for item in report.items:
        details = station.vault.details(station.vault.manifest(item.evidence_id))
        assert (tmp_path / "bag" / item.path).read_bytes() == (device / details.source_path).read_bytes()


def test_non_empty_destination_is_refused(station: Station, linked: list[str], tmp_path: Path) -> None:
    bag_dir = tmp_path / "bag"
    bag_dir.mkdir()
    (bag_dir / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not empty"):  # the person's to fix: exit 2
        export_items(station.vault, linked, INCIDENT, INVESTIGATOR, "review", bag_dir)
    assert [p.name for p in bag_dir.iterdir()] == ["notes.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    export_items(station.vault, linked, INCIDENT, INVESTIGATOR, "review", empty)
    bagit.Bag(str(empty)).validate()


def test_export_needs_a_purpose(station: Station, linked: list[str], tmp_path: Path) -> None:
    for purpose in (None, "  ", "two\nlines"):
        with pytest.raises(InvalidInput, match="purpose"):
            export_items(station.vault, linked, INCIDENT, INVESTIGATOR, purpose, tmp_path / "bag")
    assert not (tmp_path / "bag").exists()


# -- through the command line and the catalog ------------------------------------------------------


def export_command(incident: str, bag_dir: Path, *extra: str) -> list[str]:
    return ["--user", "ivy", "export", "--incident", incident, "--out", str(bag_dir), *extra]


def test_cli_exports_what_the_catalog_links_to_the_incident(
    station: Station, linked: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    bag_dir = tmp_path / "bag"
    result = runner.invoke(
        app, export_command(" knt-2026-000123 ", bag_dir, "--purpose", "CPS file", "--json")
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["incident"] == "KNT-2026-000123" and doc["bag"] == str(bag_dir.absolute())
    assert {item["evidence_id"] for item in doc["items"]} == set(linked)
    bagit.Bag(str(bag_dir)).validate()
    for evidence_id in linked:  # the catalog saw the export too
        item = station.catalog.item(evidence_id)
        assert item is not None and item.custody_length == 3

    thumbs = tmp_path / "thumbs"
    result = runner.invoke(
        app, ["--user", "ivy", "thumbs", "--incident", "KNT-2026-000123", "--out", str(thumbs)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in thumbs.iterdir()) == sorted(f"{i}.jpg" for i in linked)


def test_stale_catalog_does_not_decide_what_is_exported(
    station: Station, linked: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.records import record

    # unlinked in the vault while the catalog was not told: the catalog still lists the item
    record(
        station.vault,
        None,
        linked[0],
        "unlink",
        actor="oscar",
        role="officer",
        details={"incident": INCIDENT.value, "reason": "belongs to another incident"},
    )
    item = station.catalog.item(linked[0])
    assert item is not None and INCIDENT.value in item.incidents
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    result = runner.invoke(app, export_command(INCIDENT.value, tmp_path / "bag", "--purpose", "CPS file"))
    assert isinstance(result.exception, IntegrityError)
    assert f"{linked[0]} is not linked to incident KNT-2026-000123" in str(result.exception)
    assert not (tmp_path / "bag").exists()

    station.catalog.rebuild(station.vault)  # back in step: the export goes ahead without it
    result = runner.invoke(
        app, export_command(INCIDENT.value, tmp_path / "bag", "--purpose", "CPS file", "--json")
    )
    assert result.exit_code == 0, result.output
    assert {i["evidence_id"] for i in json.loads(result.stdout)["items"]} == set(linked[1:])


def test_incident_with_nothing_linked_is_reported(
    station: Station, linked: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    result = runner.invoke(app, export_command("KNT-2026-999999", tmp_path / "bag", "--purpose", "CPS file"))
    assert isinstance(result.exception, NotFound) and "KNT-2026-999999" in str(result.exception)
    assert not (tmp_path / "bag").exists()


# -- hostile names --------------------------------------------------------------------------------


HOSTILE_PATHS = [
    b"<script>alert(1)</script>.jpg",  # on a device: folder '<script>alert(1)<', file 'script>.jpg'
    b"<img src=x onerror=alert(1)>.jpg",
    b"-rf .jpg",
    b".bashrc",
    b"CON.jpg",
    b"invoice\xe2\x80\xaegpj.exe",  # right-to-left override: reads as invoiceexe.jpg
    b"\xff\xfe not utf-8\r\n.jpg",
    b"100%.jpg",
]


def test_hostile_names_land_safely_and_are_escaped_in_reports(station: Station, tmp_path: Path) -> None:
    device = tmp_path / "BWC-HOSTILE"
    for seed, relative in enumerate(HOSTILE_PATHS):
        path = Path(os.fsdecode(os.fsencode(device) + b"/" + relative))
        path.parent.mkdir(parents=True, exist_ok=True)
        make_jpeg(path, seed=100 + seed)
    ids = ingested_ids(station, device)
    assert len(ids) == len(HOSTILE_PATHS)
    link(station, ids)

    bag_dir = tmp_path / "bag"
    report = export_items(station.vault, ids, INCIDENT, INVESTIGATOR, "review <b>bold</b>", bag_dir)
    bagit.Bag(str(bag_dir)).validate()

    landed = {Path(item.path).name for item in report.items}
    assert {"script_.jpg", "_img src=x onerror=alert(1)_.jpg", "_-rf .jpg", "_.bashrc", "_CON.jpg"} <= landed
    assert {"invoice_gpj.exe", "\ufffd\ufffd not utf-8__.jpg", "100_.jpg"} <= landed
    for item in report.items:
        assert (bag_dir / item.path).resolve().parent == (bag_dir / "data" / item.evidence_id).resolve()
        custody = json.loads((bag_dir / "data" / "reports" / f"{item.evidence_id}.json").read_text())
        original = base64.b64decode(custody["original"]["name_b64"])
        assert any(p.endswith(original) for p in HOSTILE_PATHS)  # the exact name, kept for the record
        page = (bag_dir / "data" / "reports" / f"{item.evidence_id}.html").read_text()
        assert "<script>" not in page and "<img" not in page and "<b>bold</b>" not in page
        assert "review &lt;b&gt;bold&lt;/b&gt;" in page
        if original == b"script>.jpg":
            assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in page  # the path on the device
        if original.startswith(b"<img"):
            assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_safe_file_name_is_always_a_plain_creatable_name(raw: bytes) -> None:
    name = safe_file_name(raw)
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name and "%" not in name
    assert not name.startswith((".", "-")) and name == name.strip()
    assert name.isprintable()
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert safe_file_name(name.encode("utf-8")) == name  # already safe names are kept as they are


def test_safe_file_name_keeps_ordinary_names_and_extensions() -> None:
    assert safe_file_name(b"IMG_0001.JPG") == "IMG_0001.JPG"
    assert safe_file_name("Bürgersteig café.jpg".encode()) == "Bürgersteig café.jpg"
    long = safe_file_name(b"x" * 400 + b".mp4")
    assert long.endswith(".mp4") and len(long.encode()) == MAX_NAME_BYTES
