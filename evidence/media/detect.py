"""Media type from content, never from the file name.

A device can name anything ``.MP4``, and a renamed file must not slip past as something it is not, so the
first bytes decide. The signatures are the formats' published magic numbers (ISO BMFF ``ftyp`` brands,
RIFF form types, EBML, SMPTE universal labels...). ``filetype`` and ``puremagic`` were tried and each
missed several formats body-worn and scene cameras produce (MPEG-TS/M2TS, DV, MXF, CR3, HEIC
variants), so the table lives here where it is tested against real camera files.
"""

from __future__ import annotations

from collections.abc import Callable

from evidence.media.info import MediaKind

DETECT_HEAD_BYTES = 64 * 1024
"""Bytes to pass to :func:`detect_media_type`: every signature here, ISO 9660's at 32 KiB included, fits."""

OCTET_STREAM = "application/octet-stream"

# ISO base media file format brands (ISO/IEC 14496-12 ftyp): major brand -> MIME type.
_FTYP_BRANDS: dict[bytes, str] = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"hevc": "image/heic-sequence",
    b"hevx": "image/heic-sequence",
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"crx ": "image/x-canon-cr3",
    b"jp2 ": "image/jp2",
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"M4P ": "audio/mp4",
    b"F4A ": "audio/mp4",
}
# Generic HEIF brands say "an image container"; the compatible brands say which codec.
_HEIF_GENERIC = frozenset({b"mif1", b"msf1", b"mif2"})
# Top-level QuickTime atoms that old cameras put first, without an ftyp.
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})

_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_MXF_PARTITION_KEY = bytes.fromhex("060e2b34020501010d01020101")
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

_KIND_BY_TYPE: dict[str, MediaKind] = {
    "application/mxf": "video",
    "application/pdf": "document",
    "application/json": "document",
    "application/xml": "document",
    "text/plain": "document",
}


def kind_of(media_type: str) -> MediaKind:
    """The kind a MIME type belongs to (``image/*`` is a photo: scene cameras take stills)."""
    if media_type in _KIND_BY_TYPE:
        return _KIND_BY_TYPE[media_type]
    top = media_type.split("/", 1)[0]
    if top == "image":
        return "photo"
    if top in ("video", "audio"):
        return top  # type: ignore[return-value]
    return "other"


def detect_media_type(head: bytes) -> tuple[str, MediaKind]:
    """MIME type and kind from the first bytes of a file (pass :data:`DETECT_HEAD_BYTES` or the whole
    file if shorter; at least 4096 recognises everything but ISO 9660 images). Never raises."""
    for sniff in _SNIFFERS:
        media_type = sniff(head)
        if media_type is not None:
            return media_type, kind_of(media_type)
    return OCTET_STREAM, "other"


def _sniff_iso_bmff(head: bytes) -> str | None:
    box_type = head[4:8]
    if box_type == b"ftyp":
        size = int.from_bytes(head[0:4], "big")
        major = head[8:12]
        compatible = head[16 : min(max(size, 16), 256)]
        brands = {compatible[i : i + 4] for i in range(0, len(compatible) - 3, 4)}
        if major in _HEIF_GENERIC:
            if brands & {b"avif", b"avis"}:
                return "image/avif"
            if brands & {b"heic", b"heix", b"heim", b"heis"}:
                return "image/heic"
            return "image/heif"
        if major in _FTYP_BRANDS:
            return _FTYP_BRANDS[major]
        if major[:3] == b"3gp":
            return "video/3gpp"
        if major[:3] == b"3g2":
            return "video/3gpp2"
        return "video/mp4"  # isom, mp41, mp42, avc1, XAVC, MSNV and the many camera-specific brands
    # A QuickTime atom size of 0 means "to the end of the file" and 1 means "64-bit size follows".
    size = int.from_bytes(head[0:4], "big")
    if box_type in _QUICKTIME_ATOMS and (size in (0, 1) or size >= 8):
        return "video/quicktime"
    return None


