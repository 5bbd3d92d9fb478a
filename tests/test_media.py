"""A docked camera holds photos, videos and whatever else: each file is recognised by its bytes, its
capture metadata read when it can be, and a damaged file is flagged, never a crash.

The real-camera corpus (../shared/corpus) is the reference: photo metadata is checked against
exifread's own expected output for those files (``exif-samples.dump``), decoded independently here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import tempfile
import tracemalloc
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageStat

from evidence.errors import InvalidInput
from evidence.media import (
    DETECT_HEAD_BYTES,
    GeoPoint,
    MediaInfo,
    detect_media_type,
    extract_media_info,
    make_thumbnail,
)
from evidence.media.video import parse_iso6709
from tests.conftest import CORPUS
from tests.factories import (
    DEFAULT_TAKEN,
    DEVICE_FOLDER,
    make_device,
    make_jpeg,
    make_mp4,
    random_file,
    video_codec,
)

KINDS = {"photo", "video", "audio", "document", "other"}

# --------------------------------------------------------------------------------------------------
# The corpus and exifread's expected output for it


def _manifest_rows() -> list[dict[str, str]]:
    if not (CORPUS / "MANIFEST.tsv").exists():
        return []
    with (CORPUS / "MANIFEST.tsv").open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


MANIFEST = _manifest_rows()
CORPUS_FILES = [row["path"] for row in MANIFEST]


def _parse_dump() -> dict[str, dict[str, str]]:
    """``exif-samples.dump`` as {corpus path: {"IFD Tag": printable value}}; headers name the sample
    collection's own paths, which MANIFEST.tsv maps to ours."""
    if not (CORPUS / "exif-samples.dump").exists():
        return {}
    ours = {
        row["source_path"]: row["path"] for row in MANIFEST if row["source_repo"] == "ianare/exif-samples"
    }
    entries: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    tag_line = re.compile(r"^(?P<tag>.+?) \((?P<type>[A-Za-z ]+)\): ?(?P<value>.*)$")
    for line in (CORPUS / "exif-samples.dump").read_text(encoding="utf-8").splitlines():
        if line.startswith("Opening: "):
            original = line.removeprefix("Opening: ").split("/", 1)[1]
            current = entries.setdefault(ours[original], {}) if original in ours else None
        elif current is not None and (match := tag_line.match(line)):
            current[match["tag"]] = match["value"].strip()
    return entries


DUMP = _parse_dump()
ORIENTATION_NAMES = {
    "Horizontal (normal)": 1,
    "Mirrored horizontal": 2,
    "Rotated 180": 3,
    "Mirrored vertical": 4,
    "Mirrored horizontal then rotated 90 CCW": 5,
    "Rotated 90 CW": 6,
    "Mirrored horizontal then rotated 90 CW": 7,
    "Rotated 90 CCW": 8,
}
# No exclusions were needed: every sample with a dump entry agrees, including the deliberately broken
# ones (corrupted.jpg, invalid/*, tests/30-type_error, 35-empty, 36-memory_error, 45-gps_ifd, 87_OSError).
DUMP_EXCLUSIONS: dict[str, str] = {}


def _dump_degrees(value: str, ref: str | None) -> float:
    parts = [Fraction(part.strip()) for part in value.strip("[]").split(",")]
    degrees = sum(part / 60**index for index, part in enumerate(parts))
    return float(-degrees if ref in ("S", "W") else degrees)


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(DUMP))
def test_photo_metadata_matches_exifread_reference(corpus: Path, name: str) -> None:
    if name in DUMP_EXCLUSIONS:
        pytest.skip(DUMP_EXCLUSIONS[name])
    expected = DUMP[name]
    info = extract_media_info(corpus / name)

    assert info.kind == "photo"
    assert info.make == expected.get("Image Make")
    assert info.model == expected.get("Image Model")

    taken = (
        expected.get("EXIF DateTimeOriginal")
        or expected.get("Image DateTimeOriginal")
        or expected.get("EXIF DateTimeDigitized")
    )
    if taken:
        assert info.recorded_at is not None, f"dump has {taken!r}"
        assert info.recorded_at.strftime("%Y:%m:%d %H:%M:%S") == taken
        offset = expected.get("EXIF OffsetTimeOriginal")
        if offset:
            assert info.recorded_at.isoformat().endswith(offset), f"dump has offset {offset!r}"
        else:
            assert info.recorded_at.utcoffset() is None
    else:
        assert info.recorded_at is None

    if "GPS GPSLatitude" in expected and "GPS GPSLongitude" in expected:
        latitude = _dump_degrees(expected["GPS GPSLatitude"], expected.get("GPS GPSLatitudeRef"))
        longitude = _dump_degrees(expected["GPS GPSLongitude"], expected.get("GPS GPSLongitudeRef"))
        assert info.location is not None
        assert info.location.latitude == pytest.approx(latitude, abs=1e-6)
        assert info.location.longitude == pytest.approx(longitude, abs=1e-6)
    else:
        assert info.location is None

    if "Image Orientation" in expected:
        assert info.orientation == ORIENTATION_NAMES[expected["Image Orientation"]]
    serial = expected.get("EXIF BodySerialNumber") or expected.get("MakerNote SerialNumber")
    assert info.serial == serial


