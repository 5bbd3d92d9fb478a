"""Fixity: a storage admin re-reads stored objects and proves they are still the bytes written at ingest
(and, where the key is at hand, that they still decrypt to the original); every result is a custody
event, every failure is named and makes the command exit 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.commands import app
from evidence import layout
from evidence.errors import AccessDenied, IntegrityError, InvalidInput
from evidence.manifest import StoredObject
from flows.fixity import check_item, choose_items, run_fixity
from storage.vault import IDENTITY_FILE, Vault
from tests.factories import make_device
from tests.station import Station
from tests.test_retention_flow import ADMIN, INVESTIGATOR, retention_station

runner = CliRunner()


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Station:
    station = retention_station(tmp_path / "station")
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    return station


@pytest.fixture
def items(station: Station, tmp_path: Path) -> list[str]:
    report = station.ingest(make_device(tmp_path / "BWC-FIX01", photos=2, videos=1, seed=31))
    return sorted(str(o.evidence_id) for o in report.by_status("ingested"))


def stored_file(station: Station, ref: StoredObject | str) -> Path:
    key, version = (
        (ref, station.vault.store.head(ref).version_id) if isinstance(ref, str) else (ref.key, ref.version_id)
    )
    return station.settings.data_dir / "vault" / "objects" / key / "@v" / f"{version}.data"


def flip_byte(path: Path, position: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if position is None else position] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def fixity_events(station: Station, evidence_id: str) -> list[dict[str, object]]:
    return [dict(e.details) for e in station.vault.custody.events(evidence_id) if e.type == "fixity"]


def checksum_only_vault(station: Station) -> Vault:
    """The vault as a storage admin's machine opens it: no identity key, so nothing decrypts."""
    identity = station.settings.keys_path / IDENTITY_FILE
    hidden = identity.with_name("hidden.key")
    identity.rename(hidden)
    try:
        return Vault.open(station.settings)
    finally:
        hidden.rename(identity)


def test_a_sample_verifies_at_plaintext_level_and_is_recorded(station: Station, items: list[str]) -> None:
    report = run_fixity(station.vault, station.catalog, ADMIN, sample=2, seed=7)
    assert report.seed == 7 and report.chosen == 2 and report.counts == {"ok (plaintext)": 2}
    assert all(r.bytes_read > 0 for r in report.results)
    for result in report.results:
        event = station.vault.custody.events(result.evidence_id)[-1]
        assert (event.type, event.actor, event.role) == ("fixity", "sam", "storage-admin")
        assert dict(event.details) == {"result": "ok", "level": "plaintext", "problem": None}
        catalogued = station.catalog.item(result.evidence_id)
        assert catalogued is not None and catalogued.custody_length == 2
    unchecked = set(items) - {r.evidence_id for r in report.results}
    assert all(fixity_events(station, i) == [] for i in unchecked)


def test_the_same_seed_draws_the_same_sample(station: Station, items: list[str]) -> None:
    first = choose_items(station.catalog, sample=2, all_items=False, seed=123)
    assert first == choose_items(station.catalog, sample=2, all_items=False, seed=123)
    assert first[1] == 123 and len(first[0]) == 2 and set(first[0]) <= set(items)
    assert choose_items(station.catalog, sample=10, all_items=False, seed=1)[0] == items
    assert choose_items(station.catalog, sample=None, all_items=True, seed=None) == (items, None)
    with pytest.raises(InvalidInput):
        choose_items(station.catalog, sample=0, all_items=False, seed=None)
    with pytest.raises(InvalidInput):
        choose_items(station.catalog, sample=3, all_items=True, seed=None)


def test_without_the_key_the_checksum_level_still_proves_the_stored_bytes(
    station: Station, items: list[str]
) -> None:
    vault = checksum_only_vault(station)
    assert {check_item(vault, i).result for i in items} == {"ok"}
    assert {check_item(vault, i).level for i in items} == {"checksum"}
    flip_byte(stored_file(station, station.vault.manifest(items[0]).content))
    damaged = check_item(vault, items[0])
    assert (damaged.result, damaged.level) == ("failed", "checksum")
    assert damaged.problem is not None and "content object: stored bytes do not match" in damaged.problem


