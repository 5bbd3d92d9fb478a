"""Server-side sessions: the cookie carries only a random secret; everything else stays in the accounts
store (``storage/accounts.py``). Idle timeout and absolute lifetime come from settings; sign-out ends
the session. Also what a session remembers for the person: the purpose they gave for an item, and
whether an item was already played in it (one ``play`` event per item per session).

CONTRACT for routers:
- ``signed_in`` (``SignedIn``): FastAPI dependency -> Person; a request without a live session is sent to sign-in
  (HTML: 303 to ``/sign-in?next=...``), never served.
- ``csrf_checked`` (``CsrfChecked``): dependency for every state-changing request; refuses (403) a request whose form
  field ``csrf_token`` (or ``X-CSRF-Token`` header) is not the session's token.
- ``purpose_for(portal, person, evidence_id) -> str | None`` and ``remember_purpose(...)``.
- ``first_in_session(portal, person, evidence_id, what) -> bool``: True exactly once per session.
- ``start_session(request, response, portal, user_id, roles, method)``: after a sign-in (local or OIDC) has
  proved who someone is: ends the browser's previous session, starts a new one, sets the cookie.

CSRF: every session has its own random token, compared in constant time on every POST. The sign-in form
comes before any session, so it uses a double-submit cookie: the form page sets a random token in a
``SameSite=Strict`` cookie scoped to ``/sign-in`` and in a hidden field, and the POST must carry both,
equal. Another site can neither read the cookie nor make the browser send it, so it cannot sign a victim
in to an account of its choosing (login CSRF).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Annotated, cast
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from evidence.access import Actor, Role
from evidence.accounts import session_end_reason
from evidence.errors import AccessDenied
from evidence.settings import Settings
from web.people import Person, SignInMethod
from web.portal import Portal, PortalDep
from web.templating import page

SESSION_COOKIE = "evidence_session"
SIGN_IN_FORM_COOKIE = "evidence_sign_in_form"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_PAGE = "/search"


class SignInRequired(Exception):
    """No live session: a page goes to sign-in, anything else is refused. Not an ``EvidenceError``:
    nobody did anything wrong; a session ended or was never there."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in to continue")
        self.next_path = next_path


def client_address(request: Request) -> str:
    # the socket's peer: uvicorn runs with proxy headers off, so a client cannot claim another address
    return request.client.host if request.client else "unknown"


def current_person(request: Request, portal: Portal) -> Person | None:
    """The person whose live session the request's cookie names, or None. A session found past its idle
    or absolute limit is ended here, and that is recorded."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    accounts = portal.accounts
    record = accounts.session(secret)
    if record is None or record.ended_at is not None:
        return None
    settings = portal.settings
    reason = session_end_reason(
        record.created_at,
        record.last_seen_at,
        accounts.now(),
        idle=timedelta(minutes=settings.session_idle_minutes),
        absolute=timedelta(hours=settings.session_absolute_hours),
    )
    if reason is not None:
        accounts.end_session(record.session_id, "expiry", reason, client_address=client_address(request))
        return None
    accounts.touch(record)
    person = Person(
        actor=Actor(record.user_id, record.roles),
        method=cast(SignInMethod, record.method),
        session_id=record.session_id,
        client_address=client_address(request),
        csrf_token=record.csrf_token,
    )
    request.state.person = person  # error pages show who is signed in
    return person


def signed_in(request: Request, portal: PortalDep) -> Person:
    person = current_person(request, portal)
    if person is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return person


SignedIn = Annotated[Person, Depends(signed_in)]
"""A router's parameter ``person: SignedIn``: the page is for signed-in people only."""


async def csrf_checked(request: Request, person: SignedIn) -> Person:
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()  # cached by Starlette: the route still reads its own fields
        field = form.get(CSRF_FIELD)
        given = field if isinstance(field, str) else None
    if not given or not _same(given, person.csrf_token):
        raise AccessDenied(
            "this form is out of date or did not come from this portal (CSRF check failed); "
            "reload the page and try again"
        )
    return person


