"""What the service holds for its whole life: settings, the vault (with the identity key that decrypts),
the catalog and the accounts store. Opened once at start-up; routers reach it through
:func:`the_portal`."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from evidence.settings import Settings
from flows.playback import RecentVerifications

if TYPE_CHECKING:
    from storage.accounts import Accounts
    from storage.audit_log import AuditLog
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

    @cached_property
    def audit_log(self) -> AuditLog:
        """The portal's own records (searches) in the accounts database, signed with the key that signs
        this service's custody events."""
        from storage.audit_log import AuditLog

        return AuditLog.open(self.settings.accounts_url, signer=self.vault.custody.signer)


def the_portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


PortalDep = Annotated[Portal, Depends(the_portal)]
"""A router's parameter ``portal: PortalDep`` receives the service's :class:`Portal`."""
