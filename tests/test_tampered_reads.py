"""Every read path checks what an export checks before it releases anything decrypted: a custody chain
that verifies and is no shorter than the catalog saw, a manifest that is the one the ingest event
recorded, and content and thumbnails authenticated as they are decrypted (``flows.retrieval.
verify_for_release``). Someone with file access to a local vault, who also makes the store's own
checksums agree with what they wrote, gets a refusal naming the tamper, never plaintext passed as
verified; and a read never writes its own record over a gap it found in a chain."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.commands import app
from evidence import layout
from evidence.access import Actor
from evidence.errors import AccessDenied, IntegrityError, InvalidInput
from evidence.manifest import decode_manifest, encode_manifest
from evidence.settings import Settings
from flows.export import export_items
from flows.journal import IngestJournal
from flows.retrieval import describe_item, export_thumbnails, get_original, get_range
from storage.vault import Vault
from tests.factories import make_device
from tests.station import Station, make_station
from tests.test_export_incident import INCIDENT, INVESTIGATOR, OFFICER, ingested_ids, link, write_users

STORAGE_ADMIN = Actor("sam", frozenset({"storage-admin"}))
runner = CliRunner()


@dataclass(frozen=True)
class Pristine:
    """A vault of three linked items, and what every read of them must give back."""

    data_dir: Path
    evidence_ids: tuple[str, ...]
    originals: dict[str, bytes]
    thumbnails: dict[str, bytes | None]
    sealed: dict[str, str]
    """Each item's original SHA-256, from its sealed details."""
    shown: dict[str, dict[str, object]]
    """What ``show`` gives an investigator: the clear manifest and the sealed details."""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    root = tmp_path_factory.mktemp("pristine")
    station = make_station(root / "station")
    write_users(station)
    device = make_device(root / "BWC-TAMPER01", photos=2, videos=1)
    ids = ingested_ids(station, device)
    link(station, ids)
    originals, thumbnails, sealed = {}, {}, {}
    for evidence_id in ids:
        manifest = station.vault.manifest(evidence_id)
        details = station.vault.details(manifest)
        originals[evidence_id] = (device / details.source_path).read_bytes()
        thumbnails[evidence_id] = station.vault.thumbnail(manifest)
        sealed[evidence_id] = details.sha256
    station.catalog.close()
    scratch = copy_of_data(station.settings.data_dir, root / "scratch")  # showing records an access
    shown = {i: describe_item(scratch.vault, i, INVESTIGATOR, catalog=scratch.catalog) for i in ids}
    return Pristine(station.settings.data_dir, tuple(ids), originals, thumbnails, sealed, shown)


def copy_of_data(data_dir: Path, where: Path) -> Station:
    shutil.copytree(data_dir, where)
    settings = Settings(data_dir=where, settle_seconds=0)
    journal = IngestJournal.for_station(settings.journal_dir)
    return Station(settings, Vault.open(settings, journal=journal), journal)


def copy_of(pristine: Pristine, where: Path) -> Station:
    """A station of its own over a copy of the pristine vault, keys and catalog."""
    return copy_of_data(pristine.data_dir, where)


# -- tampering as someone with file access would -----------------------------------------------------


def version_files(station: Station, key: str) -> tuple[Path, Path]:
    """The current version's bytes and its record (``docs/storage.md``, local store)."""
    info = station.vault.store.head(key)
    versions = station.settings.data_dir / "vault" / "objects" / key / "@v"
    return versions / f"{info.version_id}.data", versions / f"{info.version_id}.json"


def rewrite_object(station: Station, key: str, change: Callable[[bytes], bytes]) -> None:
    """Change a stored object in place and make the store's record agree (size and SHA-256), so
    nothing but the program's own checks stands between the change and a reader."""
    data_path, record_path = version_files(station, key)
    data_path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    changed = change(data_path.read_bytes())
    data_path.write_bytes(changed)
    record = json.loads(record_path.read_bytes())
    record["size"] = len(changed)
    record["sha256"] = hashlib.sha256(changed).hexdigest()
    record_path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    record_path.write_text(json.dumps(record))


def remove_object(station: Station, key: str) -> None:
    shutil.rmtree(station.settings.data_dir / "vault" / "objects" / key)


