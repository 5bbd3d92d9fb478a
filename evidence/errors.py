"""The one exception hierarchy callers act on.

Every error a person can meet derives from :class:`EvidenceError`; the CLI prints its message as one
line and exits with its ``exit_code``. Messages say what happened and what to do next. Subclasses also
inherit the nearest builtin so generic handlers (``except PermissionError``) keep working.
"""

from __future__ import annotations


class EvidenceError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(EvidenceError):
    """Settings, key files or the vault URL are missing or wrong."""

    exit_code = 2


class InvalidInput(EvidenceError, ValueError):
    """An argument, file or name given by a person or device cannot be accepted as it is."""

    exit_code = 2


class InvalidReference(InvalidInput):
    """An incident reference does not match the force's reference format."""


class IntegrityError(EvidenceError):
    """Stored bytes do not match what was recorded at ingest, or a record was altered."""

    exit_code = 3


class LockedError(EvidenceError, PermissionError):
    """A retention period or legal hold forbids this change."""

    exit_code = 4


class AccessDenied(EvidenceError, PermissionError):
    """The user, role or storage credentials are not allowed to do this."""

    exit_code = 5


class NotFound(EvidenceError, LookupError):
    """No such evidence item, object or record."""

    exit_code = 6


class ServiceUnavailable(EvidenceError, ConnectionError):
    """A service the command needs (the store, the Prefect server) is unreachable, answers 5xx or
    times out: a passing failure, safe to retry."""

    exit_code = 8


class StorageError(EvidenceError, OSError):
    """The store refused or failed in a way retrying will not fix (full disk, read-only mount)."""

    exit_code = 7


class StorageUnavailable(StorageError, ServiceUnavailable):
    """A transient storage failure (throttling, 5xx, timeout, reset): safe to retry."""

    exit_code = 8


class DeviceBusy(EvidenceError, BlockingIOError):
    """Another run on this station is ingesting the device: retry once it has finished."""

    exit_code = 8


class AlreadyExists(StorageError, FileExistsError):
    """A create-only write found the key already present (another run stored it first)."""
