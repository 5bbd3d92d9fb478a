"""Signing in with the force's identity provider in a real browser: Debian's Chromium, a real
``evidence serve`` and a real OpenID Connect provider (node-oidc-provider), on two different sites
(the portal at ``localhost``, the provider at ``127.0.0.1``), as they are in service.

Two sites is the point: the provider sends the browser back to the portal from another site, and
browsers withhold ``SameSite=Strict`` cookies on every step of a redirect chain that began elsewhere.
A portal that redirected from its callback would set the session cookie and then not receive it,
and the person would land on the sign-in page again; ``tests/test_portal_oidc.py``, which plays the
browser itself, cannot see that.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import BrowserUnavailable, running_chromium
from tests.oidc_provider import OidcProvider, ProviderAccount, ProviderUnavailable, start_provider
from tests.portal_station import PortalServer, free_port, launch_portal
from tests.station import make_station

CLIENT_ID = "evidence-portal"
CLIENT_SECRET = "portal-client-secret-for-browser-tests-0123456789"
ADA = ProviderAccount("ada.lovelace", "correct horse", "b7e3-0101", "Ada Lovelace", ["investigator"])
STEP_TIMEOUT_MS = 15_000


def required(what: str, err: Exception) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required on CI: {err}", pytrace=False)
    pytest.skip(f"no {what}: {err}")


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OidcProvider, PortalServer]]:
    root = tmp_path_factory.mktemp("oidc-browser")
    port = free_port()
    portal_url = f"http://localhost:{port}"
    try:
        provider = start_provider(
            root / "provider",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uris=[f"{portal_url}/sign-in/oidc/callback"],
            people=[ADA],
        )
    except ProviderUnavailable as err:
        required("the test OIDC provider", err)
    assert "127.0.0.1" in provider.issuer, "the provider must be another site than the portal's localhost"
    try:
        station = make_station(root / "station")
        server = launch_portal(
            station.settings.data_dir,
            root / "serve.log",
            port=port,
            host_name="localhost",
            settings={
                "EVIDENCE_OIDC_ISSUER": provider.issuer,
                "EVIDENCE_OIDC_CLIENT_ID": CLIENT_ID,
                "EVIDENCE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
                "EVIDENCE_OIDC_PROVIDER_NAME": "Kent Police",
            },
        )
        try:
            server.wait_until_serving()
            yield provider, server
        finally:
            server.stop()
    finally:
        provider.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        with running_chromium(tmp_path_factory.getbasetemp() / "chromium-install.log") as chromium:
            yield chromium
    except BrowserUnavailable as err:
        required("Chromium", err)


def test_signing_in_at_the_provider_lands_signed_in_on_the_page_asked_for(
    sites: tuple[OidcProvider, PortalServer], browser: Any, tmp_path: Path
) -> None:
    provider, server = sites
    context = browser.new_context(base_url=server.url)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto("/search")  # not signed in: sent to sign-in, remembering the page
        assert "/sign-in" in page.url
        page.get_by_role("link", name="Sign in with Kent Police").click()
        page.wait_for_url(f"{provider.issuer}/**")
        page.fill("input[name=username]", ADA.username)
        page.fill("input[name=password]", ADA.password)
        page.click("button[type=submit]")

        page.wait_for_url(f"{server.url}/search**")
        assert page.locator("header .who").inner_text() == "ada.lovelace (investigator)"
        session = next(c for c in context.cookies() if c["name"] == "evidence_session")
        assert session["sameSite"] == "Strict" and session["httpOnly"] and session["secure"]

        page.goto("/account/sign-ins")  # and the session holds on the next page
        assert "oidc" in page.locator("table").inner_text()
    finally:
        context.close()
