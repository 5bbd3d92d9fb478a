"""Wrapping per-item data keys (docs/format.md §5-§6): X25519 recipients and identities, AWS KMS."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from evidence import keyring, stream
from evidence.errors import (
    AccessDenied,
    ConfigError,
    IntegrityError,
    InvalidInput,
    StorageError,
    StorageUnavailable,
)
from evidence.keyring import X25519Identity, X25519Recipient, generate_identity, unwrap_data_key
from storage.kms import ENCRYPTION_CONTEXT, KmsKeyring

REGION = "eu-west-2"


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "station" / "keys"


@pytest.fixture
def identity(keys_dir: Path) -> X25519Identity:
    private_path, _ = generate_identity(keys_dir)
    return X25519Identity.from_file(private_path)


# --- key files (§6) -------------------------------------------------------------------------------------


def test_generate_identity_writes_a_private_and_a_public_file(keys_dir: Path) -> None:
    private_path, public_path = generate_identity(keys_dir)

    assert private_path == keys_dir / "vault-identity.key"
    assert public_path == keys_dir / "vault-recipient.pub"
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) & 0o077 in (0o044, 0o004, 0o040, 0)
    private_lines = private_path.read_text().splitlines()
    public_lines = public_path.read_text().splitlines()
    assert private_lines[0] == "evidence-pipeline x25519 identity v1"
    assert public_lines[0] == "evidence-pipeline x25519 recipient v1"
    private_raw = base64.b64decode(private_lines[1], validate=True)
    public_raw = base64.b64decode(public_lines[1], validate=True)
    assert X25519PrivateKey.from_private_bytes(private_raw).public_key().public_bytes_raw() == public_raw

    identity = X25519Identity.from_file(private_path)
    recipient = X25519Recipient.from_file(public_path)
    assert identity.recipient == recipient
    assert recipient.key_id == hashlib.sha256(public_raw).hexdigest()[:16]
    assert identity.key_id == recipient.key_id
    assert recipient.name == f"x25519:{recipient.key_id}"
    assert base64.b64encode(private_raw).decode() not in repr(identity)


def test_umask_does_not_loosen_or_block_the_private_file(keys_dir: Path) -> None:
    previous = os.umask(0)
    try:
        private_path, _ = generate_identity(keys_dir)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600


def test_generate_identity_refuses_to_overwrite(keys_dir: Path) -> None:
    private_path, public_path = generate_identity(keys_dir)
    before = private_path.read_bytes(), public_path.read_bytes()
    with pytest.raises(InvalidInput, match="refusing to overwrite"):
        generate_identity(keys_dir)
    assert (private_path.read_bytes(), public_path.read_bytes()) == before

    private_path.unlink()  # a recipient alone is still somebody's key: keep it
    with pytest.raises(InvalidInput, match=r"vault-recipient\.pub already exists"):
        generate_identity(keys_dir)
    assert public_path.read_bytes() == before[1]
    assert not private_path.exists()


def test_generate_identity_never_follows_a_planted_symlink(keys_dir: Path, tmp_path: Path) -> None:
    # A dangling link passes an exists() check; only O_EXCL stops the key being written where it points.
    keys_dir.mkdir(parents=True)
    elsewhere = tmp_path / "attacker-readable" / "stolen.key"
    elsewhere.parent.mkdir()
    (keys_dir / "vault-identity.key").symlink_to(elsewhere)
    with pytest.raises(InvalidInput, match="refusing to overwrite"):
        generate_identity(keys_dir)
    assert not elsewhere.exists()
    assert not (keys_dir / "vault-recipient.pub").exists()


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (None, "does not exist"),
        ("", "not an evidence-pipeline identity"),
        ("evidence-pipeline x25519 recipient v1\n" + "A" * 43 + "=\n", "not an evidence-pipeline identity"),
        ("evidence-pipeline x25519 identity v1\nnot base64!\n", "not valid base64"),
        ("evidence-pipeline x25519 identity v1\n" + base64.b64encode(b"x" * 31).decode() + "\n", "31 bytes"),
        (
            "evidence-pipeline x25519 identity v1\n" + "A" * 43 + "=\nextra\n",
            "not an evidence-pipeline identity",
        ),
    ],
)
def test_garbled_identity_files_are_config_errors(tmp_path: Path, contents: str | None, message: str) -> None:
    path = tmp_path / "vault-identity.key"
    if contents is not None:
        path.write_text(contents)
    with pytest.raises(ConfigError, match=message) as raised:
        X25519Identity.from_file(path)
    assert str(path) in str(raised.value)
    assert "evidence keys init" in str(raised.value)


def test_garbled_recipient_files_are_config_errors(tmp_path: Path, identity: X25519Identity) -> None:
    path = tmp_path / "vault-recipient.pub"
    path.write_text(identity.to_text())  # the private file where the public one belongs
    with pytest.raises(ConfigError, match="not an evidence-pipeline recipient") as raised:
        X25519Recipient.from_file(path)
    assert "evidence keys init" in str(raised.value)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ConfigError, match="cannot read"):
        X25519Recipient.from_file(path)


def test_key_files_tolerate_surrounding_whitespace(tmp_path: Path, identity: X25519Identity) -> None:
    path = tmp_path / "copied.pub"
    path.write_text("\n" + identity.recipient.to_text().replace("\n", "  \r\n") + "\n\n")
    assert X25519Recipient.from_file(path) == identity.recipient


# --- X25519 stanzas (§5.2) ----------------------------------------------------------------------------


def test_x25519_wrap_and_unwrap(identity: X25519Identity) -> None:
    data_key = stream.new_data_key()
    stanza = identity.recipient.wrap(data_key)

    assert set(stanza) == {"type", "key_id", "epk", "wrapped"}
    assert stanza["type"] == "x25519"
    assert stanza["key_id"] == identity.key_id
    assert len(base64.b64decode(stanza["epk"])) == 32
    assert len(base64.b64decode(stanza["wrapped"])) == 48
    assert identity.unwrap(stanza) == data_key
    assert identity.recipient.unwrap(stanza) is None  # a station holding the public key opens nothing
    assert identity.recipient.wrap(data_key) != stanza  # fresh ephemeral key every time
    assert identity.unwrap(identity.wrap(data_key)) == data_key


def test_stanza_follows_the_documented_construction(identity: X25519Identity) -> None:
    data_key = stream.new_data_key()
    stanza = identity.recipient.wrap(data_key)
    private_raw = base64.b64decode(identity.to_text().splitlines()[1])
    epk = base64.b64decode(stanza["epk"])
    shared = X25519PrivateKey.from_private_bytes(private_raw).exchange(X25519PublicKey.from_public_bytes(epk))
    wrap_key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=epk + identity.recipient.public_key,
        info=b"evidence-pipeline/x25519/v1",
    ).derive(shared)
    assert (
        ChaCha20Poly1305(wrap_key).decrypt(bytes(12), base64.b64decode(stanza["wrapped"]), None) == data_key
    )


def test_wrong_identity_gets_none_and_access_denied(identity: X25519Identity) -> None:
    stranger = X25519Identity.generate()
    stanza = identity.recipient.wrap(stream.new_data_key())
    assert stranger.unwrap(stanza) is None
    with pytest.raises(AccessDenied, match="no key here can open this item") as raised:
        unwrap_data_key([stanza], [stranger, identity.recipient])
    assert identity.key_id in str(raised.value)
    assert stranger.key_id in str(raised.value)


def test_stanzas_of_other_types_or_key_ids_are_not_ours(identity: X25519Identity) -> None:
    stanza = identity.recipient.wrap(stream.new_data_key())
    assert identity.unwrap({**stanza, "type": "aws-kms"}) is None
    assert identity.unwrap({**stanza, "key_id": "0" * 16}) is None
    assert identity.unwrap({"type": "scrypt"}) is None


def _flip_b64(value: str, index: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[index] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: {**s, "wrapped": _flip_b64(s["wrapped"], 0)}, "altered"),
        (lambda s: {**s, "wrapped": _flip_b64(s["wrapped"], 47)}, "altered"),
        (lambda s: {**s, "epk": _flip_b64(s["epk"], 5)}, "altered"),
        (lambda s: {**s, "epk": base64.b64encode(bytes(32)).decode()}, "low-order"),
        (lambda s: {**s, "epk": base64.b64encode(b"\x01" + bytes(31)).decode()}, "low-order"),
        (lambda s: {**s, "epk": "@@@"}, "not valid base64"),
        (lambda s: {**s, "wrapped": base64.b64encode(b"short").decode()}, "5-byte"),
        (lambda s: {k: v for k, v in s.items() if k != "epk"}, "no 'epk'"),
    ],
)
def test_tampered_x25519_stanza_is_an_integrity_error(
    identity: X25519Identity, change: Any, message: str
) -> None:
    stanza = identity.recipient.wrap(stream.new_data_key())
    with pytest.raises(IntegrityError, match=message):
        identity.unwrap(change(stanza))


def test_wrap_refuses_keys_of_the_wrong_size(identity: X25519Identity) -> None:
    with pytest.raises(InvalidInput, match="32 bytes"):
        identity.recipient.wrap(b"too short")


def test_unwrap_data_key_prefers_keys_that_open_and_reports_tampering(identity: X25519Identity) -> None:
    data_key = stream.new_data_key()
    second = X25519Identity.generate()
    good = [identity.recipient.wrap(data_key), second.recipient.wrap(data_key)]
    tampered = {**good[0], "wrapped": _flip_b64(good[0]["wrapped"], 3)}

    assert unwrap_data_key(good, [identity]) == data_key
    assert unwrap_data_key(good, [second]) == data_key
    assert unwrap_data_key([tampered, good[1]], [identity, second]) == data_key
    with pytest.raises(IntegrityError, match="altered"):
        unwrap_data_key([tampered, good[1]], [identity])
    with pytest.raises(AccessDenied, match="wrapped for no keys at all"):
        unwrap_data_key([], [identity])


# --- AWS KMS (§5.3) -------------------------------------------------------------------------------------


class CountingClient:
    """A real boto3 client that counts the KMS calls made through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[str] = []

    def encrypt(self, **kwargs: Any) -> Any:
        self.calls.append("encrypt")
        return self.client.encrypt(**kwargs)

    def decrypt(self, **kwargs: Any) -> Any:
        self.calls.append("decrypt")
        return self.client.decrypt(**kwargs)


