"""All configuration in one object.

Values come from, highest first: keyword arguments, ``EVIDENCE_*`` environment variables, the TOML file
named by ``EVIDENCE_CONFIG`` (or ``<data_dir>/evidence.toml``), then the defaults below. S3 endpoints
and credentials are deliberately *not* here: boto3's own chain (``AWS_ENDPOINT_URL_S3``,
``AWS_PROFILE``, instance roles) supplies them, so MinIO, Ceph and AWS work unchanged.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from evidence.errors import ConfigError

MiB = 1024 * 1024

# UK force references: force code, year and serial (KNT-2026-000123), or the older
# division/serial/year form (37/12345/26).
DEFAULT_INCIDENT_REF_PATTERN = r"[A-Z]{2,5}-[0-9]{4}-[0-9]{3,8}|[0-9]{1,3}/[0-9]{1,7}/[0-9]{2}"


def _default_data_dir() -> Path:
    return Path.home() / ".evidence-pipeline"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVIDENCE_", extra="ignore", frozen=True)

    data_dir: Path = Field(default_factory=_default_data_dir)
    """Station-local state: embedded vault, keys, journal, catalog."""

    vault_url: str = ""
    """``file:///path`` or ``s3://bucket/prefix``; empty means ``file://<data_dir>/vault``."""

    keys_dir: Path | None = None
    """Where ``evidence keys init`` writes key files; default ``<data_dir>/keys``."""

    kms_key_id: str | None = None
    """AWS KMS key (id, ARN or alias) used as a second keyring for every data key."""

    station_id: str = Field(default_factory=socket.gethostname)
    device_registry: Path | None = None
    """TOML file mapping device serial -> officer and device type; default ``<data_dir>/devices.toml``."""

    retention_days: int = Field(default=31, ge=1, le=36525)
    """Default Object Lock retain-until for new objects, in days from ingest; at most 100 years, the
    longest retention period (``evidence.retention.LONGEST_PERIOD_YEARS``): more is a typing mistake,
    and a lock past the year 9999 cannot even be computed."""
    lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"

    segment_size: int = Field(default=1 * MiB, ge=4096, le=64 * MiB)
    part_size: int = Field(default=8 * MiB, ge=5 * MiB, le=512 * MiB)
    upload_concurrency: int = Field(default=8, ge=1, le=32)
    verify_readback: bool = False
    """Re-read every stored object before declaring it verified (slower; checksums suffice on S3)."""

    settle_seconds: float = Field(default=2.0, ge=0)
    """A file whose size or mtime changed within this window is still being written: deferred."""

    ingest_workers: int = Field(default=4, ge=1, le=32)
    """Batches of one device ingested at once. Four, not two: a small file's time is mostly waiting
    for fsyncs, which overlap (1,000 tiny files: 48 against 38 files/s, 2 cores, 2026-12-06)."""
    ingest_batch_files: int = Field(default=25, ge=1, le=1000)
    """Files one Prefect task of the ingest flow takes at most: a task costs more than a small photo
    (``flows.ingest_batches``); a retry resumes the batch where it failed."""
    ingest_batch_bytes: int = Field(default=64 * MiB, ge=1)
    """Bytes one ingest task takes at most; a larger file is a batch of its own."""

    user: str | None = None
    """The acting person (``--user`` overrides); their role comes from ``users_file``."""
    users_file: Path | None = None
    """TOML: ``[users.<id>] role = "investigator"``; default ``<data_dir>/users.toml``."""

    incident_ref_pattern: str = DEFAULT_INCIDENT_REF_PATTERN
    """Regular expression a normalised incident reference must match in full (ASCII only)."""

    catalog_url: str = ""
    """SQLAlchemy URL of the query index; empty means SQLite at ``<data_dir>/catalog.sqlite``."""

    link_tolerance_minutes: int = Field(default=15, ge=0, le=24 * 60)
    """Feed linking: how far outside an incident's window a recording may start and still match."""

    retention_policy: Path | None = None
    """Retention policy TOML; default: the policy shipped in ``evidence/default_policy.toml``."""

    accounts_url: str = ""
    """SQLAlchemy URL of people's accounts, sessions and sign-in records (the portal and ``evidence
    users``); empty means SQLite at ``<data_dir>/accounts.sqlite``. Unlike the catalog it cannot be
    rebuilt from the vault: back it up."""

    session_idle_minutes: int = Field(default=15, ge=1, le=24 * 60)
    """A portal session unused this long ends; the person signs in again."""
    session_absolute_hours: float = Field(default=8, gt=0, le=24)
    """A portal session ends this long after sign-in, however busy."""
    cookie_secure: bool = True
    """The session cookie is sent over HTTPS only (and to ``localhost``, which browsers trust)."""

    oidc_issuer: str = ""
    """The force's OpenID Connect provider (Entra ID, ADFS, Keycloak); empty: local accounts only."""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_roles_claim: str = "roles"
    """The ID-token claim (a role name or a list of them) that gives a person their roles."""
    oidc_user_claim: str = "preferred_username"
    """The claim naming the person in custody records (falls back to ``sub``)."""
    oidc_redirect_uri: str = ""
    """The callback registered at the provider (``https://<host>/sign-in/oidc/callback``); empty: built
    from each request's own scheme and host, which is wrong behind a proxy that terminates TLS."""
    oidc_provider_name: str = ""
    """What the sign-in page calls the provider ("Sign in with Kent Police"); empty: its host name."""

    @model_validator(mode="after")
    def _fill_derived_paths(self) -> Settings:
        # frozen model: derived defaults are set once, here, so every reader sees the same paths
        if not self.vault_url:
            object.__setattr__(self, "vault_url", (self.data_dir / "vault").resolve().as_uri())
        if self.keys_dir is None:
            object.__setattr__(self, "keys_dir", self.data_dir / "keys")
        if self.device_registry is None:
            object.__setattr__(self, "device_registry", self.data_dir / "devices.toml")
        if self.users_file is None:
            object.__setattr__(self, "users_file", self.data_dir / "users.toml")
        if not self.catalog_url:
            object.__setattr__(
                self, "catalog_url", f"sqlite:///{(self.data_dir / 'catalog.sqlite').resolve()}"
            )
        if not self.accounts_url:
            object.__setattr__(
                self, "accounts_url", f"sqlite:///{(self.data_dir / 'accounts.sqlite').resolve()}"
            )
        if self.retention_policy is None:
            object.__setattr__(self, "retention_policy", Path(__file__).with_name("default_policy.toml"))
        return self

    @property
    def keys_path(self) -> Path:
        assert self.keys_dir is not None
        return self.keys_dir

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, _config_file()))


def _config_file() -> Path | None:
    # The one place outside Settings that reads the environment: it must, to find the file itself.
    named = os.environ.get("EVIDENCE_CONFIG")
    if named:
        return Path(named)
    data_dir = os.environ.get("EVIDENCE_DATA_DIR")
    candidate = (Path(data_dir) if data_dir else _default_data_dir()) / "evidence.toml"
    return candidate if candidate.exists() else None


def load_settings(**overrides: Any) -> Settings:
    """The settings, or ``ConfigError`` naming the first setting that cannot be accepted (one line,
    exit 2), never a validation traceback."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        problem = err.errors()[0]
        name = ".".join(str(part) for part in problem["loc"]) or "settings"
        raise ConfigError(
            f"setting {name} (EVIDENCE_{name.upper()} or the settings file): {problem['msg']}, "
            f"not {problem.get('input')!r}"
        ) from None
