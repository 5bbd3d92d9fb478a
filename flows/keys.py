"""Key set-up and vault opening for the CLI: plain functions over ``evidence`` and ``storage``."""

from __future__ import annotations

import shutil
from pathlib import Path

from evidence.errors import InvalidInput
from evidence.ids import generate_id_key
from evidence.keyring import generate_identity
from evidence.settings import Settings
from evidence.signing import SIGNING_KEY_FILE, generate_signing_key
from storage.vault import ID_KEY_FILE, IDENTITY_FILE, RECIPIENT_FILE, Vault


def init_keys(settings: Settings) -> list[Path]:
    """Create the X25519 identity, the id key and this machine's signing key unless present.
    Idempotent; on a station holding a key bundle it adds only the signing key."""
    keys = settings.keys_path
    created: list[Path] = []
    if not (keys / IDENTITY_FILE).exists() and not (keys / RECIPIENT_FILE).exists():
        created.extend(generate_identity(keys))
    if not (keys / ID_KEY_FILE).exists():
        created.append(generate_id_key(keys / ID_KEY_FILE))
    if not (keys / SIGNING_KEY_FILE).exists():
        # every machine signs its own custody records with its own key, so this one is never copied
        created.extend(generate_signing_key(keys))
    return created


def station_bundle(settings: Settings, out_dir: Path) -> list[Path]:
    """The keys an ingest station holds: it can encrypt and name items, never decrypt them."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InvalidInput(f"{out_dir} is not empty; give an empty or new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in (RECIPIENT_FILE, ID_KEY_FILE):
        target = out_dir / name
        shutil.copyfile(settings.keys_path / name, target)
        target.chmod(0o600 if name == ID_KEY_FILE else 0o644)
        written.append(target)
    return written


def open_vault_for_init(settings: Settings) -> Vault:
    return Vault.open(settings, check=False)
