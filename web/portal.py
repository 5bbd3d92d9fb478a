"""What the service holds for its whole life: settings, the vault (with the identity key that decrypts),
the catalog and the accounts store. Opened once at start-up; routers reach it through
:func:`the_portal`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from evidence.settings import Settings
from flows.playback import RecentVerifications

if TYPE_CHECKING:
    from storage.accounts import Accounts
    from storage.catalog import Catalog
    from storage.vault import Vault


@dataclass
class Portal:
    settings: Settings
    vault: Vault
    catalog: Catalog
    accounts: Accounts
    recent: RecentVerifications = field(default_factory=RecentVerifications)
    """Verifications a session's range requests reuse for a few seconds (``flows/playback.py``)."""


def the_portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


PortalDep = Annotated[Portal, Depends(the_portal)]
"""A router's parameter ``portal: PortalDep`` receives the service's :class:`Portal`."""
