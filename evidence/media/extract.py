"""One entry point: what a file is (from its bytes) and what it says about its capture."""

from __future__ import annotations

from pathlib import Path

from evidence.media.detect import DETECT_HEAD_BYTES, OCTET_STREAM, detect_media_type
from evidence.media.info import MediaInfo
from evidence.media.photo import describe_error, read_photo
from evidence.media.video import read_video


def extract_media_info(path: Path) -> MediaInfo:
    """Detect the type and read capture metadata. Never raises for bad content: a reader's failure
    becomes ``metadata_error`` with the type still detected. Only an ``OSError`` reading the file
    (missing, unreadable, I/O error) propagates, because that is not a property of the evidence."""
    with path.open("rb") as handle:
        head = handle.read(DETECT_HEAD_BYTES)
    media_type, kind = detect_media_type(head)
    if not head:
        return MediaInfo(media_type=media_type, kind=kind, metadata_error="the file is empty")
    try:
        if kind == "photo":
            return read_photo(path, media_type, kind)
        if kind in ("video", "audio"):
            return read_video(path, media_type, kind)
    except OSError:
        raise
    except Exception as err:  # the readers catch their libraries' errors; this is the last guard
        problem = f"metadata unreadable: {describe_error(err, path)}"
        return MediaInfo(media_type=media_type, kind=kind, metadata_error=problem)
    if media_type == OCTET_STREAM:
        problem = "content is not a recognised media or document type"
        return MediaInfo(media_type=media_type, kind=kind, metadata_error=problem)
    return MediaInfo(media_type=media_type, kind=kind)
