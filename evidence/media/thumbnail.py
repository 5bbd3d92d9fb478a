"""Small JPEG previews for reviewers: photos through Pillow, videos through one frame decoded by PyAV.

Previews are a convenience, never evidence: any picture that cannot be made yields ``None`` (the reason is
logged at debug), so a damaged file still goes through ingest. Memory and time are bounded: JPEGs decode
at reduced scale, other pictures above :data:`MAX_DECODE_PIXELS` are skipped, and a video is read for at
most :data:`MAX_VIDEO_PACKETS` packets after one seek.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import IO, Any

import av
from PIL import Image

from evidence.errors import InvalidInput
from evidence.media.info import MediaInfo
from evidence.media.photo import PILLOW_TYPES  # importing photo also registers the HEIF opener

log = logging.getLogger(__name__)

MAX_DECODE_PIXELS = 64_000_000
"""Largest non-JPEG picture decoded for a preview (about 200 MB as RGB)."""
MAX_VIDEO_PACKETS = 500
"""Packets (of all streams) read looking for a decodable frame: past the next keyframe of a camera's GOP."""
PREVIEW_POSITION = 0.10
"""Fraction of a video's duration the preview frame is taken from: past black lead-in frames."""
JPEG_QUALITY = 80
HEIF_TYPES = frozenset({"image/heic", "image/heif", "image/avif", "image/heic-sequence"})
# EXIF orientation -> the turn that makes the stored pixels upright (EXIF 2.32, tag 0x0112).
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def make_thumbnail(path: Path, info: MediaInfo, *, max_side: int = 320) -> bytes | None:
    """A JPEG no larger than ``max_side`` on either side, upright, or ``None`` when no picture can be made.

    Only an ``OSError`` opening the file propagates (it is missing or unreadable, not damaged).
    """
    if max_side < 1:
        raise InvalidInput(f"thumbnail max_side must be at least 1 pixel, got {max_side}")
    if info.kind not in ("photo", "video"):
        return None
    with path.open("rb") as handle:
        try:
            picture = (
                _photo_picture(handle, info, max_side) if info.kind == "photo" else _video_picture(path, info)
            )
            if picture is None:
                return None
            return _encode(picture, max_side)
        except Exception as err:  # decoders raise anything on damaged input; a preview is optional
            log.debug("no thumbnail for %s (%s): %s: %s", path.name, info.media_type, type(err).__name__, err)
            return None


def _photo_picture(handle: IO[bytes], info: MediaInfo, max_side: int) -> Image.Image | None:
    if info.media_type not in PILLOW_TYPES:
        log.debug("no thumbnail: Pillow cannot decode %s", info.media_type)
        return None
    with Image.open(handle) as image:
        if image.format == "JPEG":
            # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT: a 50 MP photo costs a few MB.
            image.draft("RGB", (max_side, max_side))
        elif image.width * image.height > MAX_DECODE_PIXELS:
            log.debug("no thumbnail: %dx%d picture is too large to decode", image.width, image.height)
            return None
        image.thumbnail((max_side, max_side))
        return _upright(image, info)


def _upright(picture: Image.Image, info: MediaInfo) -> Image.Image:
    # HEIF decoders have applied the container's rotation already; turning again would undo it.
    if info.media_type in HEIF_TYPES or info.orientation not in _TRANSPOSE_FOR_ORIENTATION:
        return picture.copy()
    return picture.transpose(_TRANSPOSE_FOR_ORIENTATION[info.orientation])


def _video_picture(path: Path, info: MediaInfo) -> Image.Image | None:
    # By name, through FFmpeg's own file reader, as read_video does: handed a Python file object,
    # PyAV prints a traceback to stderr whenever a damaged index makes FFmpeg seek before the start.
    with av.open(str(path), mode="r", metadata_errors="replace") as container:
        stream = next((s for s in container.streams.video if s.codec_context and s.width), None)
        if stream is None:
            log.debug("no thumbnail: no video stream in %s", info.media_type)
            return None
        if info.duration_seconds and stream.time_base:
            target = info.duration_seconds * PREVIEW_POSITION
            try:
                # Lands on the keyframe at or before the target; decoding from there needs no more.
                start = stream.start_time or 0  # MPEG-TS clocks rarely start at zero
                container.seek(start + int(target / stream.time_base), stream=stream)
            except av.FFmpegError as err:  # unindexed or damaged; the reader stays at the start
                log.debug("seek to %.1fs failed (%s); using the first frame", target, err)
        return _first_frame(container, stream)


def _first_frame(container: Any, stream: Any) -> Image.Image | None:
    # Every packet counts towards the bound, not only the video's: a stream that is declared but never
    # carries data must not make the reader scan a 4 GB file.
    for count, packet in enumerate(container.demux()):
        if count >= MAX_VIDEO_PACKETS:
            break
        if packet.stream_index != stream.index:
            continue
        try:
            frames = packet.decode()
        except av.FFmpegError:
            continue  # a damaged packet; a later keyframe may still decode
        for frame in frames:
            picture: Image.Image = frame.to_image()
            # Phones record sideways and store a display rotation (degrees counter-clockwise).
            if frame.rotation:
                picture = picture.rotate(frame.rotation, expand=True)
            return picture
    log.debug("no decodable frame within %d packets", MAX_VIDEO_PACKETS)
    return None


def _encode(picture: Image.Image, max_side: int) -> bytes:
    picture.thumbnail((max_side, max_side))
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