def test_dump_reference_covers_the_corpus_photos() -> None:
    # The parametrised test above must not silently shrink: most photos have a reference entry.
    if not DUMP:
        pytest.skip("../shared/corpus is not present")
    photos = [path for path in CORPUS_FILES if path.startswith("photos/")]
    assert len(DUMP) >= len(photos) - 3
    assert {"photos/jpg_gps_DSCN0012.jpg", "photos/jpg_Kodak_CX7530.jpg"} <= DUMP.keys()


@pytest.mark.corpus
def test_heic_from_an_iphone_gives_camera_time_zone_and_position(corpus: Path) -> None:
    info = extract_media_info(corpus / "photos" / "heic_IMG_5195.HEIC")
    assert (info.media_type, info.kind) == ("image/heic", "photo")
    assert (info.make, info.model) == ("Apple", "iPhone 11 Pro Max")
    assert info.recorded_at == datetime(2021, 4, 11, 15, 47, 53, tzinfo=timezone(timedelta(hours=-5)))
    assert info.location is not None
    assert info.location.latitude == pytest.approx(39 + 3 / 60 + (121 / 25) / 3600, abs=1e-9)
    assert info.location.longitude == pytest.approx(-(94 + 17 / 60 + (979 / 50) / 3600), abs=1e-9)
    assert (info.width, info.height) == (2566, 3313)
    assert info.metadata_error is None


# --------------------------------------------------------------------------------------------------
# Every file on a device is recognised by content

EXPECTED_TYPES = {
    "exiftool_ASF.wmv": ("video/x-ms-asf", "video"),
    "exiftool_Apple.jpg": ("image/jpeg", "photo"),
    "exiftool_BMP.bmp": ("image/bmp", "photo"),
    "exiftool_CanonRaw.cr3": ("image/x-canon-cr3", "photo"),
    "exiftool_DNG.dng": ("image/tiff", "photo"),
    "exiftool_DV.dv": ("video/x-dv", "video"),
    "exiftool_GIF.gif": ("image/gif", "photo"),
    "exiftool_GoPro.jpg": ("image/jpeg", "photo"),
    "exiftool_ISO.iso": ("application/x-iso9660-image", "other"),
    "exiftool_JSON.json": ("application/json", "document"),
    "exiftool_M2TS.mts": ("video/mp2t", "video"),
    "exiftool_MXF.mxf": ("application/mxf", "video"),
    "exiftool_Motorola.jpg": ("image/jpeg", "photo"),
    "exiftool_Nikon.nef": ("image/tiff", "photo"),
    "exiftool_PDF.pdf": ("application/pdf", "document"),
    "exiftool_PNG.png": ("image/png", "photo"),
    "exiftool_Panasonic.rw2": ("image/x-panasonic-rw2", "photo"),
    "exiftool_QuickTime.heic": ("image/heic", "photo"),
    "exiftool_QuickTime.mov": ("video/quicktime", "video"),
    "exiftool_RIFF.avi": ("video/x-msvideo", "video"),
    "exiftool_Unknown.jpg": ("image/jpeg", "photo"),
    "exiftool_Writer.jpg": ("image/jpeg", "photo"),
}
PHOTO_TYPES_BY_SUFFIX = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
}


