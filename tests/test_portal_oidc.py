"""Signing in to the portal with the force's identity provider: the authorization-code flow with PKCE
through the real app (TestClient over HTTPS, so Secure cookies travel) against a real OpenID Connect
provider (node-oidc-provider, ``tests/oidc_provider.py``), the test playing the browser at both. The
provider is started once for this module. The ID token's checks and the claims' mapping are also
tested as plain functions, with tokens made here, since a real provider only ever sends good ones."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OctKey

from evidence.errors import AccessDenied
from tests.oidc_provider import OidcProvider, ProviderAccount, ProviderUnavailable, start_provider
from tests.signing_in import TestPortal, make_test_portal
from web.oidc import PENDING_COOKIE, identity_from_claims, validated_id_token
from web.sessions import SESSION_COOKIE

PORTAL = "https://testserver"
CALLBACK = f"{PORTAL}/sign-in/oidc/callback"
CLIENT_ID = "evidence-portal"
CLIENT_SECRET = "portal-client-secret-for-tests-only-0123456789"
ROLES_CLAIM = "evidence_roles"  # not the default "roles": the setting must be read, not assumed

ADA = ProviderAccount(
    "ada.lovelace", "correct horse", "b7e3-0001", "Ada Lovelace", ["investigator", "auditor"]
)
OLU = ProviderAccount("olu.officer@kent.police.uk", "battery staple", "b7e3-0002", "Olu Ade", "officer")
FIN = ProviderAccount("fin.clerk", "ledger lines", "b7e3-0003", "Fin Clerk", ["finance", "payroll"])


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    try:
        started = start_provider(
            tmp_path_factory.mktemp("oidc"),
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uris=[CALLBACK],
            people=[ADA, OLU, FIN],
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


def portal_for(issuer: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> TestPortal:
    monkeypatch.setenv("EVIDENCE_OIDC_ISSUER", issuer)
    monkeypatch.setenv("EVIDENCE_OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("EVIDENCE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("EVIDENCE_OIDC_ROLES_CLAIM", ROLES_CLAIM)
    monkeypatch.setenv("EVIDENCE_OIDC_PROVIDER_NAME", "Kent Police")
    return make_test_portal(data_dir)


@pytest.fixture
def tp(provider: OidcProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestPortal:
    return portal_for(provider.issuer, tmp_path / "station", monkeypatch)


@pytest.fixture
def idp(provider: OidcProvider) -> Iterator[httpx.Client]:
    """The browser's side at the provider: its own cookie jar, redirects followed by hand."""
    with httpx.Client(base_url=provider.issuer, follow_redirects=False) as client:
        yield client


def sign_in_at_provider(idp: httpx.Client, authorization_url: str, person: ProviderAccount) -> str:
    """Be the browser at the provider: open the authorization URL, fill in its login form, follow its
    redirects; return the URL it sends the browser back to (the portal's callback)."""
    page = _follow(idp, idp.get(authorization_url))
    assert page.status_code == 200, page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action, page.text
    answer = idp.post(
        urljoin(str(page.url), action.group(1)),
        data={"username": person.username, "password": person.password},
    )
    return _back_to_portal(idp, answer)


def refuse_at_provider(idp: httpx.Client, authorization_url: str) -> str:
    """Open the provider's login page and press Cancel."""
    page = _follow(idp, idp.get(authorization_url))
    cancel = re.search(r'<a href="([^"]+/abort)">', page.text)
    assert cancel, page.text
    return _back_to_portal(idp, idp.get(urljoin(str(page.url), cancel.group(1))))


def _follow(idp: httpx.Client, answer: httpx.Response) -> httpx.Response:
    while answer.is_redirect:
        answer = idp.get(urljoin(str(answer.url), answer.headers["location"]))
    return answer


def _back_to_portal(idp: httpx.Client, answer: httpx.Response) -> str:
    while answer.is_redirect:
        target = urljoin(str(answer.url), answer.headers["location"])
        if target.startswith(PORTAL):
            return target
        answer = idp.get(target)
    raise AssertionError(
        f"the provider did not send the browser back: {answer.status_code} {answer.text[:500]}"
    )


