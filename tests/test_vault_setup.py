"""A storage admin sets up the vault; a station joins it with public keys only; KMS as a second keyring."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from cli.commands import app
from evidence.errors import AccessDenied, ConfigError
from evidence.settings import Settings
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
    assert "note" not in first.stdout  # nothing to say: every flag on, and writes still work
    assert _left_under("force-evidence", "vault/init-probe/") == []  # the probe is gone, no marker
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
    [note] = store.initialise()
    assert "has no public access block" in note
    assert store.client.get_bucket_versioning(Bucket="minio-like")["Status"] == "Enabled"
    assert _left_under("minio-like", "") == []  # writes were still probed, and the probe removed
    store.client.put_public_access_block = real  # type: ignore[method-assign]


# -- the public access block, probed (docs/storage.md §3.4) -----------------------------------------


def _rgw_like_server(
    monkeypatch: pytest.MonkeyPatch, flags: tuple[str, ...] = ("BlockPublicAcls",)
) -> list[str]:
    """Every client the program builds from now on talks to a server that refuses PutObject while any
    of ``flags`` is on, as Ceph RGW 16 does with BlockPublicAcls. Returns the keys refused."""
    import storage.s3
    from tests.s3_behaviour import refuse_puts_while_blocked

    real = storage.s3.default_client
    refused: list[str] = []

    def client(concurrency: int = 4) -> object:
        built = real(concurrency)
        refuse_puts_while_blocked(built, _s3(), flags, refused)
        return built

    monkeypatch.setattr(storage.s3, "default_client", client)
    return refused


def _s3() -> Any:
    """A client of a session of its own: boto3's default session keeps the first credentials it
    found, another test's fake ones included."""
    return boto3.session.Session().client("s3")


def _left_under(bucket: str, prefix: str) -> list[str]:
    """Every version and delete marker under ``prefix``: what a probe could have left behind."""
    listed = _s3().list_object_versions(Bucket=bucket, Prefix=prefix)
    return [
        f"{e['Key']} {e['VersionId']}" for e in listed.get("Versions", []) + listed.get("DeleteMarkers", [])
    ]


