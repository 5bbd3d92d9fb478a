"""Signing in with the force's OpenID Connect provider (Entra ID, Keycloak, ADFS): the authorization-code
flow with PKCE and a nonce, the ID token's checks, and who the person is in the portal's terms.

The route module (``web/routers/oidc.py``) only parses and renders; this module holds the steps:

- :meth:`ProviderSignIn.begin` makes the provider's authorization URL and remembers, server-side, the
  state, nonce and PKCE verifier it sent, bound to the browser that asked;
- :meth:`ProviderSignIn.finish` takes the provider's answer back, checks it belongs to that browser
  and is used once, redeems the code, checks the ID token (signature from the provider's JWKS, issuer,
  audience, expiry, nonce) and returns the person's identity;
- :func:`identity_from_claims` turns the token's claims into an :class:`Actor`: the id from
  ``settings.oidc_user_claim`` (or ``sub``) and only the roles the portal knows from
  ``settings.oidc_roles_claim``.

Every refusal is an :class:`EvidenceError` whose message is one line a person can act on; the route
records it as a failed sign-in and shows it as a page.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from evidence.access import ROLES, Actor, Role
from evidence.devices import require_identifier
from evidence.errors import AccessDenied, ConfigError, InvalidInput, ServiceUnavailable
from evidence.settings import Settings
from web.sessions import local_path

log = logging.getLogger(__name__)

PENDING_COOKIE = "evidence_oidc"
"""Binds a sign-in in progress to the browser that started it (see :class:`PendingSignIns`)."""
PENDING_LIFETIME_SECONDS = 600
"""Long enough to type a password and answer an MFA prompt at the provider; no longer."""
PENDING_LIMIT = 10_000
"""Sign-ins in progress held at most; the oldest go first, so a flood of starts cannot fill memory."""
CLOCK_LEEWAY_SECONDS = 60
"""Clock difference tolerated between the provider and this service when checking expiry."""
SCOPE = "openid profile"
# Asymmetric signatures only: a symmetric (HS*) ID token is signed with the client secret, which the
# portal also holds, and "none" is no signature at all.
ID_TOKEN_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class PendingSignIn:
    """What the portal sent the provider, kept until the person comes back (or it expires)."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    next_page: str
    browser: bytes
    """SHA-256 of the pending-sign-in cookie's secret: only the browser holding it may finish."""
    expires_at: float


class PendingSignIns:
    """Sign-ins started and not yet finished, in the service's memory, keyed by their ``state``.

    Why here and not in a signed cookie (Starlette's SessionMiddleware, which authlib's
    ``authorize_redirect`` expects): the PKCE verifier and nonce never leave the server, a ``state``
    is redeemed once (taken out as it is used, so a replayed callback finds nothing), and the portal
    needs no second, app-wide session cookie beside its own server-side session. The browser holds
    only a random secret (``PENDING_COOKIE``, SameSite=Lax so the provider's redirect back carries
    it) whose hash the pending sign-in keeps: a callback carrying someone else's ``state`` (login
    CSRF: an attacker's sign-in finished in a victim's browser) does not match.

    The cost: a sign-in in progress does not survive a restart of the service and is not shared
    between processes; the person starts again (docs/deployment.md).
    """

    def __init__(
        self, lifetime_seconds: float = PENDING_LIFETIME_SECONDS, limit: int = PENDING_LIMIT
    ) -> None:
        self._lifetime = lifetime_seconds
        self._limit = limit
        self._pending: OrderedDict[str, PendingSignIn] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def lifetime_seconds(self) -> float:
        return self._lifetime

    def add(self, pending: PendingSignIn) -> None:
        with self._lock:
            self._drop_expired(time.monotonic())
            self._pending[pending.state] = pending
            while len(self._pending) > self._limit:
                self._pending.popitem(last=False)

    def take(self, state: str, browser_secret: str | None) -> PendingSignIn:
        """The sign-in ``state`` names, removed so it cannot be used again; refused if unknown,
        expired or started in another browser."""
        with self._lock:
            self._drop_expired(time.monotonic())
            pending = self._pending.pop(state, None)
        if pending is None:
            raise InvalidInput(
                "this sign-in is unknown, expired or already used: start again from the sign-in page"
            )
        if browser_secret is None or not hmac.compare_digest(pending.browser, _digest(browser_secret)):
            raise InvalidInput(
                "this sign-in was started in another browser (or its cookie was refused): "
                "start again from the sign-in page"
            )
        return pending

    def new_expiry(self) -> float:
        return time.monotonic() + self._lifetime

    def _drop_expired(self, now: float) -> None:
        # insertion order is expiry order: every entry gets the same lifetime
        while self._pending:
            state, oldest = next(iter(self._pending.items()))
            if oldest.expires_at > now:
                return
            del self._pending[state]


