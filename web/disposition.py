"""How evidence bytes are labelled for a browser: their type, and whether to show or save them.

The type comes from the manifest, which ingest sniffed from the file's own bytes (never from the
device's file name). Only media a browser plays or shows itself is labelled as such; anything else
goes out as ``application/octet-stream``, so a file from a device that happens to be HTML or SVG is
never rendered by the portal's origin (``nosniff`` is set on every answer too)."""

from __future__ import annotations

from urllib.parse import quote

from flows.export import safe_file_name

OCTET_STREAM = "application/octet-stream"
_SHOWN_TOP_LEVEL = ("video/", "audio/", "image/")
_NEVER_SHOWN = frozenset({"image/svg+xml"})  # SVG can carry script


def media_type_for(recorded: str) -> str:
    """The Content-Type for an item whose manifest records ``recorded``."""
    recorded = recorded.strip().lower()
    if recorded.startswith(_SHOWN_TOP_LEVEL) and recorded not in _NEVER_SHOWN and ";" not in recorded:
        return recorded
    return OCTET_STREAM


def attachment(raw_name: bytes) -> str:
    """``Content-Disposition`` that saves the bytes under a safe form of the original name (RFC 6266:
    a plain ASCII ``filename`` for old clients, the exact UTF-8 one in ``filename*``)."""
    name = safe_file_name(raw_name)
    fallback = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
