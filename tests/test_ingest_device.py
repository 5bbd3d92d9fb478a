"""An officer docks a camera: every file ends up encrypted, locked and verified, or is accounted for."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import sys
from pathlib import Path

import pytest

from evidence.errors import AccessDenied, ConfigError, IntegrityError, LockedError
from evidence.layout import OBJECTS_PREFIX
from evidence.media import extract_media_info
from flows.fixity import check_item
from flows.keys import init_keys, station_bundle
from storage.vault import Provenance, Vault
from tests.factories import make_device, make_jpeg, make_mp4, random_file
from tests.station import Station, make_station


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return make_station(tmp_path / "station")


@pytest.fixture
def s3_station(tmp_path: Path, moto_aws: None) -> Station:
    return make_station(
        tmp_path / "station", vault_url="s3://evidence-test-vault/force-a", part_size=5 * 1024 * 1024
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_back(station: Station, evidence_id: str, out: Path) -> bytes:
    station.vault.export_original(station.vault.manifest(evidence_id), out)
    return out.read_bytes()


def test_device_ingests_verifies_and_reads_back_identically(station: Station, tmp_path: Path) -> None:
    device = make_device(tmp_path / "BWC-TEST01", photos=3, videos=1)
    report = station.ingest(device)

    ingested = report.by_status("ingested")
    assert len(ingested) == 4 and report.complete
    for n, outcome in enumerate(ingested):
        source = device / outcome.source_path
        assert outcome.sha256 == sha256_of(source)
        assert read_back(station, str(outcome.evidence_id), tmp_path / f"out{n}") == source.read_bytes()
        manifest = station.vault.manifest(str(outcome.evidence_id))
        assert manifest.device_serial == "BWC-TEST01" and manifest.officer_id == "PC-1"
        details = station.vault.details(manifest)
        assert details.source_path == outcome.source_path and details.sha256 == outcome.sha256


def test_second_ingest_of_same_device_stores_nothing_new(station: Station, tmp_path: Path) -> None:
    device = make_device(tmp_path / "BWC-TEST01", photos=2, videos=1)
    first = station.ingest(device)
    versions_before = {(v.key, v.version_id) for v in station.all_versions()}

    second = station.ingest(device)

    assert {v.key for v in station.all_versions()} == {k for k, _ in versions_before}
    assert {(v.key, v.version_id) for v in station.all_versions()} == versions_before
    assert [o.evidence_id for o in second.by_status("duplicate")] == [
        o.evidence_id for o in first.by_status("ingested")
    ]
    assert not second.by_status("ingested")


def test_same_content_under_two_names_is_one_item(station: Station, tmp_path: Path) -> None:
    device = tmp_path / "dev"
    make_jpeg(device / "a.jpg", seed=3)
    (device / "copy.jpg").write_bytes((device / "a.jpg").read_bytes())
    report = station.ingest(device)
    assert len(report.by_status("ingested")) == 1 and len(report.by_status("duplicate")) == 1


def test_stored_objects_never_contain_original_bytes(station: Station, tmp_path: Path) -> None:
    device = make_device(tmp_path / "BWC-TEST01", photos=2, videos=1)
    (device / "notes.txt").write_bytes(b"victim name and address in plain text " * 40)
    station.ingest(device)
    originals = [p for p in device.rglob("*") if p.is_file()]
    assert_no_plaintext_runs(station, originals)


def assert_no_plaintext_runs(station: Station, originals: list[Path]) -> None:
    """No stored object holds any 64-byte run of any original. Every 64-byte run contains a whole
    32-byte block aligned on a multiple of 32 in its source, so looking for those blocks at every offset
    of every stored object is sufficient."""
    blocks = set()
    for path in originals:
        data = path.read_bytes()
        blocks.update(data[i : i + 32] for i in range(0, len(data) - 31, 32))
    assert blocks, "nothing to compare"
    first_words = first_words_of(blocks)
    checked = 0
    for info in station.vault.store.list_versions(""):
        if info.is_delete_marker:
            continue  # a marker has no bytes: reading its version is refused as not found
        stored = b"".join(station.vault.store.get(info.key, version_id=info.version_id))
        hits = block_offsets(stored, blocks, first_words)
        assert not hits, f"{info.key} contains original bytes at offsets {hits[:5]}"
        checked += 1
    assert checked > 0


def first_words_of(blocks: set[bytes]) -> set[int]:
    return {int.from_bytes(block[:8], sys.byteorder) for block in blocks}


def block_offsets(data: bytes, blocks: set[bytes], wanted: set[int] | None = None) -> list[int]:
    """Every offset of ``data`` where one of ``blocks`` (32 bytes each) starts. A Python step per
    offset took half a minute for the corpus; instead the 8-byte words at every offset (eight aligned
    views, compared in C as sets) are matched against the blocks' first words (``wanted``: give
    ``first_words_of(blocks)`` when searching many objects), and only a match is looked at whole."""
    if wanted is None:
        wanted = first_words_of(blocks)
    candidates: set[bytes] = set()
    for shift in range(8):
        view = memoryview(data)[shift:]
        words = view[: len(view) // 8 * 8].cast("Q")
        candidates.update(w.to_bytes(8, sys.byteorder) for w in wanted.intersection(words))
    offsets = []
    for word in candidates:
        at = data.find(word)
        while at != -1:
            if data[at : at + 32] in blocks:
                offsets.append(at)
            at = data.find(word, at + 1)
    return sorted(offsets)


def test_original_blocks_are_found_at_any_offset_and_nothing_else_is() -> None:
    rng = random.Random(7)
    original = rng.randbytes(4096)
    blocks = {original[i : i + 32] for i in range(0, len(original) - 31, 32)}
    noise = bytearray(rng.randbytes(20_000))
    assert block_offsets(bytes(noise), blocks) == []
    for at in (0, 1, 7, 8, 4093, len(noise) - 64):
        planted = bytearray(noise)
        planted[at : at + 64] = original[100:164]  # holds the aligned block original[128:160]
        assert block_offsets(bytes(planted), blocks) == [at + 28]
    near_miss = bytearray(noise)
    near_miss[500:532] = original[128:159] + bytes([original[159] ^ 1])  # first word matches, block not
    assert block_offsets(bytes(near_miss), blocks) == []


@pytest.mark.slow
def test_encryption_applied_on_s3_too(s3_station: Station, tmp_path: Path) -> None:
    device = make_device(tmp_path / "BWC-TEST01", photos=1, videos=1)
    random_file(device / "big.bin", 12 * 1024 * 1024, seed=5)  # > 2 parts: a multipart upload
    report = s3_station.ingest(device)
    assert len(report.by_status("ingested")) == 3
    assert_no_plaintext_runs(s3_station, [p for p in device.rglob("*") if p.is_file()])
    big = next(o for o in report.outcomes if o.source_path == "big.bin")
    assert (
        read_back(s3_station, str(big.evidence_id), tmp_path / "big.out") == (device / "big.bin").read_bytes()
    )


@pytest.mark.parametrize("store", ["local", "s3"])
def test_manifest_records_the_sha256_of_the_stored_bytes(
    store: str, station: Station, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The ciphertext SHA-256 is taken once: by the local store as it writes (its checksum), by the
    encryptor for S3. Either way the manifest's figure, which keyless fixity checks compare with, is
    the SHA-256 of exactly the stored object, and a fixity check finds a stored byte changed later."""
    used = station if store == "local" else request.getfixturevalue("s3_station")
    device = tmp_path / "BWC-TEST01"
    random_file(device / "big.bin", 3 * 1024 * 1024 + 5, seed=9)  # several 1 MiB segments
    (outcome,) = used.ingest(device).by_status("ingested")
    evidence_id = str(outcome.evidence_id)
    content = used.vault.manifest(evidence_id).content

    stored = b"".join(used.vault.store.get(content.key, version_id=content.version_id))
    assert content.sha256 == hashlib.sha256(stored).hexdigest()
    assert content.size == len(stored)
    assert check_item(used.vault, evidence_id).result == "ok"
    if store == "local":
        assert content.checksum == content.sha256  # one computation, recorded as both
        data_file = next(used.vault.store.root.rglob(f"{content.version_id}.data"))  # type: ignore[attr-defined]
        data_file.chmod(0o644)
        with data_file.open("r+b") as handle:
            handle.seek(len(stored) // 2)
            handle.write(bytes([stored[len(stored) // 2] ^ 1]))
        checked = check_item(used.vault, evidence_id)
        assert checked.result == "failed"
        assert "stored bytes do not match the SHA-256 recorded at ingest" in str(checked.problem)


def test_plaintext_check_passes_over_delete_markers(s3_station: Station, tmp_path: Path) -> None:
    """A delete without a version id (someone at the S3 console) is allowed under Object Lock: it
    destroys nothing but puts a delete marker in the listing. The check reads every real version and
    passes over the marker instead of failing on it."""
    import boto3

    device = make_device(tmp_path / "BWC-TEST01", photos=1, videos=0)
    outcome = s3_station.ingest(device).by_status("ingested")[0]
    manifest_key = f"force-a/items/{outcome.evidence_id}/manifest.json"
    boto3.client("s3").delete_object(Bucket="evidence-test-vault", Key=manifest_key)
    assert any(v.is_delete_marker for v in s3_station.all_versions())
    assert_no_plaintext_runs(s3_station, [p for p in device.rglob("*") if p.is_file()])


# -- what the clear parts of the vault and the catalog reveal ----------------------------------------

LEAK_GPS = (61.21111, -149.81111)
"""Decimal degrees that read the same to 2, 3 or 4 places, so any rounding of them is caught; neither
looks like a time of day ("…:61.21" cannot be seconds), so no timestamp matches by chance."""
LEAK_CAMERA_SERIAL = "SN-QX7741-ZETA"
LEAK_NAMES = (
    "Operation-Nightjar/SUSPECT_VEHICLE_KX19ABC.JPG",
    "Operation-Nightjar/witness_Jane_Doe_42_Elm_Street.jpg",
    "DCIM/100BWC01/IMG_7731_MrsHarrington_kitchen.jpeg",
)


def clear_text(station: Station) -> dict[str, str]:
    """Everything of the vault and the catalog that is readable without the vault's private key:
    every object key; every manifest, custody record, signer and descriptor in full; every catalog
    row. Content and thumbnail objects (ciphertext) are for ``assert_no_plaintext_runs``."""
    import sqlalchemy as sa

    from storage.catalog import metadata

    store = station.vault.store
    found = {"object keys": "\n".join(v.key for v in store.list_versions(""))}
    for info in store.list_versions(""):
        if not info.is_delete_marker and not info.key.startswith(OBJECTS_PREFIX):
            data = b"".join(store.get(info.key, version_id=info.version_id))
            found[f"{info.key} ({info.version_id})"] = data.decode("utf-8")
    engine = sa.create_engine(station.catalog.url)
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    found[f"catalog {table.name} {tuple(row)[:2]}"] = " | ".join(map(str, row))
    finally:
        engine.dispose()
    return found


def test_clear_parts_reveal_no_name_hash_or_place(station: Station, tmp_path: Path) -> None:
    device = tmp_path / "BWC-TEST01"
    for n, name in enumerate(LEAK_NAMES):
        make_jpeg(device / name, gps=LEAK_GPS, serial=LEAK_CAMERA_SERIAL, seed=40 + n)
    (station.settings.data_dir / "users.toml").write_text('[users.pc-1]\nrole = "officer"\n')
    report = station.ingest(device, incidents=("KNT-2026-000123",), user="pc-1")  # links are records too
    stored = {o.source_path: str(o.evidence_id) for o in report.by_status("ingested")}
    assert sorted(stored) == sorted(LEAK_NAMES)
    for source, evidence_id in stored.items():  # the secrets really are in the sealed part
        details = station.vault.details(station.vault.manifest(evidence_id))
        assert details.source_path == source and details.media["location"]["latitude"] == LEAK_GPS[0]
        assert details.media["serial"] == LEAK_CAMERA_SERIAL

    secrets: dict[str, str] = {
        "GPS latitude": f"{LEAK_GPS[0]:.2f}",
        "GPS longitude": f"{abs(LEAK_GPS[1]):.2f}",
        "camera serial (EXIF)": LEAK_CAMERA_SERIAL,
    }
    for source in LEAK_NAMES:
        path = device / source
        digest = hashlib.sha256(path.read_bytes()).digest()
        secrets |= {
            f"name of {source}": path.name,
            f"stem of {source}": path.stem,
            f"folder of {source}": path.parent.name,
            f"SHA-256 of {source}": digest.hex(),
            f"SHA-256 of {source}, first 16 hex": digest.hex()[:16],
            f"SHA-256 of {source}, base64": base64.b64encode(digest).decode(),
            f"SHA-256 of {source}, base32": base64.b32encode(digest).decode()[:26],
        }
        evidence_id = stored[source]
        assert evidence_id.startswith("ev-")
        body = evidence_id.removeprefix("ev-")
        for form in (
            digest.hex(),
            base64.b32encode(digest).decode().lower(),
            base64.b64encode(digest).decode(),
        ):
            assert not form.lower().startswith(body[:8].lower()), (evidence_id, form)
            assert body.lower() not in form.lower(), (evidence_id, form)

    readable = clear_text(station)
    assert any(where.startswith("custody/") for where in readable)
    assert any(where.startswith("catalog items") for where in readable)
    leaks = [
        (what, where)
        for where, text in readable.items()
        for what, secret in secrets.items()
        if secret.lower() in text.lower()
    ]
    assert leaks == []


def test_locked_content_cannot_be_deleted_through_the_store(station: Station, tmp_path: Path) -> None:
    device = make_device(tmp_path / "BWC-TEST01", photos=1, videos=0)
    outcome = station.ingest(device).by_status("ingested")[0]
    content = station.vault.manifest(str(outcome.evidence_id)).content
    with pytest.raises(LockedError):
        station.vault.store.delete_version(content.key, content.version_id)


def test_wipe_removes_only_verified_files(station: Station, tmp_path: Path) -> None:
    device = make_device(tmp_path / "BWC-TEST01", photos=2, videos=0)
    os.mkfifo(device / "pipe")
    report = station.ingest(device, wipe=True)
    wiped = [o for o in report.outcomes if o.wiped]
    assert len(wiped) == 2
    assert all(not (device / o.source_path).exists() for o in wiped)
    assert (device / "pipe").exists(), "a rejected entry is never removed"


def test_flipped_byte_in_storage_refuses_get_and_writes_nothing(station: Station, tmp_path: Path) -> None:
    device = tmp_path / "dev"
    make_jpeg(device / "scene.jpg", seed=9)
    outcome = station.ingest(device).by_status("ingested")[0]
    manifest = station.vault.manifest(str(outcome.evidence_id))
    stored_files = [p for p in (station.settings.data_dir / "vault").rglob("*") if p.is_file()]
    target = next(
        p
        for p in stored_files
        if p.stat().st_size == manifest.content.size and manifest.content.key.split("/")[-1] in str(p)
    )
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.chmod(0o644)
    target.write_bytes(bytes(data))

    out = tmp_path / "export" / "scene.jpg"
    with pytest.raises(IntegrityError):
        station.vault.export_original(manifest, out)
    assert not out.exists()
    assert not out.parent.exists() or not list(out.parent.iterdir()), "no partial file left behind"


def test_hostile_device_entries_are_each_accounted_for(station: Station, tmp_path: Path) -> None:
    device = tmp_path / "dev"
    (device / "deep" / "er" / "still").mkdir(parents=True)
    make_jpeg(device / "deep" / "er" / "still" / "photo.jpg", seed=1)
    (device / "empty.mp4").write_bytes(b"")
    (device / "truncated.mp4").write_bytes(make_mp4(tmp_path / "full.mp4").read_bytes()[:700])
    os.symlink("/etc/passwd", device / "passwd-link")
    os.symlink(tmp_path, device / "dir-link")
    os.mkfifo(device / "fifo")
    hostile_name = os.fsencode(str(device)) + b"/\xff\xfe bad name\n.jpg"
    with open(hostile_name, "wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    (device / "..hidden").write_bytes(b"dotdot in a file name is just a name")

    report = station.ingest(device)

    statuses = {o.source_path: o.status for o in report.outcomes}
    assert statuses["deep/er/still/photo.jpg"] == "ingested"
    assert statuses["empty.mp4"] == "ingested"
    assert statuses["truncated.mp4"] == "ingested"
    assert statuses["..hidden"] == "ingested"
    assert statuses["passwd-link"] == "rejected" and statuses["dir-link"] == "rejected"
    assert statuses["fifo"] == "rejected"
    assert statuses["\\xff\\xfe bad name\n.jpg"] == "ingested"
    assert len(report.outcomes) == 8
    truncated = next(o for o in report.outcomes if o.source_path == "truncated.mp4")
    assert "metadata-unreadable" in truncated.flags
    # the hostile name comes back byte for byte from the sealed details
    hostile = next(o for o in report.outcomes if o.source_path.startswith("\\xff"))
    details = station.vault.details(station.vault.manifest(str(hostile.evidence_id)))
    assert base64.b64decode(details.original_name_b64) == b"\xff\xfe bad name\n.jpg"


def test_file_still_being_written_is_deferred_not_stored(tmp_path: Path) -> None:
    station = make_station(tmp_path / "station")
    station = Station(
        station.settings.model_copy(update={"settle_seconds": 3600}), station.vault, station.journal
    )
    device = tmp_path / "dev"
    make_jpeg(device / "fresh.jpg")
    report = station.ingest(device)
    assert [o.status for o in report.outcomes] == ["deferred"]
    assert not list(station.vault.store.list(OBJECTS_PREFIX))


def test_unknown_device_is_ingested_and_flagged(station: Station, tmp_path: Path) -> None:
    device = make_device(tmp_path / "CAM-UNREGISTERED", photos=1, videos=0)
    report = station.ingest(device, serial=None, officer=None)
    outcome = report.by_status("ingested")[0]
    assert "unknown-device" in outcome.flags
    assert station.vault.manifest(str(outcome.evidence_id)).device_serial == "CAM-UNREGISTERED"


def test_registered_device_gives_the_officer(tmp_path: Path) -> None:
    data_dir = tmp_path / "station"
    data_dir.mkdir()
    (data_dir / "devices.toml").write_text('[devices."BWC-0042"]\nofficer = "PC-4471"\ntype = "body-worn"\n')
    station = make_station(data_dir)
    device = make_device(tmp_path / "BWC-0042", photos=1, videos=0)
    outcome = station.ingest(device, serial=None, officer=None).by_status("ingested")[0]
    manifest = station.vault.manifest(str(outcome.evidence_id))
    assert manifest.officer_id == "PC-4471" and "unknown-device" not in manifest.flags


MALFORMED_REGISTRIES = [
    pytest.param(b"devices = 5\n", 'devices = 5 must be [devices."SERIAL"] tables', id="devices-not-tables"),
    pytest.param(
        b'[devices]\nBWC-0042 = "PC-4471"\n', '[devices."BWC-0042"] must be a table', id="not-a-table"
    ),
    pytest.param(
        b'[devices."BWC-0042"]\nofficer_id = "PC-4471"\n', "unknown key(s) officer_id", id="misspelt-officer"
    ),
    pytest.param(b'[devices."BWC-0042"]\nofficer = 4471\n', "officer id in quotes", id="officer-a-number"),
    pytest.param(b'[devices."BWC-0042"]\nofficer = ""\n', "officer id '' is not valid", id="officer-empty"),
    pytest.param(
        b'[devices."BWC 0042"]\nofficer = "PC-4471"\n',
        "device serial 'BWC 0042' is not valid",
        id="bad-serial",
    ),
    pytest.param(
        b'[devices."BWC-0042"]\nofficer = "PC-4471"\ntype = 5\n',
        "type = 5 must be a name",
        id="type-a-number",
    ),
    pytest.param(
        b'station = "dock-1"\n[devices."BWC-0042"]\nofficer = "PC-4471"\n',
        "unknown setting(s) station",
        id="unknown-top-level-key",
    ),
    pytest.param(b'[devices."BWC-0042"]\nofficer = "PC-\xff"\n', "cannot be read", id="not-utf-8"),
    pytest.param(b'[devices."BWC-0042"\n', "cannot be read", id="not-toml"),
]


@pytest.mark.parametrize(("content", "what_to_fix"), MALFORMED_REGISTRIES)
def test_a_malformed_device_registry_is_one_line_naming_the_file_before_anything_is_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    what_to_fix: str,
) -> None:
    """The registry attributes footage to officers: a misspelt key would leave every item of a camera
    attributed to nobody, so each mistake stops the ingest with the file named (exit 2)."""
    from tests.test_link_incidents import front_door

    registry = tmp_path / "devices.toml"
    registry.write_bytes(content)
    monkeypatch.setenv("EVIDENCE_DEVICE_REGISTRY", str(registry))
    device = make_device(tmp_path / "BWC-0042", photos=1, videos=0)
    code, _, stderr = front_door(["ingest", str(device)], capsys)
    assert code == ConfigError.exit_code, stderr
    assert stderr.startswith(f"error: device registry {registry}") and stderr.count("\n") == 1, stderr
    assert what_to_fix in stderr, stderr
    assert len(list(device.rglob("*.*"))) == 1, "nothing was read or wiped"


def test_station_without_private_key_can_store_but_not_read(station: Station, tmp_path: Path) -> None:
    bundle = station_bundle(station.settings, tmp_path / "bundle")
    assert sorted(p.name for p in bundle) == ["vault-id.key", "vault-recipient.pub"]
    station_settings = station.settings.model_copy(update={"keys_dir": tmp_path / "bundle"})
    added = init_keys(station_settings)  # the station's own custody signing key, and nothing that decrypts
    assert sorted(p.name for p in added) == ["signing.key", "signing.pub"]
    ingest_only = Vault.open(station_settings)
    device = tmp_path / "dev"
    make_jpeg(device / "a.jpg", seed=11)
    with (device / "a.jpg").open("rb") as source:
        stored = ingest_only.store_stream(
            source,
            media=extract_media_info(device / "a.jpg"),
            thumbnail=None,
            provenance=Provenance("st", "BWC-1", None, "a.jpg", "a.jpg", "YS5qcGc="),
        )
    with pytest.raises(AccessDenied):
        ingest_only.details(stored.manifest)
    assert station.vault.details(stored.manifest).sha256 == sha256_of(device / "a.jpg")