def _sniff_transport_stream(head: bytes) -> str | None:
    # MPEG-TS packets are 188 bytes starting 0x47; BDAV M2TS (AVCHD .MTS) prefixes each with a 4-byte
    # timestamp. One sync byte is chance; several in a row at the packet pitch is the format.
    for pitch, first, media_type in ((188, 0, "video/mp2t"), (192, 4, "video/mp2t")):
        packets = min(4, (len(head) - first + pitch - 1) // pitch)
        if packets >= 2 and all(head[first + i * pitch] == 0x47 for i in range(packets)):
            return media_type
    return None


def _sniff_riff(head: bytes) -> str | None:
    if head[0:4] != b"RIFF":
        return None
    form = head[8:12]
    if form in (b"AVI ", b"AVIX"):
        return "video/x-msvideo"
    if form == b"WAVE":
        return "audio/wav"
    if form == b"WEBP":
        return "image/webp"
    return None


def _sniff_matroska(head: bytes) -> str | None:
    if head[0:4] != b"\x1a\x45\xdf\xa3":
        return None
    return "video/webm" if b"webm" in head[:64] else "video/x-matroska"


def _sniff_dv(head: bytes) -> str | None:
    # DIF sequence header block: section id 0x1F 0x07 0x00, then 0x3F (525/60) or 0xBF (625/50).
    if head[0:3] == b"\x1f\x07\x00" and len(head) > 3 and head[3] & 0x7F == 0x3F:
        return "video/x-dv"
    return None


def _sniff_tiff(head: bytes) -> str | None:
    if head[0:4] == b"II*\x00" and head[8:10] == b"CR":
        return "image/x-canon-cr2"
    if head[0:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image/tiff"  # also DNG, NEF, ARW, PEF: raws built on TIFF
    if head[0:4] == b"IIU\x00":
        return "image/x-panasonic-rw2"
    if head[0:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "image/x-olympus-orf"
    return None


def _sniff_bmp(head: bytes) -> str | None:
    if head[0:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "image/bmp"
    return None


def _sniff_mpeg_audio(head: bytes) -> str | None:
    if head[0:3] == b"ID3":
        return "audio/mpeg"
    if len(head) < 4 or head[0] != 0xFF:
        return None
    # ADTS (raw AAC): 12 sync bits, layer 0, and a sampling-frequency index that exists.
    if head[1] & 0xF6 == 0xF0 and (head[2] >> 2) & 0x0F < 13:
        return "audio/aac"
    # A bare MPEG audio frame: 11 sync bits, then version, layer, bitrate and rate fields that are valid.
    if head[1] & 0xE0 == 0xE0:
        version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
        bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
        if version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3:
            return "audio/mpeg"
    return None


def _sniff_iso9660(head: bytes) -> str | None:
    if head[0x8001:0x8006] == b"CD001":
        return "application/x-iso9660-image"
    return None


def _sniff_text(head: bytes) -> str | None:
    sample = head[:4096]
    if not sample or b"\x00" in sample:
        return None
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as err:
        # The head may end inside a multi-byte character; anything earlier is not text.
        if err.start < len(sample) - 3:
            return None
        text = sample[: err.start].decode("utf-8")
    text = text.removeprefix("\ufeff")
    printable = sum(ch.isprintable() or ch in "\r\n\t\f" for ch in text)
    if not text or printable < 0.98 * len(text):
        return None
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        return "application/json"
    if stripped.startswith("<?xml"):
        return "application/xml"
    return "text/plain"


def _prefix(magic: bytes, media_type: str) -> Callable[[bytes], str | None]:
    def sniff(head: bytes) -> str | None:
        return media_type if head.startswith(magic) else None

    return sniff


_SNIFFERS: tuple[Callable[[bytes], str | None], ...] = (
    _prefix(b"\xff\xd8\xff", "image/jpeg"),
    _prefix(b"\x89PNG\r\n\x1a\n", "image/png"),
    _prefix(b"GIF87a", "image/gif"),
    _prefix(b"GIF89a", "image/gif"),
    _sniff_tiff,
    _sniff_iso_bmff,
    _sniff_riff,
    _prefix(_ASF_GUID, "video/x-ms-asf"),
    _sniff_matroska,
    _prefix(_MXF_PARTITION_KEY, "application/mxf"),
    _sniff_dv,
    _prefix(b"FLV\x01", "video/x-flv"),
    _prefix(b"\x00\x00\x01\xba", "video/mpeg"),  # MPEG program stream (.MPG, .VOB)
    _prefix(b"\x00\x00\x01\xb3", "video/mpeg"),  # MPEG video elementary stream
    _sniff_transport_stream,
    _prefix(b"fLaC", "audio/flac"),
    _prefix(b"OggS", "audio/ogg"),
    _prefix(b"#!AMR", "audio/amr"),
    _sniff_mpeg_audio,
    _sniff_bmp,
    _prefix(b"%PDF-", "application/pdf"),
    _prefix(b"PK\x03\x04", "application/zip"),
    _prefix(b"\x1f\x8b", "application/gzip"),
    _sniff_iso9660,
    _sniff_text,
)