def item_keys(station: Station, evidence_id: str) -> dict[str, str]:
    manifest = station.vault.manifest(evidence_id)
    keys = {"manifest": layout.manifest_key(evidence_id), "content": manifest.content.key}
    if manifest.thumbnail is not None:
        keys["thumbnail"] = manifest.thumbnail.key
    for info in station.vault.store.list(layout.custody_prefix(evidence_id)):
        keys[f"custody {layout.custody_position(info.key)}"] = info.key
    return keys


def chain_types(station: Station, evidence_id: str) -> list[str]:
    return [event.type for event in station.vault.custody.events(evidence_id)]


# -- every read path, as one list -----------------------------------------------------------------


def middle_third(size: int) -> tuple[int, int]:
    return size // 3, size // 2


def read_paths(
    station: Station, pristine: Pristine, evidence_id: str, out: Path
) -> dict[str, Callable[[], object]]:
    """What each read path releases, or its error: get, ranged get, thumbs, show and export."""
    vault, catalog = station.vault, station.catalog
    first, last = middle_third(len(pristine.originals[evidence_id]))

    def whole() -> bytes:
        get_original(vault, evidence_id, INVESTIGATOR, out / "whole", catalog=catalog)
        return (out / "whole").read_bytes()

    def ranged() -> bytes:
        sink = io.BytesIO()
        get_range(vault, evidence_id, INVESTIGATOR, f"{first}-{last}", sink, catalog=catalog)
        return sink.getvalue()

    def thumbs() -> bytes | None:
        report = export_thumbnails(
            vault, [evidence_id], INCIDENT, INVESTIGATOR, out / "thumbs", catalog=catalog
        )
        return report.written[0][1].read_bytes() if report.written else None

    def show() -> object:
        return describe_item(vault, evidence_id, INVESTIGATOR, catalog=catalog)

    def export() -> bytes:
        report = export_items(
            vault, [evidence_id], INCIDENT, INVESTIGATOR, "court", out / "bag", catalog=catalog
        )
        return (out / "bag" / report.items[0].path).read_bytes()

    return {"get": whole, "range": ranged, "thumbs": thumbs, "show": show, "export": export}


def expected_release(pristine: Pristine, evidence_id: str, path: str) -> object:
    original = pristine.originals[evidence_id]
    first, last = middle_third(len(original))
    return {
        "get": original,
        "range": original[first : last + 1],
        "thumbs": pristine.thumbnails[evidence_id],
        "show": pristine.shown[evidence_id],
        "export": original,
    }[path]


MUST_REFUSE = {
    # every read verifies the manifest and the whole chain first: any change to them is refused
    "manifest": {"get", "range", "thumbs", "show", "export"},
    "custody 0": {"get", "range", "thumbs", "show", "export"},
    "custody 1": {"get", "range", "thumbs", "show", "export"},
    # a whole original is authenticated end to end; a range or a preview reads other bytes
    "content": {"get", "export"},
    "thumbnail": {"thumbs"},
}


def assert_refused_or_exact(
    pristine: Pristine, station: Station, evidence_id: str, tampered: str, out: Path
) -> None:
    """Each read path that covers the tampered object raises an integrity error naming it, leaving
    no file behind; the others release exactly what was ingested. Anything else fails: another
    error, altered bytes, or a read that should have seen the change and did not."""
    for path in ("get", "range", "thumbs", "show", "export"):
        where = out / path
        where.mkdir(parents=True)
        try:
            released = read_paths(station, pristine, evidence_id, where)[path]()
        except IntegrityError:
            assert not (where / "whole").exists() and not (where / "bag").exists(), path
            assert not any((where / "thumbs").glob("*.jpg")), path
            continue
        assert path not in MUST_REFUSE[tampered], f"{path} released an item whose {tampered} was changed"
        assert released == expected_release(pristine, evidence_id, path), f"{path} released altered bytes"


# -- the defects, one by one ------------------------------------------------------------------------