@pytest.fixture
def kms(moto_aws: None) -> Iterator[Any]:
    yield boto3.client("kms", region_name=os.environ["AWS_DEFAULT_REGION"])


def _new_key(kms: Any) -> dict[str, str]:
    metadata = kms.create_key(Description="evidence test key")["KeyMetadata"]
    return {"id": metadata["KeyId"], "arn": metadata["Arn"]}


def test_kms_wrap_and_unwrap(kms: Any) -> None:
    key = _new_key(kms)
    data_key = stream.new_data_key()
    station = KmsKeyring(key["id"])  # default client: boto3's chain, as deployed

    stanza = station.wrap(data_key)

    assert stanza["type"] == "aws-kms"
    assert stanza["key_id"] == key["arn"]
    assert set(stanza) == {"type", "key_id", "blob"}
    plain = kms.decrypt(CiphertextBlob=base64.b64decode(stanza["blob"]), EncryptionContext=ENCRYPTION_CONTEXT)
    assert plain["Plaintext"] == data_key
    assert KmsKeyring(key["id"], client=kms).unwrap(stanza) == data_key
    assert KmsKeyring(key["arn"], client=kms).unwrap(stanza) == data_key


def test_kms_unwrap_through_an_alias(kms: Any) -> None:
    key = _new_key(kms)
    kms.create_alias(AliasName="alias/evidence", TargetKeyId=key["id"])
    data_key = stream.new_data_key()
    stanza = KmsKeyring("alias/evidence", client=kms).wrap(data_key)
    assert stanza["key_id"] == key["arn"]
    assert KmsKeyring("alias/evidence", client=kms).unwrap(stanza) == data_key


