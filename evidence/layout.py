"""Where things live in a vault: the key layout, version 1 (``docs/vault-layout.md``).

Keys never carry file names, hashes, officers, incidents or anything about content: content objects are
named by random object ids, items by keyed evidence ids (``evidence.ids``). Everything here is pure.
"""

from __future__ import annotations

import re
import secrets

from evidence.errors import InvalidInput

LAYOUT_VERSION = 1

VAULT_DESCRIPTOR_KEY = "vault.json"
"""§2: create-once record naming the layout version and the key fingerprints the vault was set up with."""

OBJECTS_PREFIX = "objects/"
ITEMS_PREFIX = "items/"
CUSTODY_PREFIX = "custody/"
SIGNERS_PREFIX = "signers/"

_OBJECT_ID = re.compile(r"^[0-9a-f]{32}$")


def new_object_id() -> str:
    """§3: 128 random bits. Content is uploaded before its hash (and so its evidence id) is known,
    so its name cannot depend on either; a random id also cannot be linked to the content."""
    return secrets.token_hex(16)


def object_key(object_id: str) -> str:
    """§3: ``objects/<first two hex>/<object id>``; the fan-out keeps listings and local directories small."""
    if not _OBJECT_ID.match(object_id):
        raise InvalidInput(f"not an object id: {object_id!r}")
    return f"{OBJECTS_PREFIX}{object_id[:2]}/{object_id}"


def item_prefix(evidence_id: str) -> str:
    from evidence.ids import require_evidence_id

    return f"{ITEMS_PREFIX}{require_evidence_id(evidence_id)}/"


def manifest_key(evidence_id: str) -> str:
    """§4: the item's manifest; its presence is the commit point of an ingest."""
    return item_prefix(evidence_id) + "manifest.json"


def custody_prefix(evidence_id: str) -> str:
    from evidence.ids import require_evidence_id

    return f"{CUSTODY_PREFIX}{require_evidence_id(evidence_id)}/"


def custody_key(evidence_id: str, seq: int) -> str:
    """§7: one create-only object per custody event; the zero-padded position sorts in chain order."""
    if not 0 <= seq < 10**10:
        raise InvalidInput(f"custody position {seq} out of range")
    return f"{custody_prefix(evidence_id)}{seq:010d}.json"


def custody_position(key: str) -> int:
    name = key.rsplit("/", 1)[-1]
    if not re.fullmatch(r"[0-9]{10}\.json", name):
        raise InvalidInput(f"not a custody record key: {key!r}")
    return int(name[:10])


def signer_key(key_id: str) -> str:
    """§8: published public signing keys, ``signers/ed25519-<16 hex>.pub``."""
    kind, _, digest = key_id.partition(":")
    if kind != "ed25519" or not re.fullmatch(r"[0-9a-f]{16}", digest):
        raise InvalidInput(f"not a signing key id: {key_id!r}")
    return f"{SIGNERS_PREFIX}{kind}-{digest}.pub"
