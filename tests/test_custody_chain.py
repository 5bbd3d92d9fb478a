"""Chain of custody: every event signed and chained; any removed, reordered or altered event is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence import layout
from evidence.custody import encode_event, new_event, verify_chain
from evidence.signing import SigningKey, VerifyingKey, generate_signing_key
from tests.factories import make_jpeg
from tests.station import Station, make_station


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return make_station(tmp_path / "station")


def ingest_one(station: Station, tmp_path: Path) -> str:
    device = tmp_path / "dev"
    make_jpeg(device / "scene.jpg", seed=41)
    return str(station.ingest(device).by_status("ingested")[0].evidence_id)


def with_events(station: Station, evidence_id: str, count: int) -> None:
    for n in range(count):
        station.vault.custody.append(
            evidence_id, "access", actor="det-smith", role="investigator", details={"purpose": f"review {n}"}
        )


def version_file(station: Station, key: str) -> Path:
    """The local store's file holding the current version of ``key`` (see docs/storage.md)."""
    info = station.vault.store.head(key)
    return station.settings.data_dir / "vault" / "objects" / key / "@v" / f"{info.version_id}.data"


def overwrite_file(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)


def test_ingest_opens_a_chain_that_verifies(station: Station, tmp_path: Path) -> None:
    evidence_id = ingest_one(station, tmp_path)
    result = station.vault.custody.verify(evidence_id)
    assert result.intact, result.problems
    assert [e.type for e in result.events] == ["ingest"]
    assert result.events[0].details["size"] == (tmp_path / "dev" / "scene.jpg").stat().st_size


def test_reingest_does_not_add_events(station: Station, tmp_path: Path) -> None:
    evidence_id = ingest_one(station, tmp_path)
    station.ingest(tmp_path / "dev")
    assert len(station.vault.custody.events(evidence_id)) == 1


def test_third_party_verifies_with_public_keys_alone(station: Station, tmp_path: Path) -> None:
    evidence_id = ingest_one(station, tmp_path)
    with_events(station, evidence_id, 3)
    published = VerifyingKey.from_file(station.settings.keys_path / "signing.pub")
    result = station.vault.custody.verify(
        evidence_id, trusted={published.key_id: published}, trusted_only=True
    )
    assert result.intact and result.signers == (published.key_id,)

    stranger = SigningKey.from_file(generate_signing_key(tmp_path / "stranger")[0])
    other = station.vault.custody.verify(
        evidence_id, trusted={stranger.key_id: stranger.verifying_key}, trusted_only=True
    )
    assert not other.intact and "unknown key" in other.problems[0].message


def test_altered_event_is_named(station: Station, tmp_path: Path) -> None:
    evidence_id = ingest_one(station, tmp_path)
    with_events(station, evidence_id, 3)
    target = version_file(station, layout.custody_key(evidence_id, 2))
    overwrite_file(target, target.read_bytes().replace(b"review 1", b"review 9"))

    result = station.vault.custody.verify(evidence_id)
    positions = {p.position: p.message for p in result.problems}
    assert "altered" in positions[2]
    assert "does not follow" in positions[3]


def test_deleted_event_is_named(station: Station, tmp_path: Path) -> None:
    evidence_id = ingest_one(station, tmp_path)
    with_events(station, evidence_id, 3)
    key = layout.custody_key(evidence_id, 1)
    record_dir = station.settings.data_dir / "vault" / "objects" / key
    for path in sorted(record_dir.rglob("*"), reverse=True):
        path.chmod(0o755) if path.is_dir() else path.unlink()
    result = station.vault.custody.verify(evidence_id)
    assert any(p.position == 1 and "missing" in p.message for p in result.problems), result.problems


def test_reordered_events_are_named(station: Station, tmp_path: Path) -> None:
    evidence_id = ingest_one(station, tmp_path)
    with_events(station, evidence_id, 3)
    first, second = (
        version_file(station, layout.custody_key(evidence_id, 1)),
        version_file(station, layout.custody_key(evidence_id, 2)),
    )
    a, b = first.read_bytes(), second.read_bytes()
    overwrite_file(first, b)
    overwrite_file(second, a)
    result = station.vault.custody.verify(evidence_id)
    messages = " ".join(p.message for p in result.problems)
    assert "reordered" in messages and {1, 2} <= {p.position for p in result.problems}


