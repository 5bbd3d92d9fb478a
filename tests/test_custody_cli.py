"""`evidence custody ID` prints an item's chain and verifies it: an edited, removed or reordered record
is named with its position and the command exits 3; `--trust` verifies against the force's published
keys alone; a disposed item's chain still prints and verifies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.commands import app
from evidence import layout
from evidence.errors import AccessDenied, IntegrityError, InvalidInput, NotFound
from evidence.signing import VerifyingKey, generate_signing_key
from flows.records import record
from tests.station import Station
from tests.test_retention_flow import (
    ingest_aged,
    ingest_recent,
    let_locks_lapse,
    recorded,
    retention_station,
    run_at,
)

runner = CliRunner()


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Station:
    station = retention_station(tmp_path / "station")
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    return station


@pytest.fixture
def item(station: Station, tmp_path: Path) -> str:
    """An item with a chain of five events: ingest and four recorded accesses of equal size."""
    (evidence_id,) = ingest_recent(station, tmp_path / "BWC-CUS01", 1, seed=9000)
    for n in range(4):
        record(
            station.vault,
            station.catalog,
            evidence_id,
            "access",
            actor="ivy",
            role="investigator",
            details={"action": "get", "purpose": f"review {n}"},
        )
    return evidence_id


def custody(*args: str, user: str = "ivy") -> Result:
    return runner.invoke(app, ["--user", user, "custody", *args])


def custody_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = custody(*args, "--json")
    return result.exit_code, json.loads(result.stdout)


def record_file(station: Station, evidence_id: str, position: int) -> Path:
    key = layout.custody_key(evidence_id, position)
    info = station.vault.store.head(key)
    return station.settings.data_dir / "vault" / "objects" / key / "@v" / f"{info.version_id}.data"


def overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)


def remove_record(station: Station, evidence_id: str, position: int) -> None:
    record_dir = station.settings.data_dir / "vault" / "objects" / layout.custody_key(evidence_id, position)
    for path in sorted(record_dir.rglob("*"), reverse=True):
        path.chmod(0o755) if path.is_dir() else path.unlink()


def problems(doc: dict[str, Any]) -> dict[int, str]:
    found: dict[int, str] = {}
    for problem in doc["problems"]:
        found[problem["position"]] = found.get(problem["position"], "") + problem["message"] + "; "
    return found


def test_an_intact_chain_prints_and_verifies(station: Station, item: str) -> None:
    table = custody(item)
    assert table.exit_code == 0, table.output
    assert "intact: 5 event(s)" in table.stdout and "review 3" in table.stdout

    code, doc = custody_json(item)
    assert code == 0 and doc["intact"] is True and doc["problems"] == []
    assert [e["type"] for e in doc["events"]] == ["ingest", "access", "access", "access", "access"]
    assert [e["seq"] for e in doc["events"]] == [0, 1, 2, 3, 4]
    assert doc["expected_length"] == 5 and doc["trusted_only"] is False
    own_key = VerifyingKey.from_file(station.settings.keys_path / "signing.pub")
    assert doc["signers"] == [own_key.key_id]


def test_a_lost_race_is_shown_and_the_chain_still_verifies(
    station: Station, item: str, tmp_path: Path
) -> None:
    """What two investigators appending at once leave on a server that ignores If-None-Match: the
    loser's version after the record at position 4, and its event again at 5 (docs/custody.md §5)."""
    from datetime import UTC, datetime

    from evidence.custody import encode_event, new_event
    from evidence.signing import SigningKey
    from storage.custody import CustodyLog

    ben = CustodyLog(
        station.vault.store,
        station_id="ws-ben",
        signer=SigningKey.from_file(generate_signing_key(tmp_path / "ben")[0]),
        retention=lambda: None,
    )
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    what = {"action": "get", "purpose": "review"}
    before_four = station.vault.custody.stored(item)[3][1]

    def bens_access_at_four(previous: bytes, details: dict[str, str]) -> bytes:
        """Ben's access event, signed, as a record at position 4 following ``previous``."""
        return encode_event(
            new_event(
                previous,
                evidence_id=item,
                seq=4,
                type="access",
                at=at,
                actor="ben",
                role="investigator",
                station="ws-ben",
                details=details,
                signer=ben.signer,
            )
        )

    lost = bens_access_at_four(before_four, what)
    ben.publish_signer()
    station.vault.store.put_bytes(layout.custody_key(item, 4), lost, retention=None)
    again = ben.append(item, "access", actor="ben", role="investigator", details=what, at=at)
    assert again.seq == 5

    code, doc = custody_json(item)
    assert code == 0 and doc["intact"] is True and doc["problems"] == [], doc
    [race] = doc["lost_races"]
    assert (race["position"], race["in_chain_at"], race["event"]["actor"]) == (4, 5, "ben")
    table = custody(item)
    assert table.exit_code == 0 and "lost the race for this position" in table.stdout

    # the same version with a changed purpose is no lost race: its event is nowhere else
    altered = bens_access_at_four(before_four, {"purpose": "other"})
    station.vault.store.put_bytes(layout.custody_key(item, 4), altered, retention=None)
    code, doc = custody_json(item)
    assert code == 0 and [r["in_chain_at"] for r in doc["lost_races"]] == [5, None]
    # but one that follows another event is an overwritten record
    forged = bens_access_at_four(before_four + b" ", what)
    station.vault.store.put_bytes(layout.custody_key(item, 4), forged, retention=None)
    code, doc = custody_json(item)
    assert code == IntegrityError.exit_code
    assert "4 versions: a record was overwritten" in problems(doc)[4]
    assert "follows another event" in problems(doc)[4]


