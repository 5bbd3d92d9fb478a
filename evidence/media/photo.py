"""Photo metadata: EXIF through exifread, pixel size and orientation through Pillow (HEIC via pillow-heif).

Both libraries read headers and seek; neither loads the picture. Each source fails on its own: broken
EXIF still leaves the size Pillow read, and the reason lands in ``metadata_error``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import exifread
import pillow_heif
from PIL import Image

from evidence.errors import InvalidInput
from evidence.media.info import GeoPoint, MediaInfo, MediaKind

log = logging.getLogger(__name__)

pillow_heif.register_heif_opener()
# Opening a TIFF-based file makes Pillow parse its IFDs and warn about damage on stderr. exifread reads
# the same IFDs and reports damage into the record (see _ExifWarnings), so Pillow's copy is noise.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")

# Pillow decodes these itself; for anything else (CR3, RW2, ORF) it failing to open is expected.
PILLOW_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/bmp",
        "image/tiff",
        "image/webp",
        "image/heic",
        "image/heic-sequence",
        "image/heif",
        "image/avif",
        "image/jp2",
    }
)
_SERIAL_TAGS = (
    "EXIF BodySerialNumber",
    "Image CameraSerialNumber",  # DNG
    "MakerNote SerialNumber",
    "MakerNote InternalSerialNumber",
)
_EXIF_DATE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_UNSET_DATE = re.compile(r"[0\s:.-]*")  # "0000:00:00 00:00:00" or blanks: the camera had no clock set
# exifread's warnings that mean the EXIF block itself is damaged (others just say "no EXIF here").
_DAMAGE_WARNINGS = ("corrupted", "loop", "Unexpected slice", "No values found")

JPEG_SEGMENTS_SEARCHED = 4096
"""How many JPEG header segments are walked looking for EXIF. A segment holds at most 64 KiB, so EXIF
is found behind up to 256 MiB of other segments (ICC profiles in APP2, Photoshop data in APP13),
reading 4 bytes of each; past that the photo is flagged rather than searched without end."""
_JPEG_FILL_BYTES = 64  # 0xFF padding allowed before a marker; a run of 0xFF is not worth reading on
_SOI, _APP1, _SOS, _EOI, _TEM = 0xD8, 0xE1, 0xDA, 0xD9, 0x01
_RESTART_MARKERS = range(0xD0, 0xD8)


def read_photo(path: Path, media_type: str, kind: MediaKind) -> MediaInfo:
    problems: list[str] = []
    tags = _read_exif(path, problems, jpeg=media_type == "image/jpeg")
    width = height = None
    try:
        # Only the header: Pillow's own EXIF parser would repeat exifread's work and warn on bad EXIF.
        with Image.open(path) as image:
            width, height = image.size
            if image.format == "JPEG":
                _check_jpeg_data(image, path, problems)
    except Exception as err:  # Pillow raises many types for bad input; none may stop ingest
        if media_type in PILLOW_TYPES:
            problems.append(f"picture header unreadable: {describe_error(err, path)}")
    recorded_at = _recorded_at(tags, problems)
    location = _location(tags, problems)
    if not tags and width is None and not problems:
        problems.append(f"no EXIF found and {media_type} pictures cannot be decoded here")
    return MediaInfo(
        media_type=media_type,
        kind=kind,
        recorded_at=recorded_at,
        make=_tag_text(tags, "Image Make"),
        model=_tag_text(tags, "Image Model"),
        serial=next(filter(None, (_tag_text(tags, name) for name in _SERIAL_TAGS)), None),
        width=width,
        height=height,
        orientation=_valid_orientation(_tag_int(tags, "Image Orientation")),
        location=location,
        metadata_error="; ".join(problems) or None,
    )


def _check_jpeg_data(image: Image.Image, path: Path, problems: list[str]) -> None:
    # A JPEG cut short keeps intact headers, so only decoding finds it. At 1/8 scale libjpeg skips most
    # of the work and memory; data appended after the image (phones' motion photos) is ignored.
    image.draft("RGB", (max(1, -(-image.width // 8)), max(1, -(-image.height // 8))))
    try:
        image.load()
    except Exception as err:
        problems.append(f"picture data unreadable: {describe_error(err, path)}")


def describe_error(err: BaseException, path: Path) -> str:
    # Library messages often embed the full path; the record keeps only the file's own name.
    return f"{type(err).__name__}: {err}".replace(str(path), path.name)[:300]


def _read_exif(path: Path, problems: list[str], *, jpeg: bool) -> dict[str, Any]:
    exif_source: bytes | None = None
    if jpeg:
        try:
            exif_source = _jpeg_with_only_its_exif(path)
        except _JpegHeadersUnreadable as err:
            problems.append(f"EXIF not found: {err}")
            return {}
        if exif_source is None:
            return {}  # the headers end without EXIF: a photo with none, nothing unread
    # Maker notes carry some cameras' serial numbers but are the least robust part of exifread;
    # when they break it, the standard tags are read again without them.
    for details in (True, False):
        with _ExifWarnings.capture() as captured, _exif_input(path, exif_source) as handle:
            try:
                tags: dict[str, Any] = exifread.process_file(
                    handle, details=details, extract_thumbnail=False, truncate_tags=False
                )
            except Exception as err:  # exifread raises anything from IndexError to MemoryError-like
                if not details:
                    problems.append(f"EXIF unreadable: {describe_error(err, path)}")
                continue
        damage = [
            message
            for message in captured.messages
            # Maker notes are vendor-private and often mangled by editors; the standard tags still read.
            if any(w in message for w in _DAMAGE_WARNINGS) and "MakerNote" not in message
        ]
        if damage:
            problems.append("EXIF damaged: " + "; ".join(sorted(set(damage)))[:300])
        return tags
    return {}


def _exif_input(path: Path, exif_source: bytes | None) -> BinaryIO:
    return io.BytesIO(exif_source) if exif_source is not None else path.open("rb")


class _JpegHeadersUnreadable(Exception):
    """The JPEG's header segments could not be walked to the image data."""


