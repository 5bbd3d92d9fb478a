"""The device registry: which camera belongs to which officer.

A TOML file the force maintains (``Settings.device_registry``)::

    [devices."BWC-000142"]
    officer = "PC-4471"
    type = "body-worn"

A device missing from the registry is still ingested (nothing is lost), and its items are flagged
``unknown-device`` for a person to attribute.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from evidence.errors import ConfigError, InvalidInput

# \Z, not $: $ also matches before a final newline, and "BWC-1\n" is not a serial
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


@dataclass(frozen=True)
class DeviceRecord:
    serial: str
    officer_id: str | None
    device_type: str


def require_identifier(value: str, what: str) -> str:
    """Serials and officer ids appear in clear manifests and logs: a fixed, boring alphabet."""
    if not _IDENTIFIER.match(value):
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise InvalidInput(f"{what} {shown!r} is not valid: use 1-64 letters, digits, '.', '_' or '-'")
    return value


class DeviceRegistry:
    def __init__(self, records: Mapping[str, DeviceRecord]) -> None:
        self._records = dict(records)

    @classmethod
    def load(cls, path: Path | None) -> DeviceRegistry:
        if path is None or not path.exists():
            return cls({})
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"device registry {path} cannot be read: {err}") from err
        records = {}
        for serial, entry in doc.get("devices", {}).items():
            if not isinstance(entry, dict):
                raise ConfigError(f"device registry {path}: [devices.{serial!r}] must be a table")
            officer = entry.get("officer")
            records[serial] = DeviceRecord(
                serial=require_identifier(serial, "device serial"),
                officer_id=require_identifier(str(officer), "officer id") if officer else None,
                device_type=str(entry.get("type", "camera")),
            )
        return cls(records)

    def lookup(self, serial: str) -> DeviceRecord | None:
        return self._records.get(serial)