def test_an_edited_record_is_named(station: Station, item: str) -> None:
    target = record_file(station, item, 2)
    overwrite(target, target.read_bytes().replace(b"review 1", b"review 7"))
    code, doc = custody_json(item)
    assert code == IntegrityError.exit_code and doc["intact"] is False
    found = problems(doc)
    assert "altered" in found[2] and "does not follow" in found[3]
    table = custody(item)
    assert table.exit_code == 3 and "event 2" in table.output and "BROKEN" in table.output


def test_a_removed_record_is_named(station: Station, item: str) -> None:
    remove_record(station, item, 1)
    code, doc = custody_json(item)
    assert code == 3 and "missing: the record was removed" in problems(doc)[1]


def test_reordered_records_are_named(station: Station, item: str) -> None:
    first, second = record_file(station, item, 1), record_file(station, item, 2)
    a, b = first.read_bytes(), second.read_bytes()
    overwrite(first, b)
    overwrite(second, a)
    code, doc = custody_json(item)
    found = problems(doc)
    assert code == 3 and "reordered" in found[1] and "reordered" in found[2]


def test_a_record_cut_off_the_end_is_named_from_the_catalog_length(station: Station, item: str) -> None:
    remove_record(station, item, 4)
    code, doc = custody_json(item)
    assert code == 3 and any("ends early: 5 events" in message for message in problems(doc).values())


def test_trust_verifies_with_the_published_keys_alone(station: Station, item: str, tmp_path: Path) -> None:
    published = tmp_path / "force-keys"
    published.mkdir()
    (published / "station-1.pub").write_bytes((station.settings.keys_path / "signing.pub").read_bytes())
    code, doc = custody_json(item, "--trust", str(published))
    assert code == 0 and doc["trusted_only"] is True and doc["intact"]

    stranger_dir = tmp_path / "stranger"
    generate_signing_key(stranger_dir)
    (stranger_dir / "signing.key").unlink()
    code, doc = custody_json(item, "--trust", str(stranger_dir))
    assert code == 3 and all("unknown key" in message for message in problems(doc).values())

    empty = tmp_path / "empty"
    empty.mkdir()
    assert isinstance(custody(item, "--trust", str(empty)).exception, InvalidInput)


def test_a_third_party_verifies_with_public_keys_alone(station: Station, item: str, tmp_path: Path) -> None:
    """The defence's expert gets read access to the vault and the force's published signing keys, and
    nothing secret: no id key, no decryption key, no signing key (no keys folder at all). Run as a
    process of its own, so nothing the station's keys left in this one can help."""
    verifier = tmp_path / "defence-expert"
    verifier.mkdir()
    assert station.settings.users_file is not None
    (verifier / "users.toml").write_bytes(station.settings.users_file.read_bytes())
    published = tmp_path / "force-published-keys"
    published.mkdir()
    (published / "station-1.pub").write_bytes((station.settings.keys_path / "signing.pub").read_bytes())
    env = os.environ | {"EVIDENCE_DATA_DIR": str(verifier), "EVIDENCE_VAULT_URL": station.settings.vault_url}
    keys_dir = verifier / "keys"  # where the verifier's settings look for key files

    def verify() -> tuple[int, dict[str, Any]]:
        argv = [sys.executable, "-m", "cli", "--user", "ivy", "custody", item, "--trust", str(published)]
        done = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode in (0, IntegrityError.exit_code), done.stderr
        return done.returncode, json.loads(done.stdout)

    code, doc = verify()
    assert not keys_dir.exists(), "no key file was needed, and none was made"
    assert code == 0 and doc["intact"] is True and doc["trusted_only"] is True
    assert [e["type"] for e in doc["events"]] == ["ingest", "access", "access", "access", "access"]

    target = record_file(station, item, 2)
    overwrite(target, target.read_bytes().replace(b"review 1", b"review 7"))
    code, doc = verify()
    assert code == IntegrityError.exit_code and doc["intact"] is False
    found = problems(doc)
    assert "altered" in found[2] and "does not follow" in found[3]
    assert not keys_dir.exists()


def test_a_disposed_items_chain_remains_and_verifies(station: Station, tmp_path: Path) -> None:
    (item,) = ingest_aged(station, tmp_path / "BWC-CUS02", 1, seed=9050)
    let_locks_lapse(station, item)
    run_at(station, recorded(station, item) + timedelta(days=32))
    assert not station.vault.has_item(item)
    code, doc = custody_json(item)
    assert code == 0 and doc["intact"]
    assert doc["events"][-1]["type"] == "disposal"
    assert doc["events"][-1]["details"]["rule"] == "non-evidential"


def test_custody_needs_a_known_user_and_a_real_item(station: Station, item: str) -> None:
    assert isinstance(custody(item, user="mallory").exception, AccessDenied)
    assert custody(item, user="oscar").exit_code == 0
    assert isinstance(custody("ev-" + "a" * 26).exception, NotFound)
    assert isinstance(custody("../etc/passwd").exception, InvalidInput)