def test_a_read_refuses_a_chain_cut_short_and_never_writes_over_the_gap(
    pristine: Pristine, tmp_path: Path
) -> None:
    station = copy_of(pristine, tmp_path / "station")
    victim = pristine.evidence_ids[0]
    assert chain_types(station, victim) == ["ingest", "link"]
    remove_object(station, layout.custody_key(victim, 1))

    out = tmp_path / "exhibit.jpg"
    result = runner.invoke(
        app,
        ["--user", "ivy", "get", victim, "--out", str(out)],
        env={"EVIDENCE_DATA_DIR": str(station.settings.data_dir)},
    )
    assert isinstance(result.exception, IntegrityError), result.output
    assert "ends early" in str(result.exception)
    assert not out.exists()
    assert chain_types(station, victim) == ["ingest"], "the read wrote nothing into the freed position"
    verification = station.vault.custody.verify(victim, expected_length=2)
    assert not verification.intact


def test_no_record_is_appended_to_a_chain_shorter_than_the_catalog_saw(
    pristine: Pristine, tmp_path: Path
) -> None:
    """Links, holds and accesses alike: the append itself refuses, whoever calls it."""
    from flows.records import record

    station = copy_of(pristine, tmp_path / "station")
    victim = pristine.evidence_ids[1]
    remove_object(station, layout.custody_key(victim, 1))
    with pytest.raises(IntegrityError, match="ends early"):
        record(
            station.vault,
            station.catalog,
            victim,
            "link",
            actor="oscar",
            role="officer",
            details={"incident": "KNT-2026-000999", "reason": "r", "source": "manual"},
        )
    assert chain_types(station, victim) == ["ingest"]


def test_get_refuses_a_manifest_other_than_the_one_ingest_recorded(
    pristine: Pristine, tmp_path: Path
) -> None:
    """An edited clear field (the recording time retention counts from) is a new manifest: `get`,
    like export, refuses it, though the content behind it still decrypts."""
    station = copy_of(pristine, tmp_path / "station")
    victim = pristine.evidence_ids[0]

    def backdated(data: bytes) -> bytes:
        manifest = decode_manifest(data)
        doc = json.loads(encode_manifest(manifest))
        doc["recorded_at"] = "2001-01-01T00:00:00+00:00"
        return json.dumps(doc, sort_keys=True, indent=2).encode()

    rewrite_object(station, layout.manifest_key(victim), backdated)
    for path, read in read_paths(station, pristine, victim, tmp_path).items():
        with pytest.raises(IntegrityError, match="not the one its ingest custody event recorded"):
            read()
        assert not (tmp_path / "whole").exists(), path
    assert chain_types(station, victim) == ["ingest", "link"], "nothing refused is recorded as an access"


def test_get_refuses_a_forged_custody_record(pristine: Pristine, tmp_path: Path) -> None:
    """A record appended by someone without a station's signing key (here: signed by a key the
    vault never published) breaks the chain for `get` as for export."""
    from evidence.custody import encode_event, new_event
    from evidence.signing import SigningKey

    station = copy_of(pristine, tmp_path / "station")
    victim = pristine.evidence_ids[2]
    stored = station.vault.custody.stored(victim)
    forger = SigningKey(secrets.token_bytes(32))
    forged = new_event(
        stored[-1][1],
        evidence_id=victim,
        seq=len(stored),
        type="unlink",
        at=station.vault.custody.events(victim)[-1].at,
        actor="ivy",
        role="investigator",
        station="elsewhere",
        details={"incident": INCIDENT.value, "reason": "forged"},
        signer=forger,
    )
    station.vault.store.put_bytes(
        layout.custody_key(victim, len(stored)), encode_event(forged), retention=None, if_absent=True
    )
    for path, read in read_paths(station, pristine, victim, tmp_path).items():
        with pytest.raises(IntegrityError, match="unknown key"):
            read()
        assert not (tmp_path / "whole").exists(), path
    assert not (tmp_path / "whole").exists()