class NoPortalRole(AccessDenied):
    """The provider vouched for the person, but gave them none of the portal's roles."""

    def __init__(self, user_id: str, message: str) -> None:
        super().__init__(message)
        self.user_id = user_id


@dataclass(frozen=True)
class ProviderIdentity:
    """Who the provider says signed in, in the portal's terms."""

    actor: Actor
    subject: str
    """The provider's ``sub``: stable for the person at that provider; logged beside the actor."""
    ignored_roles: tuple[str, ...] = ()
    """Role names in the claim that the portal does not know (logged, never granted)."""


def identity_from_claims(claims: Mapping[str, Any], *, user_claim: str, roles_claim: str) -> ProviderIdentity:
    """The person named by validated ID-token ``claims``: their id from ``user_claim`` (``sub`` when the
    claim is absent) and their roles from ``roles_claim`` (one name or a list). Only roles in
    ``evidence.access.ROLES`` count; someone with none of them is refused (``AccessDenied``)."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AccessDenied("the identity provider's token names no subject (sub): sign-in refused")
    named = claims.get(user_claim)
    claim, name = (user_claim, named) if isinstance(named, str) and named else ("sub", subject)
    user_id = portal_user_id(name, claim)
    value = claims.get(roles_claim)
    names: list[Any] = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    known = frozenset(cast(Role, name) for name in names if name in ROLES)
    ignored = tuple(sorted(str(name) for name in names if name not in ROLES))
    if not known:
        raise NoPortalRole(
            user_id,
            f"{user_id} signed in at the identity provider but holds no portal role "
            f"(claim {roles_claim!r} gives {', '.join(map(repr, ignored)) or 'none'}; roles are "
            f"{', '.join(ROLES)}): ask the identity provider's administrator to assign one",
        )
    return ProviderIdentity(Actor(user_id, known), subject, ignored)


def portal_user_id(name: str, claim: str) -> str:
    """The provider's name for a person (from ``claim``) as a portal user id, in
    ``require_identifier``'s alphabet.

    A name already in that alphabet and without ``_`` is kept as it is (``ada.lovelace``). Any other
    character, ``_`` included, is written as ``_`` and its UTF-8 bytes in hex, so Entra ID's
    ``ada.lovelace@kent.police.uk`` becomes ``ada.lovelace_40kent.police.uk``. Escaping ``_`` itself
    keeps the mapping one-to-one: two different people never get the same id in custody records. A
    name that does not start with a letter or digit, or is too long once escaped, is refused rather
    than shortened or prefixed, which would break that."""
    safe = "".join(
        char
        if char.isascii() and (char.isalnum() or char in ".-")
        else "".join(f"_{b:02x}" for b in char.encode())
        for char in name
    )
    try:
        return require_identifier(safe, "user id")
    except InvalidInput:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise AccessDenied(
            f"the identity provider names this person {shown!r} (claim {claim!r}), which cannot be a "
            "portal user id (it must start with a letter or digit and be at most 64 characters once "
            "escaped): set EVIDENCE_OIDC_USER_CLAIM to a claim with plain ids"
        ) from None


def validated_id_token(
    id_token: str,
    *,
    keys: KeySet,
    issuer: str,
    client_id: str,
    nonce: str,
    access_token: str | None,
    now: int | None = None,
) -> dict[str, Any]:
    """The ID token's claims after its checks: signature by one of the provider's keys with an
    asymmetric algorithm, issuer, audience (and ``azp``), expiry, issued-at, the nonce this sign-in
    sent, and ``at_hash`` against the access token when present. Anything else raises joserfc's or
    authlib's error (a :class:`JoseError`)."""
    token = jwt.decode(
        id_token, keys, registry=JWSRegistry(algorithms=list(ID_TOKEN_ALGORITHMS), strict_check_header=False)
    )
    claims_options: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "nonce": {"essential": True, "value": nonce},
    }
    params: dict[str, Any] = {"nonce": nonce, "client_id": client_id}
    if access_token:
        params["access_token"] = access_token
    checked = CodeIDToken(token.claims, token.header, claims_options, params)
    checked.validate(now=now, leeway=CLOCK_LEEWAY_SECONDS)
    return dict(checked)


