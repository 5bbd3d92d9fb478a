"""The device registry: which camera belongs to which officer.

A TOML file the force maintains (``Settings.device_registry``)::

    [devices."BWC-000142"]
    officer = "PC-4471"
    type = "body-worn"

A device missing from the registry is still ingested (nothing is lost), and its items are flagged
``unknown-device`` for a person to attribute. ``officer`` may be left out (a pool camera); any other
key, table or value is refused with the file named (``ConfigError``, exit code 2): a misspelt
``officer`` would otherwise leave every item of that camera attributed to nobody.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from evidence.config_tables import read_tables
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
        entries, problem = read_tables(
            path, what="device registry", section="devices", shape='[devices."SERIAL"] tables', each="device"
        )
        records = {}
        for serial, entry in entries.items():
            try:
                require_identifier(serial, "device serial")
            except InvalidInput as err:
                raise problem(str(err)) from None
            records[serial] = _record_of(serial, entry, problem)
        return cls(records)

    def lookup(self, serial: str) -> DeviceRecord | None:
        return self._records.get(serial)


def _record_of(serial: str, entry: object, problem: Callable[[str], ConfigError]) -> DeviceRecord:
    example = 'officer = "PC-4471", type = "body-worn"'
    if not isinstance(entry, dict):
        raise problem(f'[devices."{serial}"] must be a table ({example}), not {entry!r}')
    unknown = sorted(set(entry) - {"officer", "type"})
    if unknown:
        raise problem(f'[devices."{serial}"] has unknown key(s) {", ".join(unknown)}; give {example}')
    officer = entry.get("officer")
    if officer is not None:
        if not isinstance(officer, str):
            raise problem(f'[devices."{serial}"] officer = {officer!r} must be an officer id in quotes')
        try:
            require_identifier(officer, "officer id")
        except InvalidInput as err:
            raise problem(
                f'[devices."{serial}"] {err} (leave officer out for a camera with no officer)'
            ) from None
    device_type = entry.get("type", "camera")
    if not isinstance(device_type, str) or not device_type.strip():
        raise problem(
            f'[devices."{serial}"] type = {device_type!r} must be a name in quotes, e.g. "body-worn"'
        )
    return DeviceRecord(serial=serial, officer_id=officer, device_type=device_type)