def test_kms_stanza_for_another_key_is_not_ours_and_costs_no_call(kms: Any) -> None:
    ours, theirs = _new_key(kms), _new_key(kms)
    stanza = KmsKeyring(theirs["id"], client=kms).wrap(stream.new_data_key())
    for key_id in (ours["id"], ours["arn"]):
        counting = CountingClient(kms)
        assert KmsKeyring(key_id, client=counting).unwrap(stanza) is None
        assert counting.calls == []
    assert KmsKeyring(ours["id"], client=kms).unwrap({"type": "x25519", "key_id": "abc"}) is None


def test_kms_tampered_blob_or_context_is_an_integrity_error(kms: Any) -> None:
    key = _new_key(kms)
    keyring_ = KmsKeyring(key["id"], client=kms)
    stanza = keyring_.wrap(stream.new_data_key())
    with pytest.raises(IntegrityError):
        keyring_.unwrap({**stanza, "blob": _flip_b64(stanza["blob"], -1)})
    foreign = kms.encrypt(KeyId=key["id"], Plaintext=bytes(32), EncryptionContext={"purpose": "other-app"})
    with pytest.raises(IntegrityError, match="another purpose"):
        keyring_.unwrap({**stanza, "blob": base64.b64encode(foreign["CiphertextBlob"]).decode()})
    with pytest.raises(IntegrityError, match="not valid base64"):
        keyring_.unwrap({**stanza, "blob": "***"})


