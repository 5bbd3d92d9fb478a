"""Wrapping per-item data keys for the people allowed to read them (``docs/format.md`` §5 and §6).

An ingest station holds only an :class:`X25519Recipient` (a public key) and can wrap but never
unwrap: a stolen station reveals no evidence. Investigators hold an :class:`X25519Identity`. AWS KMS
is a second keyring, in ``storage/kms.py`` since it needs boto3. A stanza is the JSON-safe record of
one wrapped data key; an item stores one per keyring.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from evidence.errors import (
    AccessDenied,
    ConfigError,
    EvidenceError,
    IntegrityError,
    InvalidInput,
    StorageUnavailable,
)
from evidence.keyfiles import key_file_text, read_key_file, write_key_file

logger = logging.getLogger(__name__)

Stanza = dict[str, str]

X25519_STANZA_TYPE = "x25519"
X25519_WRAP_INFO = b"evidence-pipeline/x25519/v1"
IDENTITY_FILE_NAME = "vault-identity.key"
RECIPIENT_FILE_NAME = "vault-recipient.pub"
IDENTITY_FILE_HEADER = "evidence-pipeline x25519 identity v1"
RECIPIENT_FILE_HEADER = "evidence-pipeline x25519 recipient v1"

_KEY_SIZE = 32
_DATA_KEY_SIZE = 32
_WRAPPED_SIZE = _DATA_KEY_SIZE + 16
_ZERO_NONCE = bytes(12)  # §5.2: each wrap key is used once, so a fixed nonce never repeats under it


@runtime_checkable
class Keyring(Protocol):
    """Something that can wrap a data key into a stanza and, if it holds a secret, open one."""

    @property
    def name(self) -> str:
        """Short label for messages and logs, e.g. ``x25519:0123abcd...``; never secret."""
        ...

    def wrap(self, data_key: bytes) -> Stanza: ...

    def unwrap(self, stanza: Mapping[str, str]) -> bytes | None:
        """The data key; ``None`` if the stanza is not for this keyring (type or key id differ);
        ``IntegrityError`` if it is but fails to open."""
        ...


class X25519Recipient:
    """A public key (§5.2): wraps data keys that only the matching identity can open."""

    def __init__(self, public_key: bytes) -> None:
        if len(public_key) != _KEY_SIZE:
            raise InvalidInput(f"an X25519 public key is {_KEY_SIZE} bytes, got {len(public_key)}")
        self._public_key = bytes(public_key)
        self._key = X25519PublicKey.from_public_bytes(self._public_key)

    @classmethod
    def from_file(cls, path: Path) -> X25519Recipient:
        return cls(read_key_file(path, RECIPIENT_FILE_HEADER, what="recipient (public key)", size=_KEY_SIZE))

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def key_id(self) -> str:
        """Routing hint in stanzas: first 16 hex digits of SHA-256 of the raw public key."""
        return hashlib.sha256(self._public_key).hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"x25519:{self.key_id}"

    def to_text(self) -> str:
        """The §6 recipient file contents."""
        return key_file_text(RECIPIENT_FILE_HEADER, self._public_key)

    def wrap(self, data_key: bytes) -> Stanza:
        if len(data_key) != _DATA_KEY_SIZE:
            raise InvalidInput(f"data key must be {_DATA_KEY_SIZE} bytes, got {len(data_key)}")
        ephemeral = X25519PrivateKey.generate()
        ephemeral_public = ephemeral.public_key().public_bytes_raw()
        wrap_key = _wrap_key(ephemeral.exchange(self._key), ephemeral_public, self._public_key)
        wrapped = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, data_key, None)
        return {
            "type": X25519_STANZA_TYPE,
            "key_id": self.key_id,
            "epk": _b64(ephemeral_public),
            "wrapped": _b64(wrapped),
        }

    def unwrap(self, stanza: Mapping[str, str]) -> bytes | None:
        """Always ``None``: a public key opens nothing (this is what an ingest station holds)."""
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and other._public_key == self._public_key

    def __hash__(self) -> int:
        return hash(self._public_key)

    def __repr__(self) -> str:
        return f"X25519Recipient({self.key_id})"


class X25519Identity:
    """A private key (§5.2): opens stanzas wrapped for its recipient. Investigators only."""

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != _KEY_SIZE:
            raise InvalidInput(f"an X25519 private key is {_KEY_SIZE} bytes, got {len(private_key)}")
        self._private_key = bytes(private_key)
        self._key = X25519PrivateKey.from_private_bytes(self._private_key)
        self._recipient = X25519Recipient(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> X25519Identity:
        return cls(X25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_file(cls, path: Path) -> X25519Identity:
        identity = cls(
            read_key_file(path, IDENTITY_FILE_HEADER, what="identity (private key)", size=_KEY_SIZE)
        )
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if os.name == "posix" and mode & 0o077:
            logger.warning(
                "identity file readable by other users",
                extra={"path": str(path), "mode": oct(mode & 0o777), "key_id": identity.key_id},
            )
        return identity

    @property
    def recipient(self) -> X25519Recipient:
        return self._recipient

    @property
    def key_id(self) -> str:
        return self._recipient.key_id

    @property
    def name(self) -> str:
        return self._recipient.name

    def to_text(self) -> str:
        """The §6 identity file contents. Secret."""
        return key_file_text(IDENTITY_FILE_HEADER, self._private_key)

    def wrap(self, data_key: bytes) -> Stanza:
        return self._recipient.wrap(data_key)

    def unwrap(self, stanza: Mapping[str, str]) -> bytes | None:
        if stanza.get("type") != X25519_STANZA_TYPE or stanza.get("key_id") != self.key_id:
            return None
        ephemeral_public = _stanza_bytes(stanza, "epk", _KEY_SIZE)
        wrapped = _stanza_bytes(stanza, "wrapped", _WRAPPED_SIZE)
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        except ValueError:
            # cryptography refuses an all-zero result itself; either way the epk is a low-order point
            shared = bytes(_KEY_SIZE)
        if shared == bytes(_KEY_SIZE):
            raise IntegrityError(
                f"x25519 stanza for key {self.key_id} has a low-order ephemeral key: it was forged"
            )
        wrap_key = _wrap_key(shared, ephemeral_public, self._recipient.public_key)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, wrapped, None)
        except InvalidTag:
            raise IntegrityError(
                f"x25519 stanza for key {self.key_id} does not open: the wrapped data key was altered"
            ) from None

    def __repr__(self) -> str:
        return f"X25519Identity({self.key_id})"


def generate_identity(keys_dir: Path) -> tuple[Path, Path]:
    """Write a new identity and its recipient into ``keys_dir`` (§6); returns (private, public) paths.

    Never overwrites: replacing a key file would make every item wrapped for it unreadable.
    """
    private_path = keys_dir / IDENTITY_FILE_NAME
    public_path = keys_dir / RECIPIENT_FILE_NAME
    for existing in (private_path, public_path):
        if existing.exists():
            raise InvalidInput(
                f"{existing} already exists; refusing to overwrite a key file (items wrapped for it "
                "would become unreadable). Move it away first if you really mean to replace it"
            )
    identity = X25519Identity.generate()
    written: list[Path] = []
    try:
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, text, mode in (
            (private_path, identity.to_text(), 0o600),
            (public_path, identity.recipient.to_text(), 0o644),
        ):
            write_key_file(path, text, mode=mode)
            written.append(path)
    except OSError as err:
        for path in written:  # half a key pair would only make the next attempt refuse
            path.unlink(missing_ok=True)
        if isinstance(err, FileExistsError):
            raise InvalidInput(
                f"{err.filename} appeared while writing keys; refusing to overwrite it"
            ) from err
        raise ConfigError(f"cannot write key files in {keys_dir}: {err.strerror or err}") from err
    return private_path, public_path


def unwrap_data_key(stanzas: Sequence[Mapping[str, str]], keyrings: Sequence[Keyring]) -> bytes:
    """The data key from the first keyring (in the order given) that opens one of ``stanzas`` (§5.1)."""
    failures: list[EvidenceError] = []
    for keyring in keyrings:
        for stanza in stanzas:
            try:
                data_key = keyring.unwrap(stanza)
            except EvidenceError as err:
                failures.append(err)
                continue
            if data_key is None:
                continue
            if len(data_key) != _DATA_KEY_SIZE:
                failures.append(
                    IntegrityError(f"{keyring.name} unwrapped a {len(data_key)}-byte key, not a data key")
                )
                continue
            for failure in failures:
                logger.warning("a data-key stanza failed to open", extra={"error": str(failure)})
            return data_key
    for preferred in (IntegrityError, StorageUnavailable):
        for failure in failures:
            if isinstance(failure, preferred):
                raise failure
    wrapped_for = ", ".join(_describe_stanza(stanza) for stanza in stanzas) or "no keys at all"
    held = ", ".join(keyring.name for keyring in keyrings) or "none"
    problems = "".join(f"; {failure}" for failure in failures)
    raise AccessDenied(
        f"no key here can open this item: it is wrapped for {wrapped_for}; keys here: {held}{problems}"
    )


def _describe_stanza(stanza: Mapping[str, str]) -> str:
    return f"{stanza.get('type', '?')}:{stanza.get('key_id', '?')}"


def _wrap_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + recipient_public, info=X25519_WRAP_INFO
    )
    return hkdf.derive(shared)


def _stanza_bytes(stanza: Mapping[str, str], field: str, size: int) -> bytes:
    label = f"{stanza.get('type')} stanza for key {stanza.get('key_id')}"
    value = stanza.get(field)
    if not isinstance(value, str):
        raise IntegrityError(f"{label} has no {field!r} field")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError(f"{label} has a {field!r} field that is not valid base64") from None
    if len(raw) != size:
        raise IntegrityError(f"{label} has a {len(raw)}-byte {field!r}, expected {size}")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
