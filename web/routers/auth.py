"""Signing in with a local account (user id, password and TOTP code on one form), signing out, the front
page, and a person's own recent sign-ins. The checks themselves are ``flows.accounts.sign_in``; the
session cookie and CSRF defences are ``web.sessions``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from evidence.accounts import SignInRefused, SignInThrottled
from flows.accounts import sign_in
from web.oidc import provider_name
from web.portal import PortalDep
from web.sessions import (
    CsrfChecked,
    SignedIn,
    clear_session_cookie,
    client_address,
    current_person,
    end_session_of_request,
    local_path,
    require_sign_in_form_token,
    set_session_cookie,
    set_sign_in_form_cookie,
    sign_in_form_token,
)
from web.templating import page

router = APIRouter()

RECENT_SIGN_INS = 30


@router.get("/")
def front_page(request: Request, portal: PortalDep) -> RedirectResponse:
    signed_in = current_person(request, portal) is not None
    return RedirectResponse("/search" if signed_in else "/sign-in", status_code=303)


@router.get("/sign-in", response_model=None)
def sign_in_page(request: Request, portal: PortalDep, next: str = "") -> Response:
    if current_person(request, portal) is not None:
        return RedirectResponse(local_path(next), status_code=303)
    return _sign_in_form(request, portal, next=local_path(next))


@router.post("/sign-in", response_model=None)
def sign_in_submitted(
    request: Request,
    portal: PortalDep,
    user: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    totp: Annotated[str, Form(max_length=20)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    require_sign_in_form_token(request, csrf_token)
    try:
        new = sign_in(portal.accounts, user.strip(), password, totp, client_address(request))
    except SignInRefused as refused:
        status = 429 if isinstance(refused, SignInThrottled) else 401
        return _sign_in_form(
            request, portal, next=local_path(next), user=user, message=str(refused), status=status
        )
    end_session_of_request(request, portal, "new sign-in in the same browser")
    response = RedirectResponse(local_path(next), status_code=303)
    set_session_cookie(response, new.secret, portal.settings)
    return response


@router.post("/sign-out")
def sign_out(request: Request, portal: PortalDep, person: CsrfChecked) -> RedirectResponse:
    portal.accounts.end_session(person.session_id, "sign-out", client_address=person.client_address)
    response = RedirectResponse("/sign-in", status_code=303)
    clear_session_cookie(response, portal.settings)
    return response


@router.get("/account/sign-ins")
def my_sign_ins(request: Request, portal: PortalDep, person: SignedIn) -> HTMLResponse:
    records = portal.accounts.sign_ins(person.user_id, limit=RECENT_SIGN_INS)
    return page(request, "my_sign_ins.html", person, records=records)


def _sign_in_form(
    request: Request, portal: PortalDep, *, next: str, user: str = "", message: str = "", status: int = 200
) -> HTMLResponse:
    token = sign_in_form_token(request)
    response = page(
        request,
        "sign_in.html",
        None,
        status_code=status,
        next=next,
        user=user,
        message=message,
        form_token=token,
        oidc_provider=provider_name(portal.settings),
    )
    set_sign_in_form_cookie(response, token, portal.settings)
    return response