def start_sign_in(browser: TestClient, next: str = "/account/sign-ins") -> str:
    """Press "Sign in with ..." on the portal: the provider's authorization URL it redirects to."""
    answer = browser.get("/sign-in/oidc", params={"next": next})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def continues_to(finished: httpx.Response) -> str:
    """Where the page the callback answers with moves on to by itself (a meta refresh, so that the
    browser's next request starts on this site and carries the SameSite=Strict session cookie)."""
    found = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', finished.text)
    assert found, finished.text
    return found.group(1)


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def failures(tp: TestPortal) -> list[tuple[str | None, str | None, str]]:
    """(user, method, detail) of every failed sign-in on record, oldest first."""
    return [(r.user_id, r.method, r.detail) for r in reversed(tp.accounts.sign_ins()) if r.event == "failure"]


# -- the whole flow ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("person", "user_id", "roles"),
    [
        (ADA, "ada.lovelace", {"investigator"}),  # a list of roles; "auditor" is not the portal's
        (OLU, "olu.officer_40kent.police.uk", {"officer"}),  # one role as a string; a UPN as the name
    ],
)
def test_signing_in_at_the_provider_starts_an_oidc_session_with_the_roles_in_its_claim(
    tp: TestPortal, idp: httpx.Client, person: ProviderAccount, user_id: str, roles: set[str]
) -> None:
    browser = tp.client()
    sign_in_page = browser.get("/sign-in")
    assert (
        'href="/sign-in/oidc?next=' in sign_in_page.text and "Sign in with Kent Police" in sign_in_page.text
    )

    answer = browser.get("/sign-in/oidc", params={"next": "/account/sign-ins"})
    assert answer.status_code == 303
    authorization = urlsplit(answer.headers["location"])
    assert f"{authorization.scheme}://{authorization.netloc}" == str(idp.base_url).rstrip("/")
    request = parse_qs(authorization.query)
    assert request["code_challenge_method"] == ["S256"] and len(request["code_challenge"][0]) == 43
    assert request["nonce"][0] and request["state"][0] and request["redirect_uri"] == [CALLBACK]
    [pending] = [h for h in answer.headers.get_list("set-cookie") if h.startswith(f"{PENDING_COOKIE}=")]
    attributes = {part.strip().lower() for part in pending.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/sign-in/oidc", "max-age=600"} <= attributes

    callback = sign_in_at_provider(idp, answer.headers["location"], person)
    assert urlsplit(callback).path == "/sign-in/oidc/callback"
    finished = browser.get(callback)
    assert finished.status_code == 200, finished.text
    assert continues_to(finished) == "/account/sign-ins"

    session = tp.accounts.session(browser.cookies[SESSION_COOKIE])
    assert session is not None
    assert (session.user_id, session.roles, session.method) == (user_id, roles, "oidc")
    assert browser.get("/").headers["location"] == "/search"  # the front page sees a signed-in person
    own_page = browser.get("/account/sign-ins")
    assert own_page.status_code == 200 and f"{user_id} ({'+'.join(sorted(roles))})" in own_page.text
    [record] = tp.accounts.sign_ins(user_id)
    assert (record.event, record.method, record.session_id) == ("sign-in", "oidc", session.session_id)
    assert failures(tp) == []


def test_a_person_without_a_portal_role_is_refused_and_it_is_recorded(
    tp: TestPortal, idp: httpx.Client
) -> None:
    browser = tp.client()
    refused = browser.get(sign_in_at_provider(idp, start_sign_in(browser), FIN))
    assert refused.status_code == 403
    assert "Sign-in refused" in refused.text and "holds no portal role" in refused.text
    assert "&#39;finance&#39;, &#39;payroll&#39;" in refused.text  # what the claim held, escaped
    assert SESSION_COOKIE not in browser.cookies
    assert tp.accounts.sign_ins("fin.clerk")[0].event == "failure"
    [(user, method, detail)] = failures(tp)
    assert (user, method) == ("fin.clerk", "oidc") and "no portal role" in detail


def test_a_tampered_state_is_refused_and_the_genuine_answer_still_works(
    tp: TestPortal, idp: httpx.Client
) -> None:
    browser = tp.client()
    callback = sign_in_at_provider(idp, start_sign_in(browser), ADA)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    tampered = browser.get(
        with_query(callback, state=state[:-2] + ("AA" if not state.endswith("AA") else "BB"))
    )
    assert tampered.status_code == 400 and "unknown, expired or already used" in tampered.text
    assert SESSION_COOKIE not in browser.cookies
    assert [(u, m) for u, m, _ in failures(tp)] == [(None, "oidc")]
    # the refusal was the state's doing: the untouched answer signs in
    assert browser.get(callback).status_code == 200
    assert tp.accounts.session(browser.cookies[SESSION_COOKIE]) is not None


def test_an_answer_opened_in_another_browser_is_refused(tp: TestPortal, idp: httpx.Client) -> None:
    """Login CSRF: an attacker signs in at the provider and sends their callback link to a victim."""
    attacker = tp.client()
    callback = sign_in_at_provider(idp, start_sign_in(attacker), ADA)
    victim = TestClient(attacker.app, base_url=PORTAL, follow_redirects=False)  # same portal, new browser
    refused = victim.get(callback)
    assert refused.status_code == 400 and "started in another browser" in refused.text
    assert SESSION_COOKIE not in victim.cookies
    assert len(failures(tp)) == 1


def test_a_replayed_code_is_refused(tp: TestPortal, idp: httpx.Client) -> None:
    browser = tp.client()
    callback = sign_in_at_provider(idp, start_sign_in(browser), ADA)
    assert browser.get(callback).status_code == 200
    first_session = browser.cookies[SESSION_COOKIE]

    replayed = browser.get(callback)  # the same answer again: its state was used
    assert replayed.status_code == 400 and "already used" in replayed.text

    # the same code under a fresh state of this browser: the portal redeems it, the provider refuses
    fresh_state = parse_qs(urlsplit(start_sign_in(browser)).query)["state"][0]
    reused = browser.get(with_query(callback, state=fresh_state))
    assert reused.status_code == 403 and "did not accept the sign-in (invalid_grant)" in reused.text
    assert browser.cookies[SESSION_COOKIE] == first_session  # no second session came of either
    assert len(tp.accounts.sign_ins("ada.lovelace")) == 1
    assert [d.split(":")[0] for _, _, d in failures(tp)] == [
        "this sign-in is unknown, expired or already used",
        "the identity provider did not accept the sign-in (invalid_grant)",
    ]


def test_refusing_at_the_provider_is_shown_and_recorded(tp: TestPortal, idp: httpx.Client) -> None:
    browser = tp.client()
    refused = browser.get(refuse_at_provider(idp, start_sign_in(browser)))
    assert refused.status_code == 403
    assert "the identity provider refused the sign-in (access_denied" in refused.text
    assert SESSION_COOKIE not in browser.cookies
    [(user, method, detail)] = failures(tp)
    assert (user, method) == (None, "oidc") and "access_denied" in detail


def test_a_provider_that_cannot_be_reached_gives_a_page_and_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    tp = portal_for(f"http://127.0.0.1:{port}", tmp_path / "station", monkeypatch)
    answer = tp.client().get("/sign-in/oidc")
    assert answer.status_code == 503
    assert "Sign-in failed" in answer.text and "cannot be reached; try again shortly" in answer.text
    assert "Traceback" not in answer.text
    [(user, method, detail)] = failures(tp)
    assert (user, method) == (None, "oidc") and "cannot be reached" in detail


def test_the_registered_redirect_uri_is_sent_when_set(
    provider: OidcProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a proxy that terminates TLS the request's own URL says http://; the setting is what the
    provider has registered."""
    monkeypatch.setenv("EVIDENCE_OIDC_REDIRECT_URI", "https://portal.kent.police.uk/sign-in/oidc/callback")
    tp = portal_for(provider.issuer, tmp_path / "station", monkeypatch)
    request = parse_qs(urlsplit(start_sign_in(tp.client())).query)
    assert request["redirect_uri"] == ["https://portal.kent.police.uk/sign-in/oidc/callback"]


def test_without_a_provider_the_sign_in_page_has_no_link_and_the_route_says_so(tmp_path: Path) -> None:
    tp = make_test_portal(tmp_path / "station")
    browser = tp.client()
    assert "/sign-in/oidc" not in browser.get("/sign-in").text
    answer = browser.get("/sign-in/oidc")
    assert answer.status_code == 404 and "not set up on this portal" in answer.text


# -- the ID token's checks, as a plain function ----------------------------------------------------------

ISSUER = "https://idp.example.police.uk"
NONCE = "n-0S6_WzA2Mj"
SIGNING_KEY = ECKey.generate_key("P-256", parameters={"kid": "current"})
PROVIDER_KEYS = KeySet([ECKey.import_key(SIGNING_KEY.as_dict(private=False))])


def id_token(key: Any = SIGNING_KEY, alg: str = "ES256", **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "b7e3-0001",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
    }
    claims.update(changes)
    header = {"alg": alg, "kid": key.kid} if key.kid else {"alg": alg}
    return jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, key)


def check(token: str) -> dict[str, Any]:
    return validated_id_token(
        token, keys=PROVIDER_KEYS, issuer=ISSUER, client_id=CLIENT_ID, nonce=NONCE, access_token=None
    )


def test_a_good_id_token_passes_its_checks() -> None:
    assert check(id_token())["sub"] == "b7e3-0001"
    assert check(id_token(aud=[CLIENT_ID]))["sub"] == "b7e3-0001"


def _unsigned(**claims: Any) -> str:
    encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{encode({'alg': 'none'})}.{encode({'iss': ISSUER, 'aud': CLIENT_ID, 'nonce': NONCE, **claims})}."


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: id_token(iss="https://other-idp.example"), id="another issuer"),
        pytest.param(lambda: id_token(aud="another-client"), id="another audience"),
        pytest.param(lambda: id_token(aud=["another-client", CLIENT_ID]), id="shared audience, no azp"),
        pytest.param(lambda: id_token(exp=int(time.time()) - 3600), id="expired"),
        pytest.param(lambda: id_token(nonce="another-sign-in"), id="another nonce"),
        pytest.param(lambda: id_token(nonce=None), id="no nonce"),
        pytest.param(lambda: id_token(sub=None), id="no subject"),
        pytest.param(
            lambda: id_token(key=ECKey.generate_key("P-256", parameters={"kid": "current"})), id="forged"
        ),
        pytest.param(
            lambda: id_token(key=OctKey.import_key(CLIENT_SECRET), alg="HS256"), id="HS256 with secret"
        ),
        pytest.param(lambda: _unsigned(sub="x", exp=int(time.time()) + 60), id="alg none"),
        pytest.param(lambda: id_token()[:-8] + "AAAAAAAA", id="altered signature"),
    ],
)
def test_a_bad_id_token_is_refused(token: Any) -> None:
    with pytest.raises(JoseError):
        check(token())


# -- who the claims say the person is ------------------------------------------------------------------------


def test_roles_come_from_the_named_claim_and_only_known_roles_count() -> None:
    claims = {"sub": "s-1", "preferred_username": "dc.jones", "groups": ["investigator", "Admins", 7]}
    identity = identity_from_claims(claims, user_claim="preferred_username", roles_claim="groups")
    assert identity.actor.user_id == "dc.jones" and identity.actor.roles == {"investigator"}
    assert identity.ignored_roles == ("7", "Admins")
    both = identity_from_claims(
        {"sub": "s-1", "roles": ["officer", "investigator"]},
        user_claim="preferred_username",
        roles_claim="roles",
    )
    assert both.actor.user_id == "s-1" and both.actor.roles == {"officer", "investigator"}  # sub stands in


@pytest.mark.parametrize("roles", [None, "", [], "Investigator", ["admin"], {"investigator": True}])
def test_no_known_role_is_refused(roles: Any) -> None:
    with pytest.raises(AccessDenied, match="holds no portal role"):
        identity_from_claims(
            {"sub": "s-1", "roles": roles}, user_claim="preferred_username", roles_claim="roles"
        )


@pytest.mark.parametrize(
    ("name", "user_id"),
    [
        ("ada.lovelace", "ada.lovelace"),
        ("ada.lovelace@kent.police.uk", "ada.lovelace_40kent.police.uk"),
        ("pc_1234", "pc_5f1234"),  # "_" is escaped too, so no two names meet
        ("pc@1234", "pc_401234"),
        ("Zoë", "Zo_c3_ab"),
    ],
)
def test_the_provider_s_name_for_a_person_becomes_a_safe_user_id(name: str, user_id: str) -> None:
    claims = {"sub": "s-1", "upn": name, "roles": "investigator"}
    assert identity_from_claims(claims, user_claim="upn", roles_claim="roles").actor.user_id == user_id


@pytest.mark.parametrize("name", ["-rm", "_x", "é", "a" * 65, "é" * 22])
def test_a_name_that_cannot_be_a_user_id_is_refused(name: str) -> None:
    with pytest.raises(AccessDenied, match="EVIDENCE_OIDC_USER_CLAIM"):
        identity_from_claims(
            {"sub": "s-1", "upn": name, "roles": "investigator"}, user_claim="upn", roles_claim="roles"
        )
