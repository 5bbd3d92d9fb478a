"""Evidence ids: deterministic per content within a vault, yet revealing nothing about the content.

An id is an HMAC-SHA256 of the original's SHA-256 under the vault's id key (``docs/vault-layout.md`` §5).
The same file always gets the same id in one vault, so a re-ingest finds the existing item instead of
storing a copy; but without the id key nobody can test whether a known file (say, a video circulated
online) is in the vault by hashing it, which a plain content hash in a key name would allow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from pathlib import Path

from evidence.errors import ConfigError, InvalidInput

ID_KEY_SIZE = 32
_PREFIX = "ev-"
_EVIDENCE_ID = re.compile(r"^ev-[a-z2-7]{26}$")
_ID_KEY_HEADER = "# evidence-pipeline id key v1: HMAC key for evidence ids; not a decryption key\n"


def evidence_id(id_key: bytes, plaintext_sha256_hex: str) -> str:
    digest = hmac.new(id_key, b"evidence-id/v1\x00" + bytes.fromhex(plaintext_sha256_hex), hashlib.sha256)
    # 130 bits of the MAC, base32 lower-case: short enough to read out, far beyond collision reach
    return _PREFIX + base64.b32encode(digest.digest()).decode("ascii").lower()[:26]


def id_key_check(id_key: bytes) -> str:
    """A value stored in the vault descriptor so a station configured with another id key is refused:
    it would give the same file a different id and silently defeat de-duplication."""
    return hmac.new(id_key, b"evidence-pipeline/id-key-check/v1", hashlib.sha256).hexdigest()[:32]


def is_evidence_id(value: str) -> bool:
    return bool(_EVIDENCE_ID.match(value))


def require_evidence_id(value: str) -> str:
    if not is_evidence_id(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidInput(f"not an evidence id: {shown!r} (expected ev- followed by 26 letters/digits)")
    return value


def generate_id_key(path: Path) -> Path:
    if path.exists():
        raise InvalidInput(f"{path} already exists; refusing to replace a vault's id key")
    path.parent.mkdir(parents=True, exist_ok=True)
    body = base64.b64encode(secrets.token_bytes(ID_KEY_SIZE)).decode("ascii")
    with open(path, "x", encoding="ascii", opener=lambda p, f: _private_open(p, f)) as handle:
        handle.write(_ID_KEY_HEADER + body + "\n")
    return path


def load_id_key(path: Path) -> bytes:
    try:
        lines = [ln for ln in path.read_text(encoding="ascii").splitlines() if ln and not ln.startswith("#")]
        key = base64.b64decode(lines[0], validate=True)
    except FileNotFoundError:
        raise ConfigError(
            f"id key {path} not found: run `evidence keys init` or copy the vault's id key"
        ) from None
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as err:
        raise ConfigError(f"id key {path} is unreadable or damaged: {err}") from err
    if len(key) != ID_KEY_SIZE:
        raise ConfigError(f"id key {path} has {len(key)} bytes, expected {ID_KEY_SIZE}")
    return key


def _private_open(path: str, flags: int) -> int:
    import os

    return os.open(path, flags, 0o600)
