"""A storage admin sets up the vault; a station joins it with public keys only; KMS as a second keyring."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from evidence.errors import AccessDenied, ConfigError
from evidence.settings import Settings
from flows.commands import app
from flows.keys import init_keys, open_vault_for_init
from storage.vault import IDENTITY_FILE, Vault
from tests.factories import make_device
from tests.station import make_station

runner = CliRunner()


def test_cli_keys_and_vault_init_on_s3_endpoint(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "admin"))
    monkeypatch.setenv("EVIDENCE_VAULT_URL", "s3://force-evidence/vault")

    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    first = runner.invoke(app, ["vault", "init"])
    assert first.exit_code == 0, first.output
    assert "created" in first.stdout
    again = runner.invoke(app, ["vault", "init"])
    assert again.exit_code == 0 and "already initialised" in again.stdout

    s3 = boto3.client("s3")
    assert s3.get_bucket_versioning(Bucket="force-evidence")["Status"] == "Enabled"
    lock = s3.get_object_lock_configuration(Bucket="force-evidence")["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    block = s3.get_public_access_block(Bucket="force-evidence")["PublicAccessBlockConfiguration"]
    assert all(block.values())
    assert runner.invoke(app, ["vault", "check"]).exit_code == 0


def test_station_with_foreign_id_key_is_refused(tmp_path: Path) -> None:
    station = make_station(tmp_path / "admin")
    other = Settings(data_dir=tmp_path / "other", vault_url=station.settings.vault_url)
    init_keys(other)
    with pytest.raises(ConfigError, match="id key does not belong"):
        Vault.open(other)


def test_uninitialised_vault_says_what_to_run(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh")
    init_keys(settings)
    with pytest.raises(ConfigError, match="evidence vault init"):
        Vault.open(settings)


def test_missing_keys_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="evidence keys init"):
        Vault.open(Settings(data_dir=tmp_path / "nokeys"))


def test_a_lock_period_setting_beyond_any_retention_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # EVIDENCE_RETENTION_DAYS=99999999 once made every ingest fail file by file (an OverflowError)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "station"))
    monkeypatch.setenv("EVIDENCE_RETENTION_DAYS", "99999999")
    refused = CliRunner().invoke(app, ["--user", "sam", "items", "list"])
    assert isinstance(refused.exception, ConfigError) and refused.exception.exit_code == 2
    assert str(refused.exception).startswith("setting retention_days (EVIDENCE_RETENTION_DAYS")
    assert "'99999999'" in str(refused.exception) and "\n" not in str(refused.exception)
    monkeypatch.delenv("EVIDENCE_RETENTION_DAYS")
    station = make_station(tmp_path / "station", retention_days=36525)  # 100 years: the longest period
    assert station.vault.retention_for_new_objects().retain_until.year >= 2100


def test_kms_keyring_alone_can_read_items_back(moto_aws: None, tmp_path: Path) -> None:
    key_arn = boto3.client("kms").create_key(Description="evidence data keys")["KeyMetadata"]["Arn"]
    station = make_station(tmp_path / "station", kms_key_id=key_arn)
    device = make_device(tmp_path / "BWC-KMS01", photos=1, videos=1)
    report = station.ingest(device)
    outcome = report.by_status("ingested")[0]
    manifest = station.vault.manifest(str(outcome.evidence_id))
    assert sorted(r["type"] for r in manifest.recipients) == ["aws-kms", "x25519"]

    # an investigator workstation with KMS decrypt rights but no X25519 identity
    (station.settings.keys_path / IDENTITY_FILE).rename(tmp_path / "identity-elsewhere")
    kms_only = Vault.open(station.settings)
    out = tmp_path / "back"
    kms_only.export_original(kms_only.manifest(str(outcome.evidence_id)), out)
    assert out.read_bytes() == (device / outcome.source_path).read_bytes()

    # and a station with neither key cannot read
    no_keys = Vault.open(station.settings.model_copy(update={"kms_key_id": None}))
    with pytest.raises(AccessDenied):
        no_keys.details(manifest)


def test_vault_init_reports_unfit_bucket(moto_aws: None, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="plain-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    settings = Settings(data_dir=tmp_path / "admin", vault_url="s3://plain-bucket/vault")
    init_keys(settings)
    problems = open_vault_for_init(settings).store.check()
    assert any("lock" in p.lower() for p in problems), problems


def test_vault_init_on_a_server_without_public_access_block(moto_aws: None, tmp_path: Path) -> None:
    """MinIO and Ceph answer NotImplemented to PutPublicAccessBlock; set-up must still complete."""
    from botocore.exceptions import ClientError

    from storage.s3 import S3Store

    store = S3Store("minio-like", "vault")
    real = store.client.put_public_access_block

    def not_implemented(**kwargs: object) -> object:
        raise ClientError(
            {"Error": {"Code": "NotImplemented", "Message": "not here"}}, "PutPublicAccessBlock"
        )

    store.client.put_public_access_block = not_implemented  # type: ignore[method-assign]
    store.initialise()
    assert store.client.get_bucket_versioning(Bucket="minio-like")["Status"] == "Enabled"
    store.client.put_public_access_block = real  # type: ignore[method-assign]
