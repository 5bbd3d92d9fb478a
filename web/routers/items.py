"""``/items/{evidence_id}``: one item for a person who may read evidence: the player, the sealed
metadata, the location, the custody chain with its verification, and the original to download
(``flows.item_view``). The page asks why first, once per item per session
(``POST /items/{evidence_id}/purpose``); every view is recorded before the page is sent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from evidence.ids import require_evidence_id
from flows.item_view import stated_purpose, view_item
from web import sessions
from web.portal import PortalDep
from web.sessions import CsrfChecked, SignedIn
from web.templating import page

router = APIRouter()

BROWSER_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
"""Photos a browser shows as they are; others (HEIC, TIFF, raw) are shown by their thumbnail."""


@router.get("/items/{evidence_id}", response_class=HTMLResponse)
def item(request: Request, evidence_id: str, portal: PortalDep, person: SignedIn) -> HTMLResponse:
    require_evidence_id(evidence_id)
    person.actor.require("get")
    purpose = sessions.purpose_for(portal, person, evidence_id)
    if purpose is None:
        return page(request, "item_purpose.html", person, evidence_id=evidence_id)
    view = view_item(
        portal.vault, portal.catalog, evidence_id, person.actor, purpose=purpose, who=person.access_details()
    )
    return page(
        request,
        "item.html",
        person,
        view=view,
        purpose=purpose,
        browser_image=view.manifest.media_type in BROWSER_IMAGE_TYPES,
    )


@router.post("/items/{evidence_id}/purpose")
def give_purpose(
    evidence_id: str, portal: PortalDep, person: CsrfChecked, purpose: Annotated[str, Form()] = ""
) -> RedirectResponse:
    require_evidence_id(evidence_id)
    person.actor.require("get")
    sessions.remember_purpose(portal, person, evidence_id, stated_purpose(purpose))
    return RedirectResponse(f"/items/{evidence_id}", status_code=303)