def _expected_type(relative: str) -> tuple[str, str]:
    path = Path(relative)
    if path.parent.name == "other":
        assert path.name in EXPECTED_TYPES, f"new corpus file {relative}: add its expected type"
        return EXPECTED_TYPES[path.name]
    return PHOTO_TYPES_BY_SUFFIX[path.suffix.lower()], "photo"


@pytest.mark.corpus
@pytest.mark.parametrize("relative", CORPUS_FILES)
def test_every_corpus_file_is_recognised_by_content(corpus: Path, relative: str, tmp_path: Path) -> None:
    expected = _expected_type(relative)
    info = extract_media_info(corpus / relative)
    assert (info.media_type, info.kind) == expected
    assert MediaInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info

    # The same bytes under a misleading name are still what they are.
    disguise = tmp_path / ("clip.mp4" if expected[1] != "video" else "photo.jpg")
    disguise.write_bytes((corpus / relative).read_bytes())
    assert (extract_media_info(disguise).media_type, extract_media_info(disguise).kind) == expected
    with (corpus / relative).open("rb") as handle:
        assert detect_media_type(handle.read(DETECT_HEAD_BYTES)) == expected


@pytest.mark.corpus
def test_corpus_videos_give_container_facts(corpus: Path) -> None:
    mov = extract_media_info(corpus / "other" / "exiftool_QuickTime.mov")
    assert mov.recorded_at == datetime(2005, 8, 11, 14, 3, 54, tzinfo=UTC)  # QuickTime stores UTC
    assert (mov.width, mov.height, mov.video_codec, mov.audio_codec) == (320, 240, "mjpeg", "pcm_u8")
    assert mov.frame_rate == pytest.approx(30)
    assert mov.duration_seconds == pytest.approx(0.43, abs=0.01)

    dv = extract_media_info(corpus / "other" / "exiftool_DV.dv")
    assert (dv.width, dv.height, dv.video_codec, dv.frame_rate) == (720, 576, "dvvideo", 25.0)  # PAL

    avchd = extract_media_info(corpus / "other" / "exiftool_M2TS.mts")
    assert (avchd.width, avchd.height, avchd.video_codec, avchd.audio_codec) == (1920, 1080, "h264", "ac3")

    avi = extract_media_info(corpus / "other" / "exiftool_RIFF.avi")
    assert avi.recorded_at == datetime(2003, 3, 10, 15, 4, 43)  # AVI's IDIT is local time: naive
    assert avi.video_codec == "mjpeg" and avi.frame_rate == pytest.approx(15, abs=0.01)


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("other/exiftool_ASF.wmv", "container unreadable"),
        ("other/exiftool_CanonRaw.cr3", "no EXIF"),
        ("photos/jpg_tests_30-type_error.jpg", "EXIF damaged"),
        ("photos/jpg_tests_45-gps_ifd.jpg", "EXIF damaged"),
    ],
)
def test_unreadable_metadata_is_explained(corpus: Path, relative: str, reason: str) -> None:
    info = extract_media_info(corpus / relative)
    assert info.metadata_error is not None and reason in info.metadata_error
    assert str(corpus) not in info.metadata_error  # records name the file, not the station's paths


@pytest.mark.corpus
def test_parallel_ingest_workers_get_the_same_records(corpus: Path) -> None:
    # exifread reports damage through a shared logger; each thread must get only its own file's warnings.
    paths = [corpus / relative for relative in CORPUS_FILES] * 2
    sequential = [extract_media_info(path) for path in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(extract_media_info, paths))
    assert parallel == sequential


