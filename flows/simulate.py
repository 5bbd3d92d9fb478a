"""Simulated camera files: real JPEGs with EXIF and GPS, real MP4s, and docked-device folders.

Used by `evidence demo` and by the tests (`tests/factories.py`), so both exercise the same files a
body-worn camera or scene camera would produce.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, TiffImagePlugin

DEFAULT_TAKEN = datetime(2026, 3, 14, 21, 5, 9, tzinfo=timezone(timedelta(hours=1)))
DEFAULT_VIDEO_TIME = datetime(2026, 3, 14, 20, 5, 9, tzinfo=UTC)
DEVICE_FOLDER = Path("DCIM") / "100BWC01"

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_CHUNK = 1024 * 1024


def make_jpeg(
    path: Path,
    *,
    size: tuple[int, int] = (640, 480),
    make: str | None = "ACME",
    model: str | None = "BWC-1",
    serial: str | None = "SN123",
    taken: datetime | None = DEFAULT_TAKEN,
    gps: tuple[float, float] | None = (51.501, -0.1419),
    seed: int = 0,
    orientation: int | None = None,
) -> Path:
    """A real JPEG (random pixels, so it does not compress away) with camera EXIF written by Pillow."""
    width, height = size
    pixels = random.Random(f"jpeg:{seed}").randbytes(width * height * 3)
    image = Image.frombytes("RGB", size, pixels)
    exif = Image.Exif()
    if make is not None:
        exif[0x010F] = make
    if model is not None:
        exif[0x0110] = model
    if orientation is not None:
        exif[0x0112] = orientation
    details = exif.get_ifd(_EXIF_IFD)
    if serial is not None:
        details[0xA431] = serial  # BodySerialNumber
    if taken is not None:
        details[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
        offset = taken.utcoffset()
        if offset is not None:
            details[0x9011] = _exif_offset(offset)  # OffsetTimeOriginal
    if gps is not None:
        latitude, longitude = gps
        position = exif.get_ifd(_GPS_IFD)
        position[0x0000] = b"\x02\x02\x00\x00"  # GPSVersionID 2.2
        position[0x0001] = "S" if latitude < 0 else "N"
        position[0x0002] = _dms(latitude)
        position[0x0003] = "W" if longitude < 0 else "E"
        position[0x0004] = _dms(longitude)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=85, exif=exif)
    return path


def make_mp4(
    path: Path,
    *,
    seconds: float = 1.0,
    size: tuple[int, int] = (160, 120),
    fps: int = 10,
    creation_time: datetime | None = DEFAULT_VIDEO_TIME,
    seed: int = 0,
    location: str | None = None,
    rotation: int = 0,
) -> Path:
    """A real MP4 written by PyAV: H.264 (mpeg4 where PyAV's FFmpeg lacks libx264), random frames,
    ``creation_time`` in the movie header and, if given, an ISO 6709 ``location`` such as
    ``"+51.5010-000.1419/"``. ``rotation`` stores a display rotation (degrees counter-clockwise) the
    way phones mark video shot sideways."""
    width, height = size
    rng = random.Random(f"mp4:{seed}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        if creation_time is not None:
            moment = creation_time.astimezone(UTC) if creation_time.tzinfo else creation_time
            container.metadata["creation_time"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if location is not None:
            container.metadata["location"] = location
        stream = container.add_stream(video_codec(), rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        if stream.codec_context.name == "libx264":
            stream.options = {"preset": "ultrafast"}
        for _ in range(max(1, round(seconds * fps))):
            picture = Image.frombytes("RGB", size, rng.randbytes(width * height * 3))
            frame = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def video_codec() -> str:
    """The encoder make_mp4 uses: libx264 when PyAV's bundled FFmpeg has it."""
    try:
        av.codec.Codec("libx264", "w")
    except av.FFmpegError:
        return "mpeg4"
    return "libx264"


def make_device(root: Path, *, photos: int = 3, videos: int = 1, seed: int = 0) -> Path:
    """A docked camera as it mounts: ``DCIM/100BWC01/IMG_0001.JPG`` ... ``VID_0001.MP4``, captured a
    minute apart, stamped with the folder's name as body serial. Returns ``root``."""
    folder = root / DEVICE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(photos):
        make_jpeg(
            folder / f"IMG_{index + 1:04d}.JPG",
            size=(320, 240),
            serial=root.name,
            taken=DEFAULT_TAKEN + timedelta(minutes=index),
            seed=_file_seed(seed, "photo", index),
        )
    for index in range(videos):
        make_mp4(
            folder / f"VID_{index + 1:04d}.MP4",
            creation_time=DEFAULT_VIDEO_TIME + timedelta(minutes=photos + index),
            seed=_file_seed(seed, "video", index),
        )
    return root


def random_file(path: Path, size: int, *, seed: int = 0) -> Path:
    """``size`` incompressible bytes, written 1 MiB at a time (benchmarks ask for GiBs)."""
    rng = random.Random(f"random:{seed}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        remaining = size
        while remaining > 0:
            chunk = min(_CHUNK, remaining)
            out.write(rng.randbytes(chunk))
            remaining -= chunk
    return path


def _file_seed(seed: int, kind: str, index: int) -> int:
    # Far from the small seeds tests pass to make_jpeg directly, so a device file never equals one.
    base = 1_000_003 * (seed + 1) + index
    return base if kind == "photo" else base + 500_000


def _dms(value: float) -> tuple[TiffImagePlugin.IFDRational, ...]:
    seconds_total = Fraction(abs(value)).limit_denominator(10**9) * 3600
    degrees, remainder = divmod(seconds_total, 3600)
    minutes, seconds = divmod(remainder, 60)
    seconds = Fraction(round(seconds * 10_000), 10_000)  # 1/10000 s of arc: about 3 mm
    return (
        TiffImagePlugin.IFDRational(int(degrees), 1),
        TiffImagePlugin.IFDRational(int(minutes), 1),
        TiffImagePlugin.IFDRational(seconds.numerator, seconds.denominator),
    )


def _exif_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"
