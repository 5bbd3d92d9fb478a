"""The rules every object store enforces the same way: legal keys, and S3 Object Lock semantics.

Both backends check these before touching storage, so the local store behaves exactly as S3 does and
S3 fails early, with the same message, where a fake (moto) or a lenient server would not refuse.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from evidence.errors import InvalidInput, LockedError
from storage.base import Retention

MAX_KEY_LENGTH = 512

_KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9._/-]*")
_PREFIX_PATTERN = re.compile(r"[a-z0-9._/-]*")
_KEY_RULE = (
    "keys are 1-512 characters of a-z 0-9 . _ / -, start with a letter or digit, "
    "and have no empty, '.' or '..' path segments"
)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a legal object key, else raise ``InvalidInput``.

    Both backends call this: on the local store a key becomes a path, so anything that could climb out
    of the store (``..``, a leading ``/``) or alias another key (``a//b``, ``a/./b``) is refused.
    """
    if (
        not isinstance(key, str)
        or len(key) > MAX_KEY_LENGTH
        or not _KEY_PATTERN.fullmatch(key)
        or any(segment in ("", ".", "..") for segment in key.split("/"))
    ):
        raise InvalidInput(f"object key {key!r} is not allowed: {_KEY_RULE}")
    return key


def validate_prefix(prefix: str) -> str:
    """Like :func:`validate_key` for a listing prefix: may be empty and may end part-way or with '/'."""
    if prefix == "":
        return prefix
    complete_segments = prefix.split("/")[:-1]
    if (
        not isinstance(prefix, str)
        or len(prefix) > MAX_KEY_LENGTH
        or not _PREFIX_PATTERN.fullmatch(prefix)
        or not prefix[0].isalnum()
        or any(segment in ("", ".", "..") for segment in complete_segments)
    ):
        raise InvalidInput(f"listing prefix {prefix!r} is not allowed: {_KEY_RULE}")
    return prefix


def validate_retention(retention: Retention | None) -> None:
    """Refuse retention S3 would refuse, so both backends fail the same way before any bytes move."""
    if retention is None:
        return
    if retention.mode not in ("GOVERNANCE", "COMPLIANCE"):
        raise InvalidInput(f"retention mode {retention.mode!r} is not GOVERNANCE or COMPLIANCE")
    if retention.retain_until.tzinfo is None:
        raise InvalidInput(f"retain-until {retention.retain_until} has no time zone; give it in UTC")
    if retention.retain_until <= datetime.now(UTC):
        raise InvalidInput(f"retain-until {retention.retain_until.isoformat()} is not in the future")


def refuse_if_locked(
    key: str, version_id: str, retention: Retention | None, legal_hold: bool, *, bypass_governance: bool
) -> None:
    """The S3 Object Lock rule for deleting one version, shared by both backends' pre-checks."""
    if legal_hold:
        raise LockedError(
            f"{key} (version {version_id}) is under a legal hold; release the hold before deleting it"
        )
    if retention is None or retention.retain_until <= datetime.now(UTC):
        return
    until = iso_utc(retention.retain_until)
    if retention.mode == "COMPLIANCE":
        raise LockedError(
            f"{key} (version {version_id}) is under COMPLIANCE retention until {until}; "
            "nobody can delete it before then"
        )
    if not bypass_governance:
        raise LockedError(
            f"{key} (version {version_id}) is under GOVERNANCE retention until {until}; "
            "it can only be deleted before then with a governance bypass"
        )


def refuse_if_shortening(key: str, version_id: str, current: Retention | None, wanted: Retention) -> None:
    """Retention may move later, in the mode it has: never earlier, and never to another mode. S3 lets
    a version's lock change mode only with the governance bypass, which this program never sends:
    COMPLIANCE to GOVERNANCE would weaken it, and Ceph RGW refuses GOVERNANCE to COMPLIANCE too, even
    once the lock has run out (AWS as well, by Ceph's account); moto allows both."""
    if current is None:
        return
    if current.mode == "COMPLIANCE" and wanted.mode == "GOVERNANCE":
        raise LockedError(
            f"{key} (version {version_id}) is under COMPLIANCE retention until "
            f"{iso_utc(current.retain_until)}; it cannot be weakened to GOVERNANCE"
        )
    if current.mode != wanted.mode:
        raise LockedError(
            f"{key} (version {version_id}) is under {current.mode} retention until "
            f"{iso_utc(current.retain_until)}; S3 changes a lock's mode only with the governance "
            f"bypass, so it can be extended only as {current.mode}"
        )
    if current.retain_until > datetime.now(UTC) and wanted.retain_until < current.retain_until:
        raise LockedError(
            f"{key} (version {version_id}) is retained until {iso_utc(current.retain_until)}; "
            f"retention cannot be shortened to {iso_utc(wanted.retain_until)}"
        )
