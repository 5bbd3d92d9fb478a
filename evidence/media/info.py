"""What an evidence file is and what it says about its own capture: the record every reader fills in.

The record is descriptive, never authoritative: it is what the file claims (a camera clock can be wrong,
EXIF can be edited). The SHA-256 of the original bytes, not this record, is what proves integrity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Literal, get_args

from evidence.errors import InvalidInput

MediaKind = Literal["photo", "video", "audio", "document", "other"]
MEDIA_KINDS: frozenset[str] = frozenset(get_args(MediaKind))


@dataclass(frozen=True)
class GeoPoint:
    latitude: float  # decimal degrees, south negative
    longitude: float  # west negative
    altitude_m: float | None = None

    def __post_init__(self) -> None:
        # A point off the globe is a parsing error upstream; refusing it here keeps it out of records.
        if not (math.isfinite(self.latitude) and -90.0 <= self.latitude <= 90.0):
            raise InvalidInput(f"latitude {self.latitude!r} is outside -90..90 degrees")
        if not (math.isfinite(self.longitude) and -180.0 <= self.longitude <= 180.0):
            raise InvalidInput(f"longitude {self.longitude!r} is outside -180..180 degrees")
        if self.altitude_m is not None and not math.isfinite(self.altitude_m):
            raise InvalidInput(f"altitude {self.altitude_m!r} is not a finite number of metres")


@dataclass(frozen=True)
class MediaInfo:
    media_type: str
    """MIME type detected from the content (never the file name), e.g. ``image/jpeg``, ``video/mp4``."""
    kind: MediaKind
    recorded_at: datetime | None = None
    """When captured. Timezone-aware when the file states an offset, else naive camera-clock time."""
    make: str | None = None
    model: str | None = None
    serial: str | None = None
    width: int | None = None
    """Pixels as decoded. For JPEG and TIFF that is as stored, turned for display by ``orientation``;
    HEIF decoders apply the container's rotation themselves, so HEIC sizes are already upright."""
    height: int | None = None
    orientation: int | None = None  # EXIF orientation 1..8, as the file states it
    duration_seconds: float | None = None
    frame_rate: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    location: GeoPoint | None = None
    metadata_error: str | None = None
    """Why metadata could not be read. The file is still evidence: it is stored and flagged, never dropped."""

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        if self.recorded_at is not None:
            data["recorded_at"] = self.recorded_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MediaInfo:
        """Inverse of :meth:`to_dict`. Unknown keys are ignored so older readers accept newer records."""
        known = {f.name for f in fields(cls)}
        values: dict[str, object] = {key: value for key, value in data.items() if key in known}
        for required in ("media_type", "kind"):
            if not isinstance(values.get(required), str):
                raise InvalidInput(f"media record has no {required!r} string: {dict(data)!r:.200}")
        if values["kind"] not in MEDIA_KINDS:
            raise InvalidInput(f"media kind {values['kind']!r} is not one of {sorted(MEDIA_KINDS)}")
        recorded_at = values.get("recorded_at")
        if isinstance(recorded_at, str):
            try:
                values["recorded_at"] = datetime.fromisoformat(recorded_at)
            except ValueError as err:
                raise InvalidInput(f"media record has an unreadable recorded_at {recorded_at!r}") from err
        location = values.get("location")
        if isinstance(location, Mapping):
            try:
                values["location"] = GeoPoint(
                    latitude=float(location["latitude"]),
                    longitude=float(location["longitude"]),
                    altitude_m=_optional_float(location.get("altitude_m")),
                )
            except (KeyError, TypeError, ValueError) as err:
                raise InvalidInput(f"media record has an unreadable location {location!r}") from err
        return cls(**values)  # type: ignore[arg-type]


def _optional_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float | str):
        return float(value)
    raise TypeError(f"not a number: {value!r}")