def test_altered_content_fails_at_both_levels_and_is_recorded(station: Station, items: list[str]) -> None:
    target = items[1]
    flip_byte(stored_file(station, station.vault.manifest(target).content))
    report = run_fixity(station.vault, station.catalog, ADMIN, all_items=True)
    failed = {r.evidence_id: r for r in report.failed}
    assert list(failed) == [target] and report.counts == {"failed (plaintext)": 1, "ok (plaintext)": 2}
    problem = failed[target].problem or ""
    assert "content does not decrypt" in problem and "stored bytes do not match" in problem
    (event,) = fixity_events(station, target)
    assert event["result"] == "failed" and event["level"] == "plaintext" and event["problem"] == problem
    sealed_hash = station.vault.details(station.vault.manifest(items[0])).sha256
    for evidence_id in items:  # nothing sealed ever goes into an event
        assert all(sealed_hash not in json.dumps(e) for e in fixity_events(station, evidence_id))


def test_a_damaged_thumbnail_or_manifest_or_missing_object_is_named(
    station: Station, items: list[str]
) -> None:
    thumb_item, manifest_item, missing_item = items
    thumbnail = station.vault.manifest(thumb_item).thumbnail
    assert thumbnail is not None
    flip_byte(stored_file(station, thumbnail))

    manifest_file = stored_file(station, layout.manifest_key(manifest_item))
    manifest_file.chmod(0o644)
    manifest_file.write_bytes(
        manifest_file.read_bytes().replace(b'"officer_id":"PC-1"', b'"officer_id":"PC-7"')
    )

    content = station.vault.manifest(missing_item).content
    record_dir = station.settings.data_dir / "vault" / "objects" / content.key
    for path in sorted(record_dir.rglob("*"), reverse=True):
        path.chmod(0o755) if path.is_dir() else path.unlink()

    problems = {
        r.evidence_id: r.problem or ""
        for r in run_fixity(station.vault, station.catalog, ADMIN, all_items=True).failed
    }
    assert "thumbnail object: stored bytes do not match" in problems[thumb_item]
    assert "manifest differs from the one the ingest event recorded" in problems[manifest_item]
    assert problems[missing_item].startswith("missing")


def test_a_tampered_chain_is_a_fixity_failure(station: Station, items: list[str]) -> None:
    record = stored_file(station, layout.custody_key(items[0], 0))
    flip_byte(record, position=40)
    result = check_item(station.vault, items[0])
    assert result.result == "failed" and "custody chain broken at event 0" in (result.problem or "")


def test_only_storage_admins_run_fixity(station: Station, items: list[str]) -> None:
    with pytest.raises(AccessDenied, match="may not fixity"):
        run_fixity(station.vault, station.catalog, INVESTIGATOR, sample=1)
    assert all(fixity_events(station, i) == [] for i in items)


def test_cli_runs_the_fixity_flow(prefect_harness: None, station: Station, items: list[str]) -> None:
    ok = runner.invoke(app, ["--user", "sam", "fixity", "--sample", "2", "--seed", "5", "--json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["seed"] == 5 and doc["counts"] == {"ok (plaintext)": 2}

    flip_byte(stored_file(station, station.vault.manifest(items[0]).content))
    failed = runner.invoke(app, ["--user", "sam", "fixity", "--all"])
    assert failed.exit_code == IntegrityError.exit_code, failed.output
    assert "failed" in failed.stdout and items[0] in failed.stdout
    assert fixity_events(station, items[0])[-1]["result"] == "failed"

    import asyncio

    from prefect.client.orchestration import get_client

    async def artifact_keys() -> list[object]:
        async with get_client() as client:
            return [a.key for a in await client.read_artifacts()]

    assert "fixity-report" in asyncio.run(artifact_keys())
    assert isinstance(runner.invoke(app, ["--user", "ivy", "fixity", "--all"]).exception, AccessDenied)
    both = runner.invoke(app, ["--user", "sam", "fixity", "--all", "--sample", "3"])
    assert isinstance(both.exception, InvalidInput)