class ProviderSignIn:
    """The portal's client of the force's provider, made from settings once per service start."""

    def __init__(self, settings: Settings, pending: PendingSignIns | None = None) -> None:
        if not settings.oidc_issuer:
            raise ConfigError(
                "sign-in with an identity provider is not set up (EVIDENCE_OIDC_ISSUER is empty)"
            )
        if not settings.oidc_client_id or not settings.oidc_client_secret:
            raise ConfigError(
                "EVIDENCE_OIDC_ISSUER is set but EVIDENCE_OIDC_CLIENT_ID or EVIDENCE_OIDC_CLIENT_SECRET "
                "is empty: give the client registered at the identity provider"
            )
        issuer = urlsplit(settings.oidc_issuer)
        # Discovery, code and tokens travel to the issuer: over plain HTTP anyone on the path could
        # read the client secret or forge the keys that sign ID tokens. Loopback is for tests only.
        if issuer.scheme != "https" and not (issuer.scheme == "http" and issuer.hostname in LOOPBACK_HOSTS):
            raise ConfigError(f"EVIDENCE_OIDC_ISSUER {settings.oidc_issuer!r} must be an https:// URL")
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.user_claim = settings.oidc_user_claim
        self.roles_claim = settings.oidc_roles_claim
        self.pending = pending or PendingSignIns()
        self._name = provider_name(settings)
        registry = OAuth()
        self._client = cast(
            StarletteOAuth2App,
            registry.register(
                name="force",
                client_id=settings.oidc_client_id,
                client_secret=settings.oidc_client_secret,
                server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
                client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", "timeout": 10.0},
            ),
        )

    @property
    def provider_name(self) -> str:
        return self._name

    async def begin(self, redirect_uri: str, next_page: str | None, browser_secret: str) -> str:
        """The provider's authorization URL for a new sign-in (PKCE S256 and a nonce), remembered
        under its state for ``browser_secret``'s browser."""
        await self._metadata()
        started = await self._provider_call(self._client.create_authorization_url(redirect_uri))
        self.pending.add(
            PendingSignIn(
                state=started["state"],
                nonce=started["nonce"],
                code_verifier=started["code_verifier"],
                redirect_uri=redirect_uri,
                next_page=local_path(next_page),
                browser=_digest(browser_secret),
                expires_at=self.pending.new_expiry(),
            )
        )
        return str(started["url"])

    async def finish(
        self, answer: Mapping[str, str], browser_secret: str | None
    ) -> tuple[ProviderIdentity, str]:
        """The identity of the person the provider's ``answer`` (the callback's query) signs in, and
        the page they asked for. Refuses (``InvalidInput``, ``AccessDenied``) any answer that is not
        the answer to a sign-in this browser started here, and ``ServiceUnavailable`` when the
        provider cannot be reached."""
        state = answer.get("state")
        if not state:
            raise InvalidInput(
                "the identity provider's answer has no state: start again from the sign-in page"
            )
        pending = self.pending.take(state, browser_secret)
        if answer.get("error"):
            error = answer["error"][:64]
            detail = (answer.get("error_description") or "")[:200]
            raise AccessDenied(
                f"the identity provider refused the sign-in ({error}{': ' + detail if detail else ''})"
            )
        metadata = await self._metadata()
        # RFC 9207: the issuer names itself in its answer, so an answer from another provider the
        # browser also uses (a mix-up attack) is not taken for this one's
        if "iss" in answer and answer["iss"] != metadata["issuer"]:
            raise AccessDenied("the sign-in answer comes from another identity provider: refused")
        code = answer.get("code")
        if not code:
            raise InvalidInput(
                "the identity provider's answer has no code: start again from the sign-in page"
            )
        try:
            token = await self._provider_call(
                self._client.fetch_access_token(
                    redirect_uri=pending.redirect_uri, code=code, code_verifier=pending.code_verifier
                )
            )
        except OAuthError as err:
            raise AccessDenied(
                f"the identity provider did not accept the sign-in ({err.error}): start again"
            ) from None
        if "id_token" not in token:
            raise AccessDenied(
                "the identity provider sent no ID token: check the client is registered for OpenID Connect"
            )
        claims = await self._checked_claims(token, metadata["issuer"], pending.nonce)
        return (
            identity_from_claims(claims, user_claim=self.user_claim, roles_claim=self.roles_claim),
            pending.next_page,
        )

    async def _metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = await self._provider_call(self._client.load_server_metadata())
        if str(metadata.get("issuer", "")).rstrip("/") != self.issuer:
            # OpenID Connect Discovery 4.3: the document must name the issuer it was fetched for
            self._client.server_metadata.clear()
            raise ConfigError(
                f"the identity provider at {self.issuer} calls itself {metadata.get('issuer')!r}: "
                "set EVIDENCE_OIDC_ISSUER to its issuer exactly"
            )
        return metadata

    async def _checked_claims(self, token: Mapping[str, Any], issuer: str, nonce: str) -> dict[str, Any]:
        for refresh in (False, True):
            keys = KeySet.import_key_set(await self._provider_call(self._client.fetch_jwk_set(force=refresh)))
            try:
                return validated_id_token(
                    token["id_token"],
                    keys=keys,
                    issuer=issuer,
                    client_id=self.client_id,
                    nonce=nonce,
                    access_token=token.get("access_token"),
                )
            except InvalidKeyIdError:
                if refresh:
                    raise AccessDenied(
                        "the ID token is signed with a key the identity provider does not publish"
                    ) from None
                # the provider may have rotated its keys since they were fetched: fetch them once more
            except JoseError as err:
                raise AccessDenied(f"the ID token failed its checks ({err.error}): sign-in refused") from None
        raise AssertionError("unreachable")

    async def _provider_call(self, call: Any) -> Any:
        try:
            return await call
        except httpx.HTTPError as err:  # authlib's client is httpx's (no httpx2: constraints.txt)
            log.warning("identity provider %s unreachable: %s", self.issuer, err)
            raise ServiceUnavailable(
                f"the identity provider ({self.provider_name}) cannot be reached; try again shortly"
            ) from None


def provider_name(settings: Settings) -> str:
    """What the sign-in page calls the force's provider ("Sign in with ..."): ``oidc_provider_name``, else
    the issuer's host name; empty when no provider is set up."""
    if not settings.oidc_issuer:
        return ""
    return settings.oidc_provider_name or urlsplit(settings.oidc_issuer).hostname or settings.oidc_issuer


def new_browser_secret() -> str:
    return secrets.token_urlsafe(32)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
