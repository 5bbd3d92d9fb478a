"""Ed25519 signing keys for custody records: one per station or workstation (``docs/custody.md`` §3).

The private key signs every custody event written from this machine; the public key is published in
the vault (``signers/``) and may be handed to a court or defence expert, who can then check the whole
chain with public keys alone.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.errors import ConfigError, InvalidInput
from evidence.keyfiles import key_file_text, read_key_file, write_key_file

SIGNING_KEY_FILE = "signing.key"
VERIFYING_KEY_FILE = "signing.pub"
SIGNING_HEADER = "evidence-pipeline ed25519 signing key v1"
VERIFYING_HEADER = "evidence-pipeline ed25519 verifying key v1"
_KEY_SIZE = 32


class VerifyingKey:
    def __init__(self, raw: bytes) -> None:
        try:
            self._key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as err:
            raise InvalidInput(f"not an Ed25519 public key: {err}") from err
        self.raw = raw

    @classmethod
    def from_file(cls, path: Path) -> VerifyingKey:
        return cls(read_key_file(path, VERIFYING_HEADER, what="custody verifying key", size=_KEY_SIZE))

    @classmethod
    def from_text(cls, text: str, *, source: str) -> VerifyingKey:
        lines = text.strip().splitlines()
        if len(lines) != 2 or lines[0].strip() != VERIFYING_HEADER:
            raise ConfigError(f"{source} is not a custody verifying key")
        return cls(base64.b64decode(lines[1].strip()))

    @property
    def key_id(self) -> str:
        return "ed25519:" + hashlib.sha256(self.raw).hexdigest()[:16]

    def to_text(self) -> str:
        return key_file_text(VERIFYING_HEADER, self.raw)

    def verify(self, signature: bytes, payload: bytes) -> bool:
        try:
            self._key.verify(signature, payload)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    def __init__(self, raw: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(raw)
        self.verifying_key = VerifyingKey(self._key.public_key().public_bytes_raw())

    @classmethod
    def from_file(cls, path: Path) -> SigningKey:
        return cls(read_key_file(path, SIGNING_HEADER, what="custody signing key", size=_KEY_SIZE))

    @property
    def key_id(self) -> str:
        return self.verifying_key.key_id

    def sign(self, payload: bytes) -> bytes:
        return self._key.sign(payload)


def generate_signing_key(keys_dir: Path) -> tuple[Path, Path]:
    """Write this machine's signing key pair; never overwrites an existing key."""
    private_path, public_path = keys_dir / SIGNING_KEY_FILE, keys_dir / VERIFYING_KEY_FILE
    for existing in (private_path, public_path):
        if existing.exists():
            raise InvalidInput(f"{existing} already exists; refusing to replace a signing key")
    key = Ed25519PrivateKey.generate()
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_key_file(private_path, key_file_text(SIGNING_HEADER, key.private_bytes_raw()), mode=0o600)
    write_key_file(
        public_path, key_file_text(VERIFYING_HEADER, key.public_key().public_bytes_raw()), mode=0o644
    )
    return private_path, public_path