def test_kms_unknown_key_is_a_config_error(kms: Any) -> None:
    with pytest.raises(ConfigError, match="alias/missing"):
        KmsKeyring("alias/missing", client=kms).wrap(stream.new_data_key())


@pytest.mark.parametrize(
    ("code", "status", "expected", "message"),
    [
        ("AccessDeniedException", 400, AccessDenied, "kms:Decrypt"),
        ("NotFoundException", 400, ConfigError, "kms_key_id"),
        ("DisabledException", 400, ConfigError, "enabled"),
        ("InvalidCiphertextException", 400, IntegrityError, "altered"),
        ("ThrottlingException", 400, StorageUnavailable, "retry"),
        ("KMSInternalException", 500, StorageUnavailable, "retry"),
        ("SomethingNew", 503, StorageUnavailable, "retry"),
        ("ValidationException", 400, StorageError, "ValidationException"),
    ],
)
def test_kms_errors_are_translated(code: str, status: int, expected: type[Exception], message: str) -> None:
    client = boto3.client("kms", region_name=REGION)
    key_arn = f"arn:aws:kms:{REGION}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    stanza = {"type": "aws-kms", "key_id": key_arn, "blob": base64.b64encode(b"blob").decode()}
    with Stubber(client) as stubber:
        stubber.add_client_error("decrypt", service_error_code=code, http_status_code=status)
        with pytest.raises(expected, match=message) as raised:
            KmsKeyring(key_arn, client=client).unwrap(stanza)
    assert type(raised.value) is expected
    assert not isinstance(raised.value, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError)
    assert isinstance(raised.value.__cause__, botocore.exceptions.ClientError)


def test_kms_wrap_denied_names_the_permission() -> None:
    client = boto3.client("kms", region_name=REGION)
    with Stubber(client) as stubber:
        stubber.add_client_error("encrypt", service_error_code="AccessDeniedException", http_status_code=400)
        with pytest.raises(AccessDenied, match="kms:Encrypt"):
            KmsKeyring("alias/evidence", client=client).wrap(stream.new_data_key())


def test_kms_unreachable_is_storage_unavailable(identity: X25519Identity) -> None:
    class Unreachable:
        def decrypt(self, **_: Any) -> Any:
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="https://kms.invalid")

    key_arn = f"arn:aws:kms:{REGION}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    stanza = {"type": "aws-kms", "key_id": key_arn, "blob": base64.b64encode(b"blob").decode()}
    offline = KmsKeyring(key_arn, client=Unreachable())
    with pytest.raises(StorageUnavailable, match="cannot reach KMS"):
        offline.unwrap(stanza)
    # a transient failure outranks "no key here": retrying may succeed
    with pytest.raises(StorageUnavailable):
        unwrap_data_key([stanza], [X25519Identity.generate(), offline])


def test_kms_client_from_the_default_chain_honours_aws_endpoint_url(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kms = boto3.client("kms")
    assert kms.meta.endpoint_url == moto_endpoint
    key = _new_key(kms)
    data_key = stream.new_data_key()
    stanza = KmsKeyring(key["id"]).wrap(data_key)
    assert KmsKeyring(key["arn"]).unwrap(stanza) == data_key


# --- both keyrings on one item (§5.1) -----------------------------------------------------------------


def test_x25519_and_kms_together(kms: Any, identity: X25519Identity) -> None:
    key = _new_key(kms)
    kms_keyring = KmsKeyring(key["arn"], client=kms)
    data_key = stream.new_data_key()
    ingest_station: list[keyring.Keyring] = [identity.recipient, kms_keyring]
    stanzas = [recipient.wrap(data_key) for recipient in ingest_station]

    assert [s["type"] for s in stanzas] == ["x25519", "aws-kms"]
    assert unwrap_data_key(stanzas, [identity]) == data_key
    assert unwrap_data_key(stanzas, [kms_keyring]) == data_key
    assert unwrap_data_key(stanzas, [X25519Identity.generate(), kms_keyring]) == data_key
    counting = CountingClient(kms)
    assert unwrap_data_key(stanzas, [identity, KmsKeyring(key["arn"], client=counting)]) == data_key
    assert counting.calls == []  # the local identity answered first; no KMS round trip

    other_kms = KmsKeyring(_new_key(kms)["arn"], client=kms)
    with pytest.raises(AccessDenied, match="no key here can open this item"):
        unwrap_data_key(stanzas, [identity.recipient, other_kms])
    assert isinstance(kms_keyring, keyring.Keyring)
    assert isinstance(identity, keyring.Keyring)