@pytest.mark.corpus
def test_ffmpeg_and_exifread_stay_quiet_on_damaged_files(
    corpus: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    for relative in CORPUS_FILES:
        info = extract_media_info(corpus / relative)
        make_thumbnail(corpus / relative, info)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


# --------------------------------------------------------------------------------------------------
# Broken, empty and random input


def _broken_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    jpeg = make_jpeg(tmp_path / "source.jpg").read_bytes()
    mp4 = make_mp4(tmp_path / "source.mp4").read_bytes()
    cases = {
        "jpeg-100-bytes": (jpeg[:100], "image/jpeg"),
        "jpeg-first-half": (jpeg[: len(jpeg) // 2], "image/jpeg"),
        "mp4-100-bytes": (mp4[:100], "video/mp4"),
        "mp4-first-half": (mp4[: len(mp4) // 2], "video/mp4"),
        "random": (random.Random(7).randbytes(50_000), "application/octet-stream"),
        "empty": (b"", "application/octet-stream"),
    }
    out = {}
    for name, (content, media_type) in cases.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(content)
        out[name] = (path, media_type)
    empty_mp4 = tmp_path / "empty.mp4"
    empty_mp4.write_bytes(b"")
    out["empty.mp4"] = (empty_mp4, "application/octet-stream")
    return out


def test_broken_files_are_flagged_not_fatal(tmp_path: Path) -> None:
    for name, (path, media_type) in _broken_inputs(tmp_path).items():
        info = extract_media_info(path)
        assert info.media_type == media_type, name
        assert info.metadata_error, f"{name}: damage not reported"
        assert make_thumbnail(path, info) is None, name


def test_truncated_mp4_with_index_in_front_is_flagged(tmp_path: Path) -> None:
    # Cameras write the index first ("faststart"), so a cut-short copy still opens; the index gives it away.
    source = make_mp4(tmp_path / "source.mp4", seconds=2)
    faststart = tmp_path / "faststart.mp4"
    with (
        av.open(str(source)) as reader,
        av.open(str(faststart), "w", options={"movflags": "faststart"}) as out,
    ):
        stream = out.add_stream_from_template(reader.streams.video[0])
        for packet in reader.demux(reader.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    assert extract_media_info(faststart).metadata_error is None
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[: faststart.stat().st_size * 2 // 3])
    info = extract_media_info(cut)
    assert info.kind == "video" and info.metadata_error and "truncated" in info.metadata_error


def _behind_app2_segments(source: Path, out: Path, *, segments: int, body_size: int) -> Path:
    """``source`` with ``segments`` APP2 segments (ICC profile chunks, as editors and phones write
    them) between its start of image and the rest of its headers, EXIF included."""
    chunk = b"ICC_PROFILE\x00" + random.Random(5).randbytes(max(body_size - 12, 0))
    segment = b"\xff\xe2" + (len(chunk) + 2).to_bytes(2, "big") + chunk
    original = source.read_bytes()
    out.write_bytes(original[:2] + segment * segments + original[2:])
    return out


def test_exif_behind_megabytes_of_other_segments_is_read_or_flagged(tmp_path: Path) -> None:
    """A photo is never stored without its camera, model and time and without a flag saying so."""
    source = make_jpeg(tmp_path / "source.jpg", make="ACME", model="BWC-1")
    behind_13_mib = _behind_app2_segments(source, tmp_path / "icc.jpg", segments=208, body_size=65_533)
    assert behind_13_mib.stat().st_size > 13 * 1024 * 1024

    info = extract_media_info(behind_13_mib)

    assert (info.make, info.model, info.recorded_at) == ("ACME", "BWC-1", DEFAULT_TAKEN)
    assert info.metadata_error is None and info.width == 640

    # behind more segments than are searched: not read, and said so (stored flagged metadata-unreadable)
    too_far = _behind_app2_segments(source, tmp_path / "far.jpg", segments=5000, body_size=0)
    info = extract_media_info(too_far)
    assert info.metadata_error and "EXIF not found" in info.metadata_error


def test_missing_file_is_an_os_error_not_a_flag(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        extract_media_info(tmp_path / "gone.jpg")
    with pytest.raises(FileNotFoundError):
        make_thumbnail(tmp_path / "gone.jpg", MediaInfo("image/jpeg", "photo"))


def test_large_files_are_not_read_into_memory(tmp_path: Path) -> None:
    filler = random_file(tmp_path / "filler", 48 * 1024 * 1024)
    for magic in (
        b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00",
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",
    ):
        path = tmp_path / "big.bin"
        with path.open("wb") as out, filler.open("rb") as source:
            out.write(magic)
            while chunk := source.read(1024 * 1024):
                out.write(chunk)
        tracemalloc.start()
        try:
            info = extract_media_info(path)
            make_thumbnail(path, info)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert info.metadata_error
        assert peak < 4 * 1024 * 1024, f"{magic[:4]!r}: peak {peak} bytes"


MAGICS = [
    b"",
    b"\xff\xd8\xff\xe1",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    b"II*\x00\x08\x00\x00\x00",
    b"MM\x00*\x00\x00\x00\x08",
    b"\x89PNG\r\n\x1a\n",
    b"\x00\x00\x00\x18ftypisom",
    b"\x00\x00\x00\x18ftypheic",
    b"\x00\x00\x00\x18ftypcrx ",
    b"\x00\x00\x00\x08moov",
    b"RIFF\x00\x10\x00\x00AVI ",
    b"\x1a\x45\xdf\xa3",
    bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"),
    bytes.fromhex("060e2b34020501010d01020101"),
    b"\x1f\x07\x00\xbf",
    b"G",
    b"FLV\x01",
    b"ID3",
]


# Pillow warns while opening a damaged TIFF; outside pytest evidence.media filters that (exifread
# reports the damage into the record instead), but pytest restores its own warning filters per test.
@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(magic=st.sampled_from(MAGICS), body=st.binary(max_size=3000))
def test_garbage_behind_any_signature_never_raises(magic: bytes, body: bytes) -> None:
    content = magic + body
    media_type, kind = detect_media_type(content)
    assert media_type and kind in KINDS
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "item"
        path.write_bytes(content)
        info = extract_media_info(path)
        assert info.media_type == media_type and info.kind == kind
        thumbnail = make_thumbnail(path, info, max_side=32)
        assert thumbnail is None or thumbnail.startswith(b"\xff\xd8")


@settings(max_examples=300, deadline=None)
@given(head=st.binary(max_size=DETECT_HEAD_BYTES))
def test_detection_of_random_bytes_never_raises(head: bytes) -> None:
    media_type, kind = detect_media_type(head)
    assert "/" in media_type and kind in KINDS


# --------------------------------------------------------------------------------------------------
# Detection rules on synthetic heads (formats the corpus lacks, and the edges of the ones it has)


def _ts(pitch: int, offset: int, packets: int = 4) -> bytes:
    packet = bytearray(pitch)
    packet[offset] = 0x47
    return bytes(packet) * packets


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00" * 64


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (_ts(188, 0), ("video/mp2t", "video")),
        (_ts(192, 4), ("video/mp2t", "video")),
        (_ftyp(b"heic", b"mif1", b"heic"), ("image/heic", "photo")),
        (_ftyp(b"mif1", b"mif1", b"heic"), ("image/heic", "photo")),
        (_ftyp(b"mif1", b"mif1", b"avif"), ("image/avif", "photo")),
        (_ftyp(b"avif", b"mif1"), ("image/avif", "photo")),
        (_ftyp(b"mif1", b"mif1"), ("image/heif", "photo")),
        (_ftyp(b"crx ", b"isom"), ("image/x-canon-cr3", "photo")),
        (_ftyp(b"qt  ", b"qt  "), ("video/quicktime", "video")),
        (_ftyp(b"isom", b"mp41"), ("video/mp4", "video")),
        (_ftyp(b"XAVC", b"mp42"), ("video/mp4", "video")),
        (_ftyp(b"3gp5", b"isom"), ("video/3gpp", "video")),
        (_ftyp(b"M4A ", b"isom"), ("audio/mp4", "audio")),
        (b"\x00\x00\x00\x08wide\x00\x00\x10\x00mdat", ("video/quicktime", "video")),
        (b"\x00\x00\x00\x00mdat", ("video/quicktime", "video")),
        (b"RIFF\x00\x00\x00\x00AVI LIST", ("video/x-msvideo", "video")),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", ("audio/wav", "audio")),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ("image/webp", "photo")),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", ("video/webm", "video")),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", ("video/x-matroska", "video")),
        (b"FLV\x01\x05\x00\x00\x00\x09", ("video/x-flv", "video")),
        (b"\x1f\x07\x00\x3f" + b"\xff" * 76, ("video/x-dv", "video")),
        (b"\x00\x00\x01\xba\x44\x00\x04", ("video/mpeg", "video")),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", ("audio/mpeg", "audio")),
        (b"\xff\xfb\x90\x64" + b"\x00" * 100, ("audio/mpeg", "audio")),
        (b"\xff\xf1\x50\x80" + b"\x00" * 100, ("audio/aac", "audio")),
        (b"fLaC\x00\x00\x00\x22", ("audio/flac", "audio")),
        (b"II*\x00\x10\x00\x00\x00CR\x02\x00", ("image/x-canon-cr2", "photo")),
        (b"MM\x00*\x00\x00\x00\x08", ("image/tiff", "photo")),
        (b"IIRO\x08\x00\x00\x00", ("image/x-olympus-orf", "photo")),
        (b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00", ("image/bmp", "photo")),
        (b"%PDF-1.7\n", ("application/pdf", "document")),
        (b'  [{"a": 1}]', ("application/json", "document")),
        (b"<?xml version='1.0'?><a/>", ("application/xml", "document")),
        ("Officer's notes: caf\u00e9 at 21:05".encode(), ("text/plain", "document")),
        (b"\x00" * 0x8001 + b"CD001\x01", ("application/x-iso9660-image", "other")),
        (b"PK\x03\x04\x14\x00", ("application/zip", "other")),
        (b"", ("application/octet-stream", "other")),
        (b"\x00\x01\x02\x03\xfe\xfd" * 100, ("application/octet-stream", "other")),
        (b"G" + b"\x00" * 400, ("application/octet-stream", "other")),  # one sync byte is chance
        (b"BM\x00\x01\x02" + b"\x00" * 20, ("application/octet-stream", "other")),  # "BM" alone is not BMP
    ],
)
def test_detection_signatures(head: bytes, expected: tuple[str, str]) -> None:
    assert detect_media_type(head) == expected


def test_text_detection_tolerates_a_character_cut_at_the_end_of_the_head() -> None:
    head = ("é" * 3000).encode()[:4095]  # ends half-way through a two-byte character
    assert detect_media_type(head) == ("text/plain", "document")


# --------------------------------------------------------------------------------------------------
# Factories round-trip through the extractor


def test_factory_jpeg_metadata_round_trips(tmp_path: Path) -> None:
    info = extract_media_info(make_jpeg(tmp_path / "a.jpg"))
    assert (info.media_type, info.kind) == ("image/jpeg", "photo")
    assert (info.make, info.model, info.serial) == ("ACME", "BWC-1", "SN123")
    assert info.recorded_at == DEFAULT_TAKEN and info.recorded_at.utcoffset() == timedelta(hours=1)
    assert info.location is not None
    assert info.location.latitude == pytest.approx(51.501, abs=1e-6)
    assert info.location.longitude == pytest.approx(-0.1419, abs=1e-6)
    assert (info.width, info.height) == (640, 480)
    assert info.metadata_error is None


def test_factory_jpeg_other_hemispheres_and_missing_fields(tmp_path: Path) -> None:
    sydney = extract_media_info(
        make_jpeg(
            tmp_path / "s.jpg", gps=(-33.8568, 151.2153), taken=datetime(2025, 1, 2, 3, 4, 5), size=(64, 48)
        )
    )
    assert sydney.location is not None
    assert sydney.location.latitude == pytest.approx(-33.8568, abs=1e-6)
    assert sydney.location.longitude == pytest.approx(151.2153, abs=1e-6)
    assert sydney.recorded_at == datetime(2025, 1, 2, 3, 4, 5) and sydney.recorded_at.tzinfo is None
    bare = extract_media_info(
        make_jpeg(tmp_path / "b.jpg", serial=None, gps=None, taken=None, make=None, size=(64, 48))
    )
    assert (bare.make, bare.serial, bare.location, bare.recorded_at) == (None, None, None, None)
    assert bare.model == "BWC-1" and bare.metadata_error is None


def test_factory_jpegs_differ_by_seed_and_resist_compression(tmp_path: Path) -> None:
    first = make_jpeg(tmp_path / "1.jpg", seed=1).read_bytes()
    again = make_jpeg(tmp_path / "1b.jpg", seed=1).read_bytes()
    second = make_jpeg(tmp_path / "2.jpg", seed=2).read_bytes()
    assert first == again and first != second
    assert len(zlib.compress(first)) > 0.9 * len(first)


def test_factory_mp4_round_trips(tmp_path: Path) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    path = make_mp4(
        tmp_path / "v.mp4",
        seconds=2.0,
        size=(176, 144),
        fps=15,
        creation_time=created,
        location="+51.5010-000.1419/",
    )
    info = extract_media_info(path)
    assert (info.media_type, info.kind) == ("video/mp4", "video")
    assert info.duration_seconds == pytest.approx(2.0, abs=0.1)
    assert info.frame_rate == pytest.approx(15)
    assert info.video_codec == {"libx264": "h264", "mpeg4": "mpeg4"}[video_codec()]
    assert (info.width, info.height) == (176, 144)
    assert info.recorded_at == created and info.recorded_at.tzinfo is not None
    assert info.location == GeoPoint(51.501, -0.1419)
    assert info.audio_codec is None and info.metadata_error is None
    assert make_mp4(tmp_path / "w.mp4").read_bytes() != make_mp4(tmp_path / "x.mp4", seed=1).read_bytes()


def test_factory_device_looks_like_a_docked_camera(tmp_path: Path) -> None:
    root = make_device(tmp_path / "BWC-0042", photos=3, videos=2, seed=4)
    files = sorted((root / DEVICE_FOLDER).iterdir())
    assert [f.name for f in files] == [
        "IMG_0001.JPG",
        "IMG_0002.JPG",
        "IMG_0003.JPG",
        "VID_0001.MP4",
        "VID_0002.MP4",
    ]
    assert len({hashlib.sha256(f.read_bytes()).hexdigest() for f in files}) == 5
    infos = [extract_media_info(f) for f in files]
    assert [i.kind for i in infos] == ["photo"] * 3 + ["video"] * 2
    assert {i.serial for i in infos[:3]} == {"BWC-0042"}
    times = [i.recorded_at for i in infos]
    assert all(t is not None for t in times)
    assert times == sorted(t for t in times if t is not None)
    # A file a test makes by hand with a small seed never duplicates a device file.
    hand_made = make_jpeg(tmp_path / "x.jpg", size=(320, 240), serial="BWC-0042").read_bytes()
    assert hand_made not in {f.read_bytes() for f in files}


def test_random_file_is_exact_deterministic_and_incompressible(tmp_path: Path) -> None:
    size = 3 * 1024 * 1024 + 17
    first = random_file(tmp_path / "a", size, seed=1).read_bytes()
    assert len(first) == size
    assert first == random_file(tmp_path / "b", size, seed=1).read_bytes()
    assert first != random_file(tmp_path / "c", size, seed=2).read_bytes()
    assert len(zlib.compress(first[:1_000_000])) > 1_000_000
    assert random_file(tmp_path / "empty", 0).stat().st_size == 0


# --------------------------------------------------------------------------------------------------
# Thumbnails


def _picture(data: bytes | None) -> Image.Image:
    assert data is not None and data.startswith(b"\xff\xd8")
    picture = Image.open(io.BytesIO(data))
    assert picture.format == "JPEG"
    return picture


def test_thumbnails_of_factory_photo_and_video(tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "p.jpg", size=(1200, 800))
    picture = _picture(make_thumbnail(photo, extract_media_info(photo)))
    assert picture.size == (320, 213)
    video = make_mp4(tmp_path / "v.mp4", size=(320, 240), seconds=2)
    picture = _picture(make_thumbnail(video, extract_media_info(video), max_side=100))
    assert picture.size == (100, 75)


def test_thumbnail_of_a_video_shot_sideways_is_upright(tmp_path: Path) -> None:
    video = make_mp4(tmp_path / "v.mp4", size=(160, 120), rotation=90)
    info = extract_media_info(video)
    assert (info.width, info.height) == (160, 120)  # stored as encoded
    picture = _picture(make_thumbnail(video, info, max_side=80))
    assert picture.size == (60, 80)


def test_thumbnail_is_upright_for_a_sideways_photo(tmp_path: Path) -> None:
    sideways = make_jpeg(tmp_path / "s.jpg", size=(400, 300), orientation=6)
    info = extract_media_info(sideways)
    assert info.orientation == 6 and (info.width, info.height) == (400, 300)  # stored as shot
    picture = _picture(make_thumbnail(sideways, info, max_side=200))
    assert picture.size == (150, 200)


def test_thumbnail_rejects_a_nonsense_size(tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "p.jpg", size=(64, 48))
    with pytest.raises(InvalidInput):
        make_thumbnail(photo, extract_media_info(photo), max_side=0)


def test_documents_and_unknown_files_have_no_thumbnail(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert make_thumbnail(text, extract_media_info(text)) is None


@pytest.mark.corpus
def test_corpus_thumbnails_heic_and_every_orientation(corpus: Path) -> None:
    heic = corpus / "photos" / "heic_IMG_5195.HEIC"
    picture = _picture(make_thumbnail(heic, extract_media_info(heic)))
    assert max(picture.size) == 320 and picture.height > picture.width

    # The orientation samples are one scene stored eight ways: upright, they must all look alike.
    for family, reference_name in (("portrait", "portrait_1"), ("landscape", "landscape_2")):
        reference = _thumbnail_grey(corpus, reference_name)
        assert (reference.height > reference.width) == (family == "portrait")
        mirrored = reference.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        assert _difference(reference, mirrored) > 25  # the comparison can tell a wrong turn
        for path in sorted((corpus / "photos").glob(f"jpg_orientation_{family}_*.jpg")):
            upright = _thumbnail_grey(corpus, path.stem.removeprefix("jpg_orientation_"))
            assert upright.size == reference.size, path.name
            assert _difference(upright, reference) < 20, path.name


def _thumbnail_grey(corpus: Path, name: str) -> Image.Image:
    path = corpus / "photos" / f"jpg_orientation_{name}.jpg"
    return _picture(make_thumbnail(path, extract_media_info(path), max_side=64)).convert("L")


def _difference(first: Image.Image, second: Image.Image) -> float:
    return float(ImageStat.Stat(ImageChops.difference(first, second)).mean[0])


@pytest.mark.corpus
@pytest.mark.parametrize(
    "relative", ["other/exiftool_CanonRaw.cr3", "other/exiftool_ASF.wmv", "other/exiftool_PDF.pdf"]
)
def test_no_thumbnail_when_no_picture_can_be_made(corpus: Path, relative: str) -> None:
    path = corpus / relative
    assert make_thumbnail(path, extract_media_info(path)) is None


# --------------------------------------------------------------------------------------------------
# The record itself


def test_media_info_survives_json_and_rejects_nonsense() -> None:
    info = MediaInfo(
        media_type="video/mp4",
        kind="video",
        recorded_at=datetime(2026, 3, 14, 20, 5, 9, tzinfo=UTC),
        width=1920,
        height=1080,
        duration_seconds=12.5,
        location=GeoPoint(51.5, -0.12, 11.0),
    )
    assert MediaInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert MediaInfo.from_dict({**info.to_dict(), "added_later": 1}) == info
    with pytest.raises(InvalidInput):
        MediaInfo.from_dict({"media_type": "video/mp4", "kind": "film"})
    with pytest.raises(InvalidInput):
        MediaInfo.from_dict({"media_type": "video/mp4", "kind": "video", "recorded_at": "yesterday"})
    with pytest.raises(InvalidInput):
        GeoPoint(91.0, 0.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+51.5074-000.1278+012.000/", GeoPoint(51.5074, -0.1278, 12.0)),
        ("+40.7128-074.0060/", GeoPoint(40.7128, -74.006)),
        ("-33.8568+151.2153", GeoPoint(-33.8568, 151.2153)),
        ("+4042.77-07400.36/", GeoPoint(40 + 42.77 / 60, -(74 + 0.36 / 60))),
        (
            "+404246.2-0740021.6+010CRSWGS_84/",
            GeoPoint(40 + 42 / 60 + 46.2 / 3600, -(74 + 21.6 / 3600), 10.0),
        ),
    ],
)
def test_iso6709_locations(text: str, expected: GeoPoint) -> None:
    point = parse_iso6709(text)
    assert point.latitude == pytest.approx(expected.latitude, abs=1e-9)
    assert point.longitude == pytest.approx(expected.longitude, abs=1e-9)
    assert point.altitude_m == expected.altitude_m


@pytest.mark.parametrize("text", ["", "51.5,-0.12", "+5-0.1/", "+95.0+000.0/", "+123456789+0/"])
def test_iso6709_nonsense_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_iso6709(text)


def test_video_with_an_impossible_location_keeps_its_other_facts(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "v.mp4", creation_time=None, location="+99.0000+000.0000/")
    info = extract_media_info(path)
    assert info.kind == "video" and info.video_codec and info.recorded_at is None
    assert info.location is None and info.metadata_error and "latitude" in info.metadata_error