def _block(bucket: str) -> dict[str, bool]:
    return dict(_s3().get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"])


def _tags(bucket: str) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        tag_set = _s3().get_bucket_tagging(Bucket=bucket)["TagSet"]
    except ClientError:
        return {}
    return {t["Key"]: t["Value"] for t in tag_set}


ALL_FOUR = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
RELAXED = {
    "BlockPublicAcls": False,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


@pytest.mark.slow
def test_vault_init_leaves_off_only_the_flag_that_breaks_writes_and_says_why(
    moto_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.s3
    from storage.s3 import PUBLIC_ACCESS_TAG

    server_as_built = storage.s3.default_client
    refused = _rgw_like_server(monkeypatch)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "admin"))
    monkeypatch.setenv("EVIDENCE_VAULT_URL", "s3://rgw-like/vault")
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0

    first = runner.invoke(app, ["vault", "init"])
    assert first.exit_code == 0, first.output
    assert "vault created" in first.stdout
    note = " ".join(first.stdout.split())
    assert "refuses every write to bucket rgw-like while BlockPublicAcls is on, so it is left off" in note
    assert "IgnorePublicAcls" in note and PUBLIC_ACCESS_TAG in note
    # the probe really met the refusal, under the vault's prefix, and left nothing behind
    assert refused and all(key.startswith("vault/init-probe/") for key in refused), refused
    assert _left_under("rgw-like", "vault/init-probe/") == []
    assert _block("rgw-like") == RELAXED
    assert _tags("rgw-like") == {PUBLIC_ACCESS_TAG: "BlockPublicAcls"}
    assert boto3.client("s3").head_object(Bucket="rgw-like", Key="vault/vault.json")  # the vault was written
    assert runner.invoke(app, ["vault", "check"]).exit_code == 0
    again = runner.invoke(app, ["vault", "init"])
    assert again.exit_code == 0 and "already initialised" in again.stdout and "left off" in again.stdout
    assert _left_under("rgw-like", "vault/init-probe/") == []

    # check still reports a bucket whose public access is really unblocked ...
    s3 = boto3.client("s3")
    s3.put_public_access_block(
        Bucket="rgw-like", PublicAccessBlockConfiguration=RELAXED | {"IgnorePublicAcls": False}
    )
    unblocked = runner.invoke(app, ["vault", "check"])
    assert unblocked.exit_code == 1 and "IgnorePublicAcls" in unblocked.output, unblocked.output
    # ... and BlockPublicAcls off with no record of why
    s3.put_public_access_block(Bucket="rgw-like", PublicAccessBlockConfiguration=RELAXED)
    s3.delete_bucket_tagging(Bucket="rgw-like")
    unrecorded = runner.invoke(app, ["vault", "check"])
    assert unrecorded.exit_code == 1 and "no record says" in " ".join(unrecorded.output.split())
    assert runner.invoke(app, ["vault", "init"]).exit_code == 0
    assert runner.invoke(app, ["vault", "check"]).exit_code == 0

    # the server is fixed (an upgrade): init blocks all four again and drops the record
    monkeypatch.setattr(storage.s3, "default_client", server_as_built)
    fixed = runner.invoke(app, ["vault", "init"])
    assert fixed.exit_code == 0 and "note" not in fixed.stdout, (fixed.output, fixed.exception)
    assert _block("rgw-like") == dict.fromkeys(ALL_FOUR, True)
    assert _tags("rgw-like") == {}
    assert runner.invoke(app, ["vault", "check"]).exit_code == 0


def test_vault_init_keeps_the_other_tags_of_a_bucket(
    moto_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storage.s3 import PUBLIC_ACCESS_TAG, S3Store

    _rgw_like_server(monkeypatch)
    boto3.client("s3").create_bucket(
        Bucket="tagged",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-2"},
        ObjectLockEnabledForBucket=True,
    )
    boto3.client("s3").put_bucket_tagging(
        Bucket="tagged", Tagging={"TagSet": [{"Key": "cost-centre", "Value": "K9"}]}
    )
    S3Store("tagged", "vault").initialise()
    assert _tags("tagged") == {"cost-centre": "K9", PUBLIC_ACCESS_TAG: "BlockPublicAcls"}


def test_vault_init_refuses_a_server_where_no_safe_block_lets_the_vault_be_written(
    moto_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes refused under any flag: the only block that works is none. Init says so, at init, and
    leaves the block fully on; nothing is written, the probe included."""
    refused = _rgw_like_server(monkeypatch, flags=ALL_FOUR)
    settings = Settings(data_dir=tmp_path / "admin", vault_url="s3://no-safe-block/vault")
    init_keys(settings)
    with pytest.raises(ConfigError) as failed:
        open_vault_for_init(settings).initialise()
    message = str(failed.value)
    assert "no setting both keeps the vault private and lets it be written" in message
    assert "left fully on" in message and "docs/storage.md" in message
    assert len(refused) == 2  # all four on, then BlockPublicAcls off; the third probe, unblocked, wrote
    assert _block("no-safe-block") == dict.fromkeys(ALL_FOUR, True)
    assert _left_under("no-safe-block", "") == []

    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "admin"))
    monkeypatch.setenv("EVIDENCE_VAULT_URL", "s3://no-safe-block/vault")
    cli = runner.invoke(app, ["vault", "init"])
    assert isinstance(cli.exception, ConfigError) and cli.exception.exit_code == 2


def test_vault_init_with_credentials_that_may_not_write_is_access_denied(
    moto_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal that stays with no block at all is not the block's doing: the credentials are named."""
    from storage.s3 import S3Store

    store = S3Store("read-only-admin", "vault")

    def refuse_everything(**_: object) -> None:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")

    store.client.meta.events.register("before-parameter-build.s3.PutObject", refuse_everything)
    with pytest.raises(AccessDenied, match="with or without a public access block") as failed:
        store.initialise()
    assert "s3:PutObject" in str(failed.value) and "vault/init-probe/" in str(failed.value)
    assert _block("read-only-admin") == dict.fromkeys(ALL_FOUR, True)


def test_vault_init_removes_its_probe_from_a_bucket_that_locks_everything_by_default(
    moto_aws: None, tmp_path: Path
) -> None:
    """A default retention rule (MinIO's compose set-up has one) would lock the probe for a month; it
    gets a lock of seconds instead, and is removed once that has passed."""
    from storage.s3 import S3Store

    s3 = boto3.client("s3")
    s3.create_bucket(
        Bucket="locked-by-default",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-2"},
        ObjectLockEnabledForBucket=True,
    )
    s3.put_object_lock_configuration(
        Bucket="locked-by-default",
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 31}},
        },
    )
    assert S3Store("locked-by-default", "vault").initialise() == []
    assert _left_under("locked-by-default", "") == []
    assert _block("locked-by-default") == dict.fromkeys(ALL_FOUR, True)