@pytest.mark.parametrize("kind", ["manifest", "content", "thumbnail", "custody 0", "custody 1"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_every_read_path_refuses_or_releases_exactly_the_original(
    pristine: Pristine, tmp_path: Path, kind: str, where: str
) -> None:
    """The deterministic sweep: one flipped byte at the start, middle and end of each kind of object."""
    station = copy_of(pristine, tmp_path / "station")
    victim = pristine.evidence_ids[0]
    key = item_keys(station, victim)[kind]

    def flip(data: bytes) -> bytes:
        at = {"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[where]
        return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]

    rewrite_object(station, key, flip)
    assert_refused_or_exact(pristine, station, victim, kind, tmp_path / "reads")


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI must not depend on a lucky draw
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    item=st.integers(min_value=0, max_value=2),
    kind=st.sampled_from(["manifest", "content", "thumbnail", "custody 0", "custody 1"]),
    change=st.sampled_from(["flip", "truncate", "append", "splice"]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
@pytest.mark.slow
def test_random_tampering_of_any_stored_object_is_refused_or_harmless(
    pristine: Pristine,
    tmp_path_factory: pytest.TempPathFactory,
    item: int,
    kind: str,
    change: str,
    seed: int,
) -> None:
    """Random bytes of a random stored object of a random item changed, the store's checksums made
    consistent: every read path refuses with an integrity error or releases the original exactly."""
    where = tmp_path_factory.mktemp("tampered")
    station = copy_of(pristine, where / "station")
    victim = pristine.evidence_ids[item]
    keys = item_keys(station, victim)
    if kind not in keys:
        return
    draw = random.Random(seed)

    def tamper(data: bytes) -> bytes:
        at = draw.randrange(len(data))
        if change == "flip":
            return data[:at] + bytes([data[at] ^ draw.randrange(1, 256)]) + data[at + 1 :]
        if change == "truncate":
            return data[:at]
        if change == "append":
            return data + draw.randbytes(draw.randrange(1, 64))
        return data[:at] + draw.randbytes(draw.randrange(1, 64)) + data[at:]

    rewrite_object(station, keys[kind], tamper)
    assert_refused_or_exact(pristine, station, victim, kind, where / "reads")


# -- show: a read like any other --------------------------------------------------------------------


def test_show_refuses_anonymous_and_unknown_users_and_records_every_look(
    pristine: Pristine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    station = copy_of(pristine, tmp_path / "station")
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(station.settings.data_dir))
    monkeypatch.delenv("EVIDENCE_USER", raising=False)
    item = pristine.evidence_ids[0]
    for user in ([], ["--user", "mallory"]):
        result = runner.invoke(app, [*user, "show", item, "--json"])
        assert isinstance(result.exception, AccessDenied), result.output
        assert pristine.sealed[item] not in result.output
    assert chain_types(station, item) == ["ingest", "link"]

    result = runner.invoke(app, ["--user", "ivy", "show", item, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["sha256"] == pristine.sealed[item] and "original_name" in shown
    event = station.vault.custody.events(item)[-1]
    assert (event.type, event.actor, event.details) == (
        "access",
        "ivy",
        {"action": "show", "sealed_details": True},
    )


def test_show_keeps_sealed_details_from_roles_that_may_not_read_evidence(
    pristine: Pristine, tmp_path: Path
) -> None:
    station = copy_of(pristine, tmp_path / "station")
    item = pristine.evidence_ids[1]
    for actor in (OFFICER, STORAGE_ADMIN):
        shown = describe_item(station.vault, item, actor, catalog=station.catalog)
        assert (
            "sha256" not in shown and "original_name" not in shown and "role may not" in str(shown["sealed"])
        )
        event = station.vault.custody.events(item)[-1]
        assert (event.actor, event.details) == (actor.user_id, {"action": "show", "sealed_details": False})


# -- where decrypted files land ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["get", "range", "thumbs"])
def test_an_out_path_that_is_a_dangling_link_is_refused_before_anything_is_recorded(
    pristine: Pristine, tmp_path: Path, command: str
) -> None:
    station = copy_of(pristine, tmp_path / "station")
    item = pristine.evidence_ids[0]
    target = tmp_path / "elsewhere" / "planted"
    link_path = tmp_path / "out"
    link_path.symlink_to(target)
    args = {
        "get": ["get", item, "--out", str(link_path)],
        "range": ["get", item, "--range", "0-9", "--out", str(link_path)],
        "thumbs": ["thumbs", "--incident", INCIDENT.value, "--out", str(link_path)],
    }[command]
    result = runner.invoke(
        app, ["--user", "ivy", *args], env={"EVIDENCE_DATA_DIR": str(station.settings.data_dir)}
    )
    assert isinstance(result.exception, InvalidInput), result.output
    assert result.exit_code == 2 or result.exception.exit_code == 2
    assert "link" in str(result.exception)
    assert not os.path.lexists(target) and not target.parent.exists()
    for evidence_id in pristine.evidence_ids:
        assert chain_types(station, evidence_id) == ["ingest", "link"]


def test_decrypted_files_are_readable_by_their_owner_alone(pristine: Pristine, tmp_path: Path) -> None:
    station = copy_of(pristine, tmp_path / "station")
    item = pristine.evidence_ids[0]
    get_original(station.vault, item, INVESTIGATOR, tmp_path / "get" / "exhibit.jpg", catalog=station.catalog)
    get_range(station.vault, item, INVESTIGATOR, "0-99", tmp_path / "range.bin", catalog=station.catalog)
    export_thumbnails(station.vault, list(pristine.evidence_ids), INCIDENT, INVESTIGATOR, tmp_path / "thumbs")
    assert stat.S_IMODE((tmp_path / "get" / "exhibit.jpg").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "get").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "range.bin").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "thumbs").stat().st_mode) == 0o700
    for preview in (tmp_path / "thumbs").iterdir():
        assert stat.S_IMODE(preview.stat().st_mode) == 0o600


def test_export_out_that_is_a_link_or_not_empty_is_bad_input(pristine: Pristine, tmp_path: Path) -> None:
    station = copy_of(pristine, tmp_path / "station")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    for out in (tmp_path / "full", tmp_path / "link"):
        result = runner.invoke(
            app,
            [
                "--user",
                "ivy",
                "export",
                "--incident",
                INCIDENT.value,
                "--purpose",
                "court",
                "--out",
                str(out),
            ],
            env={"EVIDENCE_DATA_DIR": str(station.settings.data_dir)},
        )
        assert isinstance(result.exception, InvalidInput), result.output
        assert result.exception.exit_code == 2
    for evidence_id in pristine.evidence_ids:
        assert chain_types(station, evidence_id) == ["ingest", "link"]


# -- the catalog indexes only what verifies --------------------------------------------------------


def test_catalog_rebuild_refuses_edited_manifests_and_forged_records_and_names_them(
    pristine: Pristine, tmp_path: Path
) -> None:
    from evidence.custody import decode_event

    station = copy_of(pristine, tmp_path / "station")
    edited, forged, untouched = pristine.evidence_ids

    def later(data: bytes) -> bytes:
        doc = json.loads(data)
        doc["recorded_at"] = "2026-12-31T23:00:00+00:00"
        return json.dumps(doc).encode()

    rewrite_object(station, layout.manifest_key(edited), later)

    def unsigned(data: bytes) -> bytes:
        event = decode_event(data)
        doc = event.to_document()
        doc["details"] = {**doc["details"], "incident": "KNT-2026-000777"}
        doc["signature"] = ""
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    rewrite_object(station, layout.custody_key(forged, 1), unsigned)

    report = station.catalog.rebuild(station.vault)
    refused = dict(report.refused)
    assert set(refused) == {edited, forged}
    assert "not the one its ingest custody event recorded" in refused[edited]
    assert "signature" in refused[forged]
    assert [item.evidence_id for item in station.catalog.iter_items()] == [untouched]
    assert station.catalog.items(incident="KNT-2026-000777") == []

    result = runner.invoke(
        app, ["catalog", "rebuild", "--json"], env={"EVIDENCE_DATA_DIR": str(station.settings.data_dir)}
    )
    assert result.exit_code == 3, result.output
    assert {entry["evidence_id"] for entry in json.loads(result.stdout)["refused"]} == {edited, forged}


def test_catalog_rebuild_remembers_a_chain_was_longer(pristine: Pristine, tmp_path: Path) -> None:
    """The catalog is the witness to a chain's length: a rebuild over a chain cut short refuses it
    rather than forgetting how long it was."""
    station = copy_of(pristine, tmp_path / "station")
    victim = pristine.evidence_ids[1]
    remove_object(station, layout.custody_key(victim, 1))
    report = station.catalog.rebuild(station.vault)
    assert [item for item, _ in report.refused] == [victim]
    assert "ends early" in dict(report.refused)[victim]


def test_every_read_path_releases_the_original_from_an_untouched_vault(
    pristine: Pristine, tmp_path: Path
) -> None:
    """The control for the tampering tests: on an untouched copy nothing is refused."""
    station = copy_of(pristine, tmp_path / "station")
    for evidence_id in pristine.evidence_ids:
        for path, read in read_paths(station, pristine, evidence_id, tmp_path / evidence_id).items():
            assert read() == expected_release(pristine, evidence_id, path), path