def test_record_overwritten_with_a_new_version_is_named(station: Station, tmp_path: Path) -> None:
    evidence_id = ingest_one(station, tmp_path)
    with_events(station, evidence_id, 1)
    key = layout.custody_key(evidence_id, 1)
    original = b"".join(station.vault.store.get(key))
    # the same bytes again: what a write repeated after a lost answer leaves on a server that ignores
    # If-None-Match; it changes nothing, and is reported as such
    station.vault.store.put_bytes(key, original, retention=None)
    repeated = station.vault.custody.verify(evidence_id)
    assert repeated.intact, repeated.problems
    assert [(r.position, r.in_chain_at) for r in repeated.lost_races] == [(1, 1)]
    assert "written twice" in repeated.lost_races[0].describe()
    # other bytes are not: the record still reads as it was, and the later version is named
    station.vault.store.put_bytes(key, original.replace(b"review 0", b"review 9"), retention=None)
    result = station.vault.custody.verify(evidence_id)
    assert [e.details.get("purpose") for e in result.events] == [None, "review 0"]
    [problem] = result.problems
    assert problem.position == 1 and "3 versions" in problem.message and "altered" in problem.message


def test_cut_off_end_is_named_given_the_known_length(station: Station, tmp_path: Path) -> None:
    evidence_id = ingest_one(station, tmp_path)
    with_events(station, evidence_id, 2)
    stored = station.vault.custody.stored(evidence_id)
    keys = {k.key_id: k for k in station.vault.custody.public_keys().values()}
    result = verify_chain(evidence_id, stored[:-1], keys, expected_length=len(stored))
    assert not result.intact and "ends early" in result.problems[-1].message


def test_racing_writers_never_fork_the_chain(station: Station, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    evidence_id = ingest_one(station, tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: with_events(station, evidence_id, 1), range(12)))
    result = station.vault.custody.verify(evidence_id)
    assert result.intact and [e.seq for e in result.events] == list(range(13))


KEY = SigningKey(bytes(range(32)))
T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVIDENCE_ID = "ev-" + "a" * 26


def build_chain(length: int) -> list[bytes]:
    chain: list[bytes] = []
    for n in range(length):
        event = new_event(
            chain[-1] if chain else None,
            evidence_id=EVIDENCE_ID,
            seq=n,
            type="ingest" if n == 0 else "access",
            at=T0 + timedelta(minutes=n),
            actor="station-1" if n == 0 else "det-1",
            role="ingest-station" if n == 0 else "investigator",
            station="station-1",
            details={"n": n},
            signer=KEY,
        )
        chain.append(encode_event(event))
    return chain


@settings(max_examples=150, deadline=None)
@given(
    length=st.integers(min_value=2, max_value=8),
    mutation=st.sampled_from(["flip", "drop", "swap", "duplicate", "truncate"]),
    data=st.data(),
)
def test_every_single_mutation_of_a_chain_is_detected(
    length: int, mutation: str, data: st.DataObject
) -> None:
    chain = build_chain(length)
    keys = {KEY.key_id: KEY.verifying_key}
    stored = list(enumerate(chain))
    assert verify_chain(EVIDENCE_ID, stored, keys, expected_length=length).intact
    i = data.draw(st.integers(min_value=0, max_value=length - 1))
    if mutation == "flip":
        record = bytearray(chain[i])
        j = data.draw(st.integers(min_value=0, max_value=len(record) - 1))
        record[j] ^= 1 << data.draw(st.integers(min_value=0, max_value=6))
        stored[i] = (i, bytes(record))
    elif mutation == "drop":
        del stored[i]
    elif mutation == "swap":
        j = (i + 1) % length
        stored[i], stored[j] = (i, chain[j]), (j, chain[i])
    elif mutation == "duplicate":
        j = (i + 1) % length
        stored[j] = (j, chain[i])
    else:
        stored = stored[: max(i, 1)] if i < length - 1 else stored[:-1]
    assert not verify_chain(EVIDENCE_ID, stored, keys, expected_length=length).intact
