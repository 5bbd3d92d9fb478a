"""Turn ``settings.vault_url`` into the object store it names."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from evidence.errors import ConfigError
from evidence.settings import Settings
from storage.base import ObjectStore

_ACCEPTED_FORMS = "file:///absolute/path or s3://bucket[/prefix]"


def open_store(settings: Settings) -> ObjectStore:
    """The store for ``settings.vault_url``; S3 endpoints and credentials come from boto3's chain."""
    url = settings.vault_url
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigError(f"vault URL {url!r} must not have a query or fragment; use {_ACCEPTED_FORMS}")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"vault URL {url!r} is not an absolute file URL; use {_ACCEPTED_FORMS}")
        from storage.local import LocalStore

        return LocalStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"vault URL {url!r} names no bucket; use {_ACCEPTED_FORMS}")
        # Imported here so a station on the local store never needs boto3 to start.
        from storage.s3 import S3Store

        return S3Store(
            parts.netloc,
            unquote(parts.path).strip("/"),
            part_size=settings.part_size,
            concurrency=settings.upload_concurrency,
        )
    raise ConfigError(f"vault URL {url!r} is not supported; use {_ACCEPTED_FORMS}")
