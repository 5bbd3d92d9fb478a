"""Fuzzing what reads untrusted bytes: media detection and metadata extraction (a device's files), the
encrypted stream reader, and the manifest, custody and media-record decoders (a vault's contents).

Each must end in a result or one of the project's errors (``EvidenceError``: ``IntegrityError``,
``InvalidInput`` ...), never another exception and never a hang. The inputs are real artefacts
(a camera JPEG and MP4 from the factories, a sealed stream, a stored manifest and custody record)
damaged by hypothesis: bytes flipped, cut, inserted and repeated, JSON fields replaced and removed.
Examples are derandomized, so every run tries the same inputs.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence import stream
from evidence.custody import decode_event, encode_event, new_event
from evidence.errors import EvidenceError, IntegrityError, InvalidInput
from evidence.keyring import X25519Identity, unwrap_data_key
from evidence.manifest import (
    ItemDetails,
    Manifest,
    StoredObject,
    decode_manifest,
    encode_manifest,
    seal_details,
)
from evidence.media import MediaInfo, detect_media_type, extract_media_info, make_thumbnail
from evidence.signing import SigningKey
from tests.factories import make_jpeg, make_mp4

# Same inputs every run; no example database, so a run does not depend on the previous one.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,  # a hang is caught by the per-test timeout and the per-example clock below
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOWEST_EXAMPLE_SECONDS = 10.0
EVIDENCE_ID = "ev-" + "a" * 26


@functools.cache
def _samples() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as folder:
        jpeg = make_jpeg(Path(folder) / "IMG_0001.JPG", seed=1)
        mp4 = make_mp4(Path(folder) / "VID_0001.MP4")
        return {"jpeg": jpeg.read_bytes(), "mp4": mp4.read_bytes()}


def _damage(data: bytes, edits: list[tuple[str, int, bytes]], cut: int | None) -> bytes:
    damaged = bytearray(data)
    for action, at, payload in edits:
        at %= max(len(damaged), 1)
        if action == "flip" and damaged:
            damaged[at] ^= payload[0] if payload and payload[0] else 0x01
        elif action == "insert":
            damaged[at:at] = payload
        elif action == "delete":
            del damaged[at : at + max(len(payload), 1)]
        elif action == "repeat":
            damaged[at:at] = damaged[at : at + 64]
    return bytes(damaged if cut is None else damaged[: cut % (len(damaged) + 1)])


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "repeat"]),
        st.integers(min_value=0, max_value=2**31),
        st.binary(min_size=1, max_size=16),
    ),
    max_size=8,
)
CUTS = st.none() | st.integers(min_value=0, max_value=2**31)


def _timed(call: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = call()
    elapsed = time.monotonic() - started
    assert elapsed < SLOWEST_EXAMPLE_SECONDS, f"took {elapsed:.1f} s: a hang in the making"
    return result


def _only_clear_errors(call: Callable[[], Any]) -> Any:
    """The call's result, or None if it raised one of the project's errors. Anything else fails."""
    try:
        return _timed(call)
    except EvidenceError as err:
        assert str(err), f"{type(err).__name__} without a message"
        return None


# ------------------------------------------------------------------------------------------------
# Device files: detection, metadata, thumbnails


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
@settings(FUZZ, max_examples=400)
@given(sample=st.sampled_from(["jpeg", "mp4"]), edits=EDITS, cut=CUTS)
@pytest.mark.slow
def test_damaged_camera_files_still_give_a_record_and_never_raise(
    sample: str, edits: list[tuple[str, int, bytes]], cut: int | None
) -> None:
    content = _damage(_samples()[sample], edits, cut)
    media_type, kind = detect_media_type(content[:65536])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "evidence"
        path.write_bytes(content)
        info = _timed(lambda: extract_media_info(path))
        thumbnail = _timed(lambda: make_thumbnail(path, info, max_side=64))
    assert isinstance(info, MediaInfo) and (info.media_type, info.kind) == (media_type, kind)
    assert info.metadata_error is None or info.metadata_error.strip()
    assert MediaInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert thumbnail is None or thumbnail.startswith(b"\xff\xd8")


@functools.cache
def _corpus_seeds(corpus: Path) -> list[Path]:
    """Every small real file of the corpus: JPEGs from many cameras, TIFF, DNG, CR3, NEF, RW2, HEIC,
    MOV, MTS, AVI, WMV, DV, MXF, PNG, GIF, BMP, PDF, ISO."""
    return sorted(
        p for folder in ("photos", "other") for p in (corpus / folder).iterdir() if p.stat().st_size < 200_000
    )


# libtiff reports LZW damage on stderr itself, below Pillow; nothing in Python can route it elsewhere
# short of redirecting the process's stderr, which a multi-threaded station must not do.
_LIBTIFF_NOISE = re.compile(r"^(\S+\.tif: .*|LZWDecode: .*)$")


@pytest.mark.corpus
@pytest.mark.timeout(180)
@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
@settings(
    FUZZ,
    max_examples=500,
    suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture],
)
@given(pick=st.integers(min_value=0, max_value=10**6), edits=EDITS, cut=CUTS)
@pytest.mark.slow
def test_damaged_real_camera_files_give_a_record_quietly(
    corpus: Path,
    capfd: pytest.CaptureFixture[str],
    pick: int,
    edits: list[tuple[str, int, bytes]],
    cut: int | None,
) -> None:
    seeds = _corpus_seeds(corpus)
    seed = seeds[pick % len(seeds)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "evidence"
        path.write_bytes(_damage(seed.read_bytes(), edits, cut))
        info = _timed(lambda: extract_media_info(path))
        thumbnail = _timed(lambda: make_thumbnail(path, info, max_side=64))
    assert isinstance(info, MediaInfo) and (thumbnail is None or thumbnail.startswith(b"\xff\xd8"))
    captured = capfd.readouterr()
    noise = [line for line in (captured.out + captured.err).splitlines() if not _LIBTIFF_NOISE.match(line)]
    assert not noise, f"damaged {seed.name} made the readers print: {noise[:5]}"


def _jpeg_claiming_size(width: int, height: int) -> bytes:
    """The factory JPEG with its frame header (SOF0) claiming another size."""
    data = bytearray(_samples()["jpeg"])
    at = data.find(b"\xff\xc0")
    assert at > 0
    data[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _png_claiming_size(width: int, height: int) -> bytes:
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"\x00\x00\x00\x00IEND\xaeB`\x82"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "content",
    [
        _jpeg_claiming_size(65_500, 65_500),
        _jpeg_claiming_size(1, 65_500),
        _jpeg_claiming_size(0, 0),
        _png_claiming_size(100_000, 100_000),
        _png_claiming_size(2**31 - 1, 1),
    ],
    ids=["jpeg-65500-square", "jpeg-1x65500", "jpeg-0x0", "png-100000-square", "png-2g-wide"],
)
def test_pictures_claiming_absurd_sizes_neither_exhaust_memory_nor_hang(
    content: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "bomb"
    path.write_bytes(content)
    info = _timed(lambda: extract_media_info(path))
    thumbnail = _timed(lambda: make_thumbnail(path, info, max_side=64))
    assert info.kind == "photo"
    assert thumbnail is None or len(thumbnail) < 100_000


MAGICS = [
    b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00\x08\x00\x00\x00",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"GIF89a",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00isommp42",
    b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00",
    b"\x1aE\xdf\xa3\x93B\x82\x88matroska",
    b"RIFF\x00\x00\x00\x00AVI LIST",
    b"G@\x00\x10\x00\x00\xb0\r",
    b"%PDF-1.7\n",
    b"ID3\x04\x00\x00\x00\x00\x00\x00",
]


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=200)
@given(magic=st.sampled_from(MAGICS), body=st.binary(max_size=4096))
def test_garbage_behind_real_signatures_gives_a_record(magic: bytes, body: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "evidence"
        path.write_bytes(magic + body)
        info = _timed(lambda: extract_media_info(path))
        assert _timed(lambda: make_thumbnail(path, info, max_side=32)) is None or info.kind in (
            "photo",
            "video",
        )


# ------------------------------------------------------------------------------------------------
# The encrypted stream

DATA_KEY = bytes(range(32))


@functools.cache
def _sealed(plaintext_size: int) -> tuple[bytes, bytes]:
    plaintext = bytes((n * 7) % 251 for n in range(plaintext_size))
    encryptor = stream.StreamEncryptor(DATA_KEY, segment_size=4096)
    return plaintext, encryptor.update(plaintext) + encryptor.finalize()


def _chunked(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    at = 0
    for size in sizes:
        yield data[at : at + size]
        at += size
    yield data[at:]


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=300)
@given(
    size=st.sampled_from([0, 1, 4095, 4096, 4097, 9000]),
    edits=EDITS,
    cut=CUTS,
    chunks=st.lists(st.integers(min_value=0, max_value=5000), max_size=6),
)
def test_a_damaged_stream_never_yields_plaintext_it_did_not_seal(
    size: int, edits: list[tuple[str, int, bytes]], cut: int | None, chunks: list[int]
) -> None:
    plaintext, sealed = _sealed(size)
    damaged = _damage(sealed, edits, cut)
    try:
        recovered = _timed(lambda: b"".join(stream.decrypt_chunks(DATA_KEY, _chunked(damaged, chunks))))
    except (IntegrityError, InvalidInput) as err:
        assert str(err)
        assert damaged != sealed, "an intact stream was refused"
        return
    # authenticated encryption: the only stream that opens is the one sealed (AES-GCM forgeries aside)
    assert damaged == sealed and recovered == plaintext
    assert _only_clear_errors(lambda: stream.open_sealed(DATA_KEY, damaged)) == plaintext


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=300)
@given(data=st.binary(max_size=200), key=st.binary(min_size=0, max_size=40))
def test_arbitrary_bytes_as_a_stream_or_header_are_refused_clearly(data: bytes, key: bytes) -> None:
    header = _only_clear_errors(lambda: stream.parse_header(data))
    assert header is None or header.segment_size >= stream.MIN_SEGMENT_SIZE
    assert _only_clear_errors(lambda: stream.open_sealed(key, data)) is None


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=200)
@given(
    edits=EDITS,
    declared_size=st.integers(min_value=-10, max_value=2**40),
    start=st.integers(min_value=-10, max_value=20_000),
    length=st.integers(min_value=-10, max_value=20_000),
)
def test_ranged_reads_of_damaged_streams_or_wrong_sizes_fail_clearly(
    edits: list[tuple[str, int, bytes]], declared_size: int, start: int, length: int
) -> None:
    plaintext, sealed = _sealed(9000)
    damaged = _damage(sealed, edits, None)

    def read() -> bytes:
        pieces = stream.decrypt_range(
            DATA_KEY,
            damaged[: stream.HEADER_SIZE],
            declared_size,
            start,
            start + length,
            lambda cstart, cend: iter([damaged[cstart:cend]]),
        )
        return b"".join(pieces)

    recovered = _only_clear_errors(read)
    if recovered:
        # a wrong declared size may go unnoticed when the range never reaches the stream's end, but
        # every byte returned was authenticated: it is the plaintext that was sealed there
        assert start >= 0 and recovered == plaintext[start : start + length]


# ------------------------------------------------------------------------------------------------
# What a vault holds: manifests, custody records, media records, key stanzas

# Infinity (which Python's json reads and writes) is left to the pinned cases at the end of the module.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_infinity=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@functools.cache
def _manifest() -> tuple[bytes, dict[str, Any]]:
    stored = StoredObject("objects/ab/" + "ab" * 16, "v1", 100, "0" * 64, "c2hh")
    details = ItemDetails("0" * 64, 10, "a.jpg", "YS5qcGc=", "DCIM/a.jpg", {"media_type": "image/jpeg"})
    manifest = Manifest(
        evidence_id=EVIDENCE_ID,
        ingested_at=datetime(2026, 11, 25, tzinfo=UTC),
        station_id="station-1",
        device_serial="BWC-1",
        officer_id="PC-1",
        media_type="image/jpeg",
        kind="photo",
        recorded_at="2026-11-24T10:00:00+00:00",
        size=10,
        segment_size=4096,
        content=stored,
        thumbnail=stored,
        recipients=({"type": "x25519", "key_id": "k", "ephemeral": "AAAA", "wrapped": "AAAA"},),
        sealed_details=seal_details(DATA_KEY, details),
        flags=("unknown-device",),
    )
    encoded = encode_manifest(manifest)
    return encoded, json.loads(encoded)


def _replace_fields(doc: Any, changes: list[tuple[int, str, Any]]) -> Any:
    """Replace, delete or add fields of the document and of the objects nested in it."""
    objects = [doc] + [value for value in doc.values() if isinstance(value, dict)]
    for pick, action, value in changes:
        target = objects[pick % len(objects)]
        keys = sorted(target)
        if action == "replace" and keys:
            target[keys[pick % len(keys)]] = value
        elif action == "delete" and keys:
            del target[keys[pick % len(keys)]]
        else:
            target[f"extra-{pick}"] = value
    return doc


FIELD_CHANGES = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=1000), st.sampled_from(["replace", "delete", "add"]), JSON_VALUES
    ),
    min_size=1,
    max_size=4,
)


def _decodes_or_integrity_error(decode: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return _timed(lambda: decode(data))
    except IntegrityError as err:
        assert str(err)
        return None


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=300)
@given(changes=FIELD_CHANGES)
@pytest.mark.slow
def test_a_manifest_with_fields_replaced_decodes_or_is_refused_as_damaged(
    changes: list[tuple[int, str, Any]],
) -> None:
    _, doc = _manifest()
    damaged = json.dumps(_replace_fields(json.loads(json.dumps(doc)), changes)).encode()
    manifest = _decodes_or_integrity_error(decode_manifest, damaged)
    if manifest is not None:
        assert isinstance(manifest, Manifest) and manifest.evidence_id.startswith("ev-")


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=300)
@given(edits=EDITS, cut=CUTS)
def test_a_manifest_with_bytes_damaged_decodes_or_is_refused_as_damaged(
    edits: list[tuple[str, int, bytes]], cut: int | None
) -> None:
    encoded, _ = _manifest()
    _decodes_or_integrity_error(decode_manifest, _damage(encoded, edits, cut))


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=150)
@given(edits=EDITS)
def test_sealed_details_with_damaged_ciphertext_are_refused_as_damaged(
    edits: list[tuple[str, int, bytes]],
) -> None:
    from evidence.manifest import open_details

    encoded, doc = _manifest()
    sealed = base64.b64decode(doc["sealed_details"])
    doc = json.loads(encoded) | {"sealed_details": base64.b64encode(_damage(sealed, edits, None)).decode()}
    manifest = decode_manifest(json.dumps(doc).encode())
    details = _decodes_or_integrity_error(lambda _: open_details(DATA_KEY, manifest), b"")
    assert details is None or details.sha256 == "0" * 64


@functools.cache
def _custody_record() -> tuple[bytes, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        from evidence.signing import generate_signing_key

        generate_signing_key(Path(folder))
        signer = SigningKey.from_file(Path(folder) / "signing.key")
    event = new_event(
        None,
        evidence_id=EVIDENCE_ID,
        seq=0,
        type="ingest",
        at=datetime(2026, 11, 25, tzinfo=UTC),
        actor="station-1",
        role="ingest-station",
        station="station-1",
        details={"size": 10},
        signer=signer,
    )
    encoded = encode_event(event)
    return encoded, json.loads(encoded)


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=300)
@given(changes=FIELD_CHANGES, edits=EDITS, cut=CUTS)
@pytest.mark.slow
def test_a_damaged_custody_record_decodes_or_is_refused_as_damaged(
    changes: list[tuple[int, str, Any]], edits: list[tuple[str, int, bytes]], cut: int | None
) -> None:
    encoded, doc = _custody_record()
    replaced = json.dumps(_replace_fields(json.loads(json.dumps(doc)), changes)).encode()
    _decodes_or_integrity_error(decode_event, replaced)
    _decodes_or_integrity_error(decode_event, _damage(encoded, edits, cut))


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=300)
@given(record=st.dictionaries(st.sampled_from([*MediaInfo.__dataclass_fields__, "other"]), JSON_VALUES))
@pytest.mark.slow
def test_a_media_record_from_sealed_details_loads_or_is_refused_clearly(record: dict[str, Any]) -> None:
    base = {"media_type": "image/jpeg", "kind": "photo"}
    for candidate in (record, base | record):
        info = _only_clear_errors(lambda candidate=candidate: MediaInfo.from_dict(candidate))
        assert info is None or isinstance(info, MediaInfo)


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=200)
@given(stanza=st.dictionaries(st.sampled_from(["type", "key_id", "epk", "wrapped", "x"]), JSON_VALUES))
def test_damaged_key_stanzas_are_refused_clearly(stanza: dict[str, Any]) -> None:
    identity = _identity()
    honest = identity.recipient.wrap(DATA_KEY)
    for candidate in (stanza, dict(honest) | stanza):
        _only_clear_errors(lambda candidate=candidate: unwrap_data_key([candidate], [identity]))


@functools.cache
def _identity() -> X25519Identity:
    with tempfile.TemporaryDirectory() as folder:
        from evidence.keyring import generate_identity

        generate_identity(Path(folder))
        return X25519Identity.from_file(Path(folder) / "vault-identity.key")


# ------------------------------------------------------------------------------------------------
# Documents no writer produces


def _with(document: tuple[bytes, dict[str, Any]], **fields: Any) -> bytes:
    return json.dumps(json.loads(document[0]) | fields).encode()


def _nested(depth: int) -> bytes:
    return b'{"format": ' + b"[" * depth + b"]" * depth + b"}"


def _odd_documents() -> Iterator[Any]:
    for text in (b"[]", b'"a string"', b"42", b"null", b"true"):
        name = text.decode().strip('"').replace(" ", "-")
        yield pytest.param(decode_manifest, lambda t=text: t, id=f"manifest-{name}")
        yield pytest.param(decode_event, lambda t=text: t, id=f"custody-{name}")
    depth = sys.getrecursionlimit() * 2
    yield pytest.param(
        decode_manifest,
        lambda: _nested(depth),
        id="manifest-too-deep",
    )
    yield pytest.param(
        decode_event,
        lambda: _nested(depth),
        id="custody-too-deep",
    )
    yield pytest.param(
        decode_manifest,
        lambda: _with(_manifest(), size=float("inf")),
        id="manifest-size-infinity",
    )
    yield pytest.param(
        decode_event,
        lambda: _with(_custody_record(), seq=float("inf")),
        id="custody-seq-infinity",
    )
    yield pytest.param(decode_manifest, lambda: _with(_manifest(), size=float("nan")), id="manifest-size-nan")
    yield pytest.param(decode_event, lambda: _with(_custody_record(), seq=float("nan")), id="custody-seq-nan")
    yield pytest.param(decode_manifest, lambda: b"\xff\xfe{}", id="manifest-not-utf8")
    yield pytest.param(decode_event, lambda: b"\xff\xfe{}", id="custody-not-utf8")


@pytest.mark.parametrize(("decode", "document"), list(_odd_documents()))
def test_documents_no_writer_produces_are_refused_as_damaged(
    decode: Callable[[bytes], Any], document: Callable[[], bytes]
) -> None:
    with pytest.raises(IntegrityError):
        decode(document())


def test_sealed_details_that_are_not_base64_are_refused_as_damaged() -> None:
    from evidence.manifest import open_details

    manifest = decode_manifest(_with(_manifest(), sealed_details="abc"))
    with pytest.raises(IntegrityError):
        open_details(DATA_KEY, manifest)
