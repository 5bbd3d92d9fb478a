"""HTTP ``Range`` (RFC 9110 §14) for every route that serves evidence bytes, decided in one place.

Only what a video element, a download manager and ``curl -r`` send is served as a part: one range,
``bytes=START-END``, ``bytes=START-`` or ``bytes=-N`` (the last N bytes), with the same meaning as the
CLI's ``evidence get --range`` (:func:`flows.retrieval.parse_byte_range`, which this module uses for
the arithmetic). Everything else is answered as RFC 9110 lets a server answer it:

- several ranges (``bytes=0-1,5-6``), another unit, or a header that is not valid syntax: the header
  is ignored and the whole item sent (200). A multipart/byteranges answer would multiply the code
  that releases plaintext for no client the portal serves;
- one valid range that is not satisfiable (START at or past the end, ``bytes=-0``): 416 with
  ``Content-Range: bytes */SIZE``;
- an ``If-Range`` that is not this item's ETag (a date, or another item's tag): the whole item, as
  §13.1.5 says, so a resumed download never splices two different files;
- HEAD, and an empty item: the whole item; range handling is defined for GET only (§14.2), and an
  empty representation has no byte a range could name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flows.retrieval import ByteRange, parse_byte_range

ACCEPT_RANGES = {"Accept-Ranges": "bytes"}
_SINGLE_RANGE = re.compile(r"bytes=[ \t]*([0-9]*)-([0-9]*)[ \t]*", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True)
class ByteAnswer:
    """What to send for a request: the status, the plaintext bytes ``[start, stop)`` of an item of
    ``size`` bytes (none for 416), and the headers that describe them."""

    status: int
    size: int
    part: ByteRange | None

    @property
    def length(self) -> int:
        return self.part.length if self.part is not None else 0

    def headers(self) -> dict[str, str]:
        if self.status == 416:
            return {"Content-Range": f"bytes */{self.size}", **ACCEPT_RANGES}
        headers = {"Content-Length": str(self.length), **ACCEPT_RANGES}
        if self.status == 206 and self.part is not None:
            headers["Content-Range"] = f"bytes {self.part.start}-{self.part.stop - 1}/{self.size}"
        return headers


def whole(size: int) -> ByteAnswer:
    return ByteAnswer(200, size, ByteRange(0, size))


def answer_for(
    range_header: str | None,
    size: int,
    *,
    method: str = "GET",
    if_range: str | None = None,
    etag: str | None = None,
) -> ByteAnswer:
    """The answer to a request carrying ``range_header`` for an item of ``size`` bytes whose strong
    ETag is ``etag``."""
    if range_header is None or method.upper() != "GET" or size == 0:
        return whole(size)
    if if_range is not None and (etag is None or if_range.strip() != etag):
        return whole(size)
    match = _SINGLE_RANGE.fullmatch(range_header.strip())
    if match is None:
        return whole(size)  # another unit, several ranges, or not the syntax: ignored (§14.2)
    first, last = match.groups()
    if not first and not last:
        return whole(size)
    if first and last and int(last) < int(first):
        return whole(size)  # an invalid range-spec makes the whole header invalid: ignored
    if not first and int(last) == 0:
        return ByteAnswer(416, size, None)  # a suffix of zero bytes is never satisfiable
    if first and int(first) >= size:
        return ByteAnswer(416, size, None)
    return ByteAnswer(206, size, parse_byte_range(f"{first}-{last}", size))
