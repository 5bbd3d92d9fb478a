"""Video and audio metadata through PyAV (FFmpeg's demuxers): container, duration, codecs, size, frame
rate, capture time, camera make/model and location tags.

Opening a container reads its header and index (FFmpeg probes at most a few MB), never the whole file.
PyAV keeps FFmpeg's own logging off by default, so damaged files do not spray the console; what went
wrong is returned in ``metadata_error`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from evidence.errors import InvalidInput
from evidence.media.info import GeoPoint, MediaInfo, MediaKind
from evidence.media.photo import describe_error

# Keys as FFmpeg names them (lower-cased here): QuickTime's Apple keys, Android's, plain udta.
_MAKE_KEYS = ("com.apple.quicktime.make", "com.android.manufacturer", "make", "manufacturer")
_MODEL_KEYS = ("com.apple.quicktime.model", "com.android.model", "model")
_SERIAL_KEYS = ("com.apple.quicktime.camera.serialnumber", "serial_number", "serialnumber")
_LOCATION_KEYS = ("com.apple.quicktime.location.iso6709", "location", "location-eng")
# Apple's creationdate carries the local offset; creation_time is UTC but loses the zone.
_TIME_KEYS = ("com.apple.quicktime.creationdate", "creation_time")
_MAX_FRAME_RATE = 1000
# Writers that never set the clock leave the container format's epoch.
_EPOCHS = (datetime(1904, 1, 1), datetime(1970, 1, 1))
_ISO6709 = re.compile(
    r"(?P<lat>[+-]\d+(?:\.\d*)?)(?P<lon>[+-]\d+(?:\.\d*)?)(?P<alt>[+-]\d+(?:\.\d*)?)?(?:CRS[^/]*)?/?"
)


def read_video(path: Path, media_type: str, kind: MediaKind) -> MediaInfo:
    try:
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except Exception as err:  # FFmpegError, but also ValueError/IndexError from odd headers
        return _unreadable(media_type, kind, err, path)
    try:
        with container:
            return _inspect(container, media_type, kind)
    except Exception as err:  # a stream attribute FFmpeg could not fill: same verdict as a failed open
        return _unreadable(media_type, kind, err, path)


def _inspect(container: Any, media_type: str, kind: MediaKind) -> MediaInfo:
    problems: list[str] = []
    tags = _collect_tags(container)
    video = next((s for s in container.streams.video if s.codec_context and s.width), None)
    audio = next((s for s in container.streams.audio if s.codec_context), None)
    frame_rate = _frame_rate(video) if video is not None else None
    if video is None and audio is None:
        problems.append(f"no decodable video or audio stream in the {container.format.name} container")
    missing = _bytes_missing(container)
    if missing:
        problems.append(f"file truncated: the container's index points {missing} bytes past its end")
    recorded_at = _recorded_at(tags, problems)
    location = _location(tags, problems)
    return MediaInfo(
        media_type=media_type,
        kind=kind,
        recorded_at=recorded_at,
        make=_first(tags, _MAKE_KEYS),
        model=_first(tags, _MODEL_KEYS),
        serial=_first(tags, _SERIAL_KEYS),
        width=video.width if video is not None else None,
        height=video.height if video is not None else None,
        duration_seconds=_duration(container, video or audio, frame_rate),
        frame_rate=frame_rate,
        video_codec=video.codec_context.name if video is not None else None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        location=location,
        metadata_error="; ".join(problems) or None,
    )


def _unreadable(media_type: str, kind: MediaKind, err: BaseException, path: Path) -> MediaInfo:
    return MediaInfo(
        media_type=media_type, kind=kind, metadata_error=f"container unreadable: {describe_error(err, path)}"
    )


def parse_iso6709(text: str) -> GeoPoint:
    """An ISO 6709 point as QuickTime and Android store it: ``+51.5074-000.1278+012.000/``.

    The integer digits say the unit: ``±DD``/``±DDD`` degrees, ``±DDMM``/``±DDDMM`` degrees and
    minutes, ``±DDMMSS``/``±DDDMMSS`` degrees, minutes and seconds, each with optional decimals.
    """
    match = _ISO6709.fullmatch(text.strip())
    if not match:
        raise InvalidInput(f"{text!r} is not an ISO 6709 location")
    altitude = match["alt"]
    return GeoPoint(
        latitude=_iso6709_angle(match["lat"], degree_digits=2),
        longitude=_iso6709_angle(match["lon"], degree_digits=3),
        altitude_m=float(altitude) if altitude else None,
    )


def parse_creation_time(text: str) -> datetime:
    """FFmpeg's ``creation_time`` (ISO 8601, ``Z`` for UTC), Apple's ``creationdate`` (with offset)
    or AVI's ``IDIT`` forms. Aware exactly when the text states a zone."""
    cleaned = text.strip().rstrip("\x00").strip()
    try:
        return datetime.fromisoformat(cleaned)
    except ValueError:
        pass
    for pattern in ("%a %b %d %H:%M:%S %Y", "%Y:%m:%d %H:%M:%S"):
        try:
            return datetime.strptime(cleaned, pattern)
        except ValueError:
            continue
    raise InvalidInput(f"creation time {text!r} is not a date this reader understands")


