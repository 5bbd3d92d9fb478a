"""Signing in to the portal with the force's identity provider: the authorization-code flow with PKCE
against a real OpenID Connect provider (node-oidc-provider, ``tests/oidc_provider.py``), the test
playing the browser. The provider is started once for this module."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from tests.oidc_provider import OidcProvider, ProviderAccount, ProviderUnavailable, start_provider
from web.oidc import ProviderSignIn, new_browser_secret

PORTAL = "https://testserver"
CALLBACK = f"{PORTAL}/sign-in/oidc/callback"
CLIENT_ID = "evidence-portal"
CLIENT_SECRET = "portal-client-secret-for-tests-only-0123456789"
ROLES_CLAIM = "evidence_roles"  # not the default "roles": the setting must be read, not assumed

ADA = ProviderAccount("ada.lovelace", "correct horse", "b7e3-0001", "Ada Lovelace", ["investigator"])
OLU = ProviderAccount("olu.officer@kent.police.uk", "battery staple", "b7e3-0002", "Olu", "officer")
NOBODY = ProviderAccount("finance.clerk", "ledger", "b7e3-0003", "Fin", ["finance", "payroll"])


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    try:
        started = start_provider(
            tmp_path_factory.mktemp("oidc"),
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uris=[CALLBACK],
            people=[ADA, OLU, NOBODY],
            roles_claim=ROLES_CLAIM,
        )
    except ProviderUnavailable as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the test OIDC provider is required on CI: {err}", pytrace=False)
        pytest.skip(f"no test OIDC provider: {err}")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def oidc_settings(provider: OidcProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVIDENCE_OIDC_ISSUER", provider.issuer)
    monkeypatch.setenv("EVIDENCE_OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("EVIDENCE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("EVIDENCE_OIDC_ROLES_CLAIM", ROLES_CLAIM)


def sign_in_at_provider(idp: httpx.Client, authorization_url: str, person: ProviderAccount) -> str:
    """Be the browser at the provider: open the authorization URL, fill in the login form, follow the
    provider's redirects; return the URL it finally sends the browser to (the portal's callback)."""
    page = idp.get(authorization_url)
    while page.is_redirect:
        page = idp.get(urljoin(str(page.url), page.headers["location"]))
    assert page.status_code == 200, page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action, page.text
    answer = idp.post(
        urljoin(str(page.url), action.group(1)),
        data={"username": person.username, "password": person.password},
    )
    while answer.is_redirect:
        target = urljoin(str(answer.url), answer.headers["location"])
        if target.startswith(PORTAL):
            return target
        answer = idp.get(target)
    raise AssertionError(
        f"the provider did not send the browser back: {answer.status_code} {answer.text[:500]}"
    )


def test_the_provider_signs_a_person_in_and_the_portal_checks_the_token(
    provider: OidcProvider, oidc_settings: None
) -> None:
    from evidence.settings import load_settings

    sign_in = ProviderSignIn(load_settings())
    browser = new_browser_secret()
    with httpx.Client(base_url=provider.issuer) as idp:
        authorization_url = asyncio.run(sign_in.begin(CALLBACK, "/incidents/KNT-2026-000123", browser))
        query = parse_qs(urlsplit(authorization_url).query)
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
        assert query["nonce"] and query["state"]
        back = sign_in_at_provider(idp, authorization_url, ADA)
    answer = {key: values[0] for key, values in parse_qs(urlsplit(back).query).items()}
    identity, next_page = asyncio.run(sign_in.finish(answer, browser))
    assert identity.actor.user_id == "ada.lovelace"
    assert identity.actor.roles == {"investigator"}
    assert identity.subject == ADA.sub
    assert next_page == "/incidents/KNT-2026-000123"
