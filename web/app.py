"""The portal's ASGI application: one router module per resource, security headers on every answer,
error pages for the project's errors, and its own scripts and styles (no CDN: it runs on a closed
network)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from evidence.settings import Settings
from web.errors import install_error_pages
from web.portal import Portal
from web.routers import audit, auth, content, exports, holds, incidents, items, links, oidc, search
from web.security import install_security_headers
from web.sessions import install_sign_in_redirect


def create_app(portal: Portal) -> FastAPI:
    app = FastAPI(title="Evidence portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.portal = portal
    install_security_headers(app)
    install_error_pages(app)
    install_sign_in_redirect(app)
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    for module in (auth, oidc, search, incidents, items, content, exports, audit, links, holds):
        app.include_router(module.router)
    return app


def open_portal(settings: Settings) -> Portal:
    """Open what the service holds: the vault with its identity key, the catalog, the accounts."""
    from storage.accounts import Accounts
    from storage.catalog import Catalog
    from storage.vault import Vault

    return Portal(
        settings=settings,
        vault=Vault.open(settings),
        catalog=Catalog.open(settings),
        accounts=Accounts.open(settings),
    )