def _iso6709_angle(text: str, degree_digits: int) -> float:
    sign = -1.0 if text[0] == "-" else 1.0
    whole, _, fraction = text[1:].partition(".")
    extra = len(whole) - degree_digits
    if extra not in (0, 2, 4):
        raise InvalidInput(f"{text!r} is not an ISO 6709 angle")
    value = Fraction(whole + "." + (fraction or "0"))
    if extra == 0:
        degrees = value
    elif extra == 2:  # ±DDMM.mm
        degrees = Fraction(int(whole[:degree_digits])) + (value - int(whole[:degree_digits]) * 100) / 60
    else:  # ±DDMMSS.ss
        head = int(whole[:degree_digits])
        minutes = int(whole[degree_digits : degree_digits + 2])
        seconds = value - head * 10_000 - minutes * 100
        degrees = head + Fraction(minutes, 60) + seconds / 3600
    return sign * float(degrees)


def _collect_tags(container: Any) -> dict[str, str]:
    # Container tags first; stream tags fill gaps (some cameras only stamp the video track).
    tags: dict[str, str] = {}
    for source in (container.metadata, *(stream.metadata for stream in container.streams)):
        for key, value in dict(source).items():
            if isinstance(value, str) and value.strip():
                tags.setdefault(str(key).lower(), value.strip())
    return tags


def _first(tags: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    return next((tags[key] for key in keys if key in tags), None)


def _recorded_at(tags: Mapping[str, str], problems: list[str]) -> datetime | None:
    for key in _TIME_KEYS:
        if key not in tags:
            continue
        try:
            moment = parse_creation_time(tags[key])
        except InvalidInput as err:
            problems.append(str(err))
            continue
        if moment.replace(tzinfo=None) in _EPOCHS:
            continue
        return moment
    return None


def _location(tags: Mapping[str, str], problems: list[str]) -> GeoPoint | None:
    text = _first(tags, _LOCATION_KEYS)
    if text is None:
        return None
    try:
        return parse_iso6709(text)
    except InvalidInput as err:
        problems.append(str(err))
        return None


def _bytes_missing(container: Any) -> int:
    # A copy cut short (unplugged mid-transfer) still opens when the index sits at the front (MP4
    # "faststart", most cameras' MOV); the index then names samples beyond the end of the file.
    size = int(container.size or 0)
    if size <= 0:
        return 0
    reach = 0
    for stream in container.streams:
        entries = stream.index_entries
        if entries is not None and len(entries):
            last = entries[len(entries) - 1]
            reach = max(reach, int(last.pos) + int(last.size))
    return max(0, reach - size)


def _frame_rate(video: Any) -> float | None:
    # The average rate is right for phones' variable-rate video but nonsense when a file holds one or two
    # frames (DV's 60000); the stream's declared rate is the fallback. No camera records above 1000 fps.
    for rate in (video.average_rate, video.guessed_rate):
        if rate and 0 < rate <= _MAX_FRAME_RATE:
            return float(rate)
    return None


def _duration(container: Any, stream: Any, frame_rate: float | None) -> float | None:
    if container.duration is not None and container.duration > 0:
        return float(container.duration / av.time_base)
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if stream is not None and stream.frames and frame_rate:  # AVI without a duration: count frames
        return float(stream.frames / frame_rate)
    return None
