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