def _jpeg_with_only_its_exif(path: Path) -> bytes | None:
    """A minimal JPEG holding only the photo's EXIF segment (start of image, then APP1), or None when
    the headers reach the image data without one.

    exifread looks for EXIF only in the first ~4 KB after the leading segments, so EXIF behind a large
    ICC profile (APP2) went unread, and the photo was stored with no make, model or time and no flag.
    Here the segment headers are walked from the start, seeking past each body: at most
    :data:`JPEG_SEGMENTS_SEARCHED` segments, 4 bytes read from each, and the EXIF segment itself (64 KiB
    at most). exifread then parses that copy; EXIF offsets count from its own TIFF header, so nothing
    outside the segment is needed."""
    with path.open("rb", buffering=0) as handle:
        if handle.read(2) != bytes((0xFF, _SOI)):
            raise _JpegHeadersUnreadable("the file does not start as a JPEG")
        for _ in range(JPEG_SEGMENTS_SEARCHED):
            marker = _next_jpeg_marker(handle)
            if marker in (_SOS, _EOI):
                return None
            if marker == _TEM or marker in _RESTART_MARKERS:
                continue  # markers without a length or body
            length = int.from_bytes(_read_exactly(handle, 2), "big")
            if length < 2:
                raise _JpegHeadersUnreadable(f"segment 0xFF{marker:02X} has an impossible length {length}")
            if marker == _APP1:
                body = _read_exactly(handle, length - 2)
                if body.startswith(b"Exif"):
                    return bytes((0xFF, _SOI, 0xFF, _APP1)) + length.to_bytes(2, "big") + body
                continue  # XMP and other APP1 segments
            handle.seek(length - 2, os.SEEK_CUR)
    raise _JpegHeadersUnreadable(f"not within the first {JPEG_SEGMENTS_SEARCHED} header segments")


def _next_jpeg_marker(handle: BinaryIO) -> int:
    if _read_exactly(handle, 1) != b"\xff":
        raise _JpegHeadersUnreadable("a header segment does not start with a marker")
    for _ in range(_JPEG_FILL_BYTES):
        marker = _read_exactly(handle, 1)[0]
        if marker != 0xFF:
            return marker
    raise _JpegHeadersUnreadable("too much padding between header segments")