def test_vault_init_and_check_on_ceph_rgw(
    rgw_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real server: RGW 16 refuses every PutObject under BlockPublicAcls. Init finds that out,
    leaves that one flag off, and the vault is still private: a public ACL, which RGW now accepts,
    gives an anonymous client nothing while IgnorePublicAcls is on, and everything once it is off."""
    import botocore.config
    from botocore import UNSIGNED
    from botocore.exceptions import ClientError

    from storage.s3 import PUBLIC_ACCESS_TAG
    from tests.rgw import unique_bucket

    bucket = unique_bucket()
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "admin"))
    monkeypatch.setenv("EVIDENCE_VAULT_URL", f"s3://{bucket}/vault")
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    first = runner.invoke(app, ["vault", "init"])
    assert first.exit_code == 0, (first.output, first.exception)
    assert "while BlockPublicAcls is on, so it is left off" in " ".join(first.stdout.split())
    assert _block(bucket) == RELAXED
    assert _tags(bucket) == {PUBLIC_ACCESS_TAG: "BlockPublicAcls"}
    assert _left_under(bucket, "vault/init-probe/") == []
    assert runner.invoke(app, ["vault", "check"]).exit_code == 0
    again = runner.invoke(app, ["vault", "init"])
    assert again.exit_code == 0 and "already initialised" in again.stdout
    assert _left_under(bucket, "vault/init-probe/") == []

    owner = rgw_env.client(request_checksum_calculation="when_required")
    anonymous = boto3.session.Session().client(
        "s3",
        endpoint_url=rgw_env.https_url,
        verify=str(rgw_env.ca_bundle),
        region_name=rgw_env.region,
        config=botocore.config.Config(signature_version=UNSIGNED),
    )
    body = b"not for the public"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324
    owner.put_object(Bucket=bucket, Key="vault/acl-test", Body=body, ContentMD5=md5, ACL="public-read")
    owner.put_bucket_acl(Bucket=bucket, ACL="public-read")

    def anonymous_reads() -> bool:
        try:
            anonymous.get_object(Bucket=bucket, Key="vault/acl-test")["Body"].read()
            anonymous.list_objects_v2(Bucket=bucket)
        except ClientError as err:
            assert err.response["Error"]["Code"] == "AccessDenied"
            return False
        return True

    assert not anonymous_reads()
    # what `vault check` must report: IgnorePublicAcls off, and the ACLs take effect at once
    owner.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration=RELAXED | {"IgnorePublicAcls": False}
    )
    unblocked = runner.invoke(app, ["vault", "check"])
    assert unblocked.exit_code == 1 and "IgnorePublicAcls" in unblocked.output, unblocked.output
    assert anonymous_reads()
    owner.put_bucket_acl(Bucket=bucket, ACL="private")
    owner.put_object_acl(Bucket=bucket, Key="vault/acl-test", ACL="private")
    owner.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=RELAXED)
    assert runner.invoke(app, ["vault", "check"]).exit_code == 0