CsrfChecked = Annotated[Person, Depends(csrf_checked)]
"""For every state-changing route (POST): signed in, and the form carries the session's CSRF token."""


def purpose_for(portal: Portal, person: Person, evidence_id: str) -> str | None:
    return portal.accounts.purpose(person.session_id, evidence_id)


def remember_purpose(portal: Portal, person: Person, evidence_id: str, purpose: str) -> None:
    portal.accounts.remember_purpose(person.session_id, evidence_id, purpose)


def first_in_session(portal: Portal, person: Person, evidence_id: str, what: str) -> bool:
    return portal.accounts.first_in_session(person.session_id, evidence_id, what)


# -- starting and ending sessions -------------------------------------------------------------------


def start_session(
    request: Request,
    response: Response,
    portal: Portal,
    user_id: str,
    roles: frozenset[Role],
    method: SignInMethod,
) -> None:
    """Begin a session for someone whose identity was just proved, replacing any the browser had."""
    end_session_of_request(request, portal, "new sign-in in the same browser")
    new = portal.accounts.start_session(user_id, roles, method, client_address(request))
    set_session_cookie(response, new.secret, portal.settings)


def end_session_of_request(request: Request, portal: Portal, detail: str) -> None:
    secret = request.cookies.get(SESSION_COOKIE)
    record = portal.accounts.session(secret) if secret else None
    if record is not None and record.ended_at is None:
        portal.accounts.end_session(
            record.session_id, "sign-out", detail, client_address=client_address(request)
        )


def set_session_cookie(response: Response, secret: str, settings: Settings) -> None:
    # HttpOnly: no script (an injected one included) reads it. Strict: no other site's page makes the
    # browser send it. No Max-Age: it goes when the browser closes; the server ends it sooner.
    response.set_cookie(
        SESSION_COOKIE, secret, httponly=True, secure=settings.cookie_secure, samesite="strict", path="/"
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, secure=settings.cookie_secure, samesite="strict", path="/"
    )


# -- the sign-in form's own CSRF defence (double-submit cookie) ------------------------------------------


def sign_in_form_token(request: Request) -> str:
    """The browser's sign-in form token: the one its cookie already holds (so two tabs showing the form
    both work), else a new one."""
    held = request.cookies.get(SIGN_IN_FORM_COOKIE, "")
    return held if len(held) >= 32 else secrets.token_urlsafe(32)


def set_sign_in_form_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(
        SIGN_IN_FORM_COOKIE,
        token,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="strict",
        path="/sign-in",
    )


def require_sign_in_form_token(request: Request, given: str) -> None:
    expected = request.cookies.get(SIGN_IN_FORM_COOKIE)
    if not expected or not given or not _same(given, expected):
        raise AccessDenied(
            "this sign-in form is out of date or did not come from this portal; reload the sign-in page"
        )


def local_path(target: str | None, default: str = DEFAULT_PAGE) -> str:
    """``target`` if it is a path on this portal, else ``default``: a sign-in link must never send a person
    on to another site (``/sign-in?next=//evil.example``), where a look-alike page could ask again."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith(("/sign-in", "/sign-out")):
        return default
    return target


def sign_in_url(next_path: str) -> str:
    return "/sign-in?" + urlencode({"next": local_path(next_path)})


def install_sign_in_redirect(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def _sign_in_required(request: Request, error: SignInRequired) -> Response:
        settings = request.app.state.portal.settings
        response: Response
        if request.method in ("GET", "HEAD"):
            response = RedirectResponse(sign_in_url(error.next_path), status_code=303)
        else:
            response = _signed_out_page(request)
        clear_session_cookie(response, settings)
        return response


def _signed_out_page(request: Request) -> HTMLResponse:
    return page(
        request,
        "error.html",
        None,
        status_code=401,
        title="Signed out",
        message="You are not signed in, or your session has ended; sign in again and repeat what you did.",
    )


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