def _read_exactly(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise _JpegHeadersUnreadable("the file ends inside its headers")
    return data


def _recorded_at(tags: Mapping[str, Any], problems: list[str]) -> datetime | None:
    for date_tag, offset_tag in (
        ("EXIF DateTimeOriginal", "EXIF OffsetTimeOriginal"),
        ("Image DateTimeOriginal", "EXIF OffsetTimeOriginal"),  # some raws put it in IFD0
        ("EXIF DateTimeDigitized", "EXIF OffsetTimeDigitized"),
    ):
        text = _tag_text(tags, date_tag)
        if text is None or _UNSET_DATE.fullmatch(text):
            continue
        try:
            return parse_exif_datetime(text, _tag_text(tags, offset_tag))
        except InvalidInput as err:
            problems.append(str(err))
    return None


def parse_exif_datetime(text: str, offset: str | None = None) -> datetime:
    """``2008:05:30 15:56:01`` (and the offset ``+01:00`` EXIF 2.31 stores beside it) as a datetime."""
    match = _EXIF_DATE.match(text.strip())
    if not match:
        raise InvalidInput(f"{text!r} is not an EXIF date")
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError as err:
        raise InvalidInput(f"{text!r} is not a valid date: {err}") from err
    offset_match = _EXIF_OFFSET.fullmatch(offset.strip()) if offset else None
    if offset_match:
        sign, hours, minutes = offset_match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        if delta < timedelta(hours=24):
            moment = moment.replace(tzinfo=timezone(-delta if sign == "-" else delta))
    return moment


def _location(tags: Mapping[str, Any], problems: list[str]) -> GeoPoint | None:
    if "GPS GPSLatitude" not in tags or "GPS GPSLongitude" not in tags:
        return None
    try:
        latitude = _gps_degrees(tags["GPS GPSLatitude"], _tag_text(tags, "GPS GPSLatitudeRef"), "S")
        longitude = _gps_degrees(tags["GPS GPSLongitude"], _tag_text(tags, "GPS GPSLongitudeRef"), "W")
        altitude = None
        if "GPS GPSAltitude" in tags:
            altitude = float(_rationals(tags["GPS GPSAltitude"])[0])
            if _tag_int(tags, "GPS GPSAltitudeRef") == 1:  # 1 = below sea level
                altitude = -abs(altitude)
        return GeoPoint(latitude=latitude, longitude=longitude, altitude_m=altitude)
    except Exception as err:  # odd GPS forms: 0/0 fields, text instead of rationals, degrees off the globe
        problems.append(f"GPS position unreadable: {err}")
        return None


def gps_to_degrees(parts: list[Fraction], ref: str | None, negative_ref: str) -> float:
    """EXIF GPS degrees, minutes, seconds (some cameras write fewer parts, or minutes with a fraction
    and zero seconds) as signed decimal degrees."""
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"expected 1 to 3 GPS components, got {len(parts)}")
    value = sum(Fraction(part) / 60**index for index, part in enumerate(parts))
    if ref and ref.strip().upper().startswith(negative_ref):
        value = -abs(value)
    return float(value)


def _gps_degrees(tag: Any, ref: str | None, negative_ref: str) -> float:
    return gps_to_degrees(_rationals(tag), ref, negative_ref)


def _rationals(tag: Any) -> list[Fraction]:
    values = getattr(tag, "values", tag)
    items = values if isinstance(values, list | tuple) else [values]
    # Ratio subclasses Fraction but tolerates 0/0 (an unset GPS field); Fraction() re-checks it.
    return [Fraction(item.numerator, item.denominator) for item in items]


def _tag_text(tags: Mapping[str, Any], name: str) -> str | None:
    tag = tags.get(name)
    if tag is None:
        return None
    values = getattr(tag, "values", tag)
    text = values.decode("utf-8", "replace") if isinstance(values, bytes) else str(values)
    text = text.replace("\x00", " ").strip()
    return text or None


def _tag_int(tags: Mapping[str, Any], name: str) -> int | None:
    tag = tags.get(name)
    values = getattr(tag, "values", None)
    if isinstance(values, list) and values and isinstance(values[0], int):
        return values[0]
    return None


def _valid_orientation(value: int | None) -> int | None:
    return value if value is not None and 1 <= value <= 8 else None


@dataclass
class _Capture:
    thread_id: int
    messages: list[str] = field(default_factory=list)


class _ExifWarnings(logging.Handler):
    """Collects exifread's warnings for the reading thread only: they are how it reports damaged
    EXIF, and they belong in the item's record, not on the console."""

    _active: dict[int, _Capture]

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._active = {}

    def emit(self, record: logging.LogRecord) -> None:
        capture = self._active.get(record.thread or 0)
        if capture is not None:
            capture.messages.append(record.getMessage())

    @classmethod
    @contextmanager
    def capture(cls) -> Iterator[_Capture]:
        capture = _Capture(threading.get_ident())
        _EXIF_HANDLER._active[capture.thread_id] = capture
        try:
            yield capture
        finally:
            _EXIF_HANDLER._active.pop(capture.thread_id, None)


_EXIF_HANDLER = _ExifWarnings()
_exifread_log = logging.getLogger("exifread")
_exifread_log.addHandler(_EXIF_HANDLER)
_exifread_log.propagate = False
