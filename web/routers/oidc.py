"""Signing in with the force's OpenID Connect provider: ``/sign-in/oidc`` sends the browser to the
provider, ``/sign-in/oidc/callback`` takes its answer back and starts a portal session (method
``oidc``). The flow's steps and checks are ``web.oidc``; sessions and their records ``web.sessions``.

Both routes are public (there is no session yet). Every refusal, from a provider that cannot be
reached to a person with no portal role, is recorded as a failed sign-in and shown as a page saying
what happened; none shows a traceback.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from evidence.errors import EvidenceError, NotFound
from web.errors import status_for
from web.oidc import PENDING_COOKIE, NoPortalRole, ProviderSignIn, new_browser_secret
from web.portal import Portal, PortalDep
from web.sessions import client_address, start_session
from web.templating import page

log = logging.getLogger(__name__)

router = APIRouter()


@router.get("/sign-in/oidc", response_model=None)
async def begin_oidc_sign_in(request: Request, portal: PortalDep, next: str = "") -> Response:
    try:
        provider = provider_sign_in(request, portal)
        browser = request.cookies.get(PENDING_COOKIE) or ""
        if len(browser) < 32:
            browser = new_browser_secret()
        callback = portal.settings.oidc_redirect_uri or str(request.url_for("oidc_callback"))
        destination = await provider.begin(callback, next, browser)
    except EvidenceError as refused:
        return await _refused(request, portal, refused)
    response = RedirectResponse(destination, status_code=303)
    # Lax, not Strict: the provider's redirect back is a cross-site navigation, and a Strict cookie
    # would not come with it. Scoped to the sign-in paths and gone after the sign-in's lifetime.
    response.set_cookie(
        PENDING_COOKIE,
        browser,
        max_age=int(provider.pending.lifetime_seconds),
        path="/sign-in/oidc",
        httponly=True,
        secure=portal.settings.cookie_secure,
        samesite="lax",
    )
    return response


@router.get("/sign-in/oidc/callback", name="oidc_callback", response_model=None)
async def finish_oidc_sign_in(request: Request, portal: PortalDep) -> Response:
    try:
        provider = provider_sign_in(request, portal)
        identity, next_page = await provider.finish(request.query_params, request.cookies.get(PENDING_COOKIE))
    except EvidenceError as refused:
        return await _refused(request, portal, refused)
    actor = identity.actor
    log.info(
        "oidc sign-in user=%s sub=%s roles=%s ignored_roles=%s",
        actor.user_id,
        identity.subject,
        actor.role,
        ",".join(identity.ignored_roles),
    )
    # Not a redirect: the provider sent the browser here, so a redirect would continue a chain that
    # began on another site, and browsers withhold the SameSite=Strict session cookie on every step of
    # such a chain; the person would land on sign-in again. A page of our own, which moves on by
    # itself (meta refresh, no script), makes the next request one this site started.
    response = page(request, "signed_in.html", None, next_page=next_page)
    await run_in_threadpool(start_session, request, response, portal, actor.user_id, actor.roles, "oidc")
    response.delete_cookie(
        PENDING_COOKIE,
        path="/sign-in/oidc",
        httponly=True,
        secure=portal.settings.cookie_secure,
        samesite="lax",
    )
    return response


def provider_sign_in(request: Request, portal: Portal) -> ProviderSignIn:
    """The service's one client of the provider, made on first use. Routes run on one event loop and
    nothing is awaited between the look-up and the store, so two first requests cannot make two."""
    if not portal.settings.oidc_issuer:
        raise NotFound("sign-in with an identity provider is not set up on this portal; use your account")
    client: ProviderSignIn | None = getattr(request.app.state, "oidc_sign_in", None)
    if client is None:
        client = ProviderSignIn(portal.settings)
        request.app.state.oidc_sign_in = client
    return client


async def _refused(request: Request, portal: Portal, refused: EvidenceError) -> HTMLResponse:
    user_id = refused.user_id if isinstance(refused, NoPortalRole) else None
    log.warning("oidc sign-in refused user=%s: %s", user_id, refused)
    await run_in_threadpool(
        portal.accounts.record,
        "failure",
        user_id=user_id,
        method="oidc",
        client_address=client_address(request),
        detail=str(refused),
    )
    status, _ = status_for(refused)
    return page(
        request,
        "error.html",
        None,
        status_code=status,
        title="Sign-in refused" if status in (400, 403) else "Sign-in failed",
        message=str(refused),
    )
