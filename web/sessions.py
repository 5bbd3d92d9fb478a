"""Server-side sessions: the cookie carries only a random secret; everything else stays in the accounts
store (``storage/accounts.py``). Idle timeout and absolute lifetime come from settings; sign-out ends
the session. Also what a session remembers for the person: the purpose they gave for an item, and
whether an item was already played in it (one ``play`` event per item per session).

CONTRACT for routers (filled in by the accounts/sessions work):
- ``signed_in`` (``SignedIn``): FastAPI dependency -> Person; a request without a live session is sent to sign-in
  (HTML: 303 to ``/sign-in?next=...``), never served.
- ``csrf_checked`` (``CsrfChecked``): dependency for every state-changing request; refuses (403) a request whose form
  field ``csrf_token`` (or ``X-CSRF-Token`` header) is not the session's token.
- ``purpose_for(portal, person, evidence_id) -> str | None`` and ``remember_purpose(...)``.
- ``first_in_session(portal, person, evidence_id, what) -> bool``: True exactly once per session.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from web.people import Person
from web.portal import Portal, PortalDep

SESSION_COOKIE = "evidence_session"


def signed_in(request: Request, portal: PortalDep) -> Person:
    raise NotImplementedError


SignedIn = Annotated[Person, Depends(signed_in)]
"""A router's parameter ``person: SignedIn``: the page is for signed-in people only."""


def csrf_checked(request: Request, person: SignedIn) -> Person:
    raise NotImplementedError


CsrfChecked = Annotated[Person, Depends(csrf_checked)]
"""For every state-changing route (POST): signed in, and the form carries the session's CSRF token."""


def purpose_for(portal: Portal, person: Person, evidence_id: str) -> str | None:
    raise NotImplementedError


def remember_purpose(portal: Portal, person: Person, evidence_id: str, purpose: str) -> None:
    raise NotImplementedError


def first_in_session(portal: Portal, person: Person, evidence_id: str, what: str) -> bool:
    raise NotImplementedError
