"""Incident references: the key investigators work by, validated wherever one enters.

A reference comes from people and from records-system exports, so it is hostile input until proven
otherwise. It is normalised (outer whitespace dropped, letters upper-cased) and must then match the
force's pattern in full, in ASCII: a Cyrillic 'К' or a full-width digit that looks right is refused,
so two references that look the same are the same. References never become part of an object key;
in queries they are bound parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from evidence.errors import ConfigError, InvalidReference
from evidence.settings import DEFAULT_INCIDENT_REF_PATTERN

MAX_REFERENCE_LENGTH = 64


@dataclass(frozen=True, order=True, slots=True)  # slots: a large records-system feed holds many
class IncidentRef:
    value: str

    def __str__(self) -> str:
        return self.value


@lru_cache(maxsize=8)
def _compiled(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.ASCII)
    except re.error as err:
        raise ConfigError(
            f"incident_ref_pattern {pattern!r} is not a valid regular expression: {err}"
        ) from err


def parse_incident_ref(raw: str, pattern: str = DEFAULT_INCIDENT_REF_PATTERN) -> IncidentRef:
    """Normalise and validate, or raise ``InvalidReference`` with a message a person can act on."""
    if not isinstance(raw, str):
        raise InvalidReference("an incident reference must be text")
    if len(raw) > MAX_REFERENCE_LENGTH * 4:
        raise InvalidReference(
            f"incident reference is {len(raw)} characters long; references are short codes"
        )
    typed = raw.strip()
    shown = typed if len(typed) <= 40 else typed[:37] + "..."
    if not typed:
        raise InvalidReference("incident reference is empty")
    # checked before upper-casing: 'ı' (dotless i), 'ſ' (long s) and 'ﬀ' become ASCII when upper-cased,
    # so a look-alike would otherwise pass as a different, valid reference
    if not typed.isascii() or not typed.isprintable():
        raise InvalidReference(
            f"incident reference {shown!r} contains characters outside plain ASCII (look-alike letters "
            "or digits?); type it again from the records system"
        )
    candidate = typed.upper()
    if len(candidate) > MAX_REFERENCE_LENGTH or not _compiled(pattern).fullmatch(candidate):
        raise InvalidReference(
            f"{shown!r} is not an incident reference in this force's format "
            "(for example KNT-2026-000123 or 37/12345/26)"
        )
    return IncidentRef(candidate)
