"""Media type detection, capture metadata and preview thumbnails for evidence files.

Everything here reads a file's own bytes (never trusts its name) and never rejects evidence: damaged or
unknown content still yields a :class:`MediaInfo`, with ``metadata_error`` saying what could not be read.
"""

from evidence.media.detect import DETECT_HEAD_BYTES, detect_media_type
from evidence.media.extract import extract_media_info
from evidence.media.info import GeoPoint, MediaInfo, MediaKind
from evidence.media.thumbnail import make_thumbnail

__all__ = [
    "DETECT_HEAD_BYTES",
    "GeoPoint",
    "MediaInfo",
    "MediaKind",
    "detect_media_type",
    "extract_media_info",
    "make_thumbnail",
]
