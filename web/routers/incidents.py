"""``/incidents/{ref}``: every item linked to an incident now, with thumbnails for a person who may read
evidence and has said why (once per incident per session: ``POST /incidents/{ref}/purpose``), link
history, holds and retention state (``flows.incident_view``).

References may hold '/' (37/12345/26), so the routes take the rest of the path (``{ref:path}``);
routes that end in a fixed word (``/purpose``, ``/links``, ``/hold``, ``/export``) match first by
method, as Starlette tries a route whose path and method both match before one whose path alone does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from evidence.incident import IncidentRef, parse_incident_ref
from flows.incident_view import incident_overview
from flows.item_view import stated_purpose
from flows.retrieval import incident_items
from web import sessions
from web.portal import Portal, PortalDep
from web.sessions import CsrfChecked, SignedIn
from web.templating import incident_path, page

router = APIRouter()


def incident_of(portal: Portal, reference: str) -> IncidentRef:
    """The reference in the URL, checked as the CLI checks one (``InvalidReference``: a 400 page)."""
    return parse_incident_ref(reference, portal.settings.incident_ref_pattern)


@router.post("/incidents/{ref:path}/purpose")
def give_purpose(
    ref: str, portal: PortalDep, person: CsrfChecked, purpose: Annotated[str, Form()] = ""
) -> RedirectResponse:
    """The purpose for this incident's evidence, remembered in the session for each of its items, so
    neither the thumbnails nor the item pages ask again."""
    incident = incident_of(portal, ref)
    person.actor.require("get")
    stated = stated_purpose(purpose)
    for evidence_id in incident_items(portal.catalog, incident).evidence_ids:
        sessions.remember_purpose(portal, person, evidence_id, stated)
    return RedirectResponse(incident_path(incident.value), status_code=303)


@router.get("/incidents/{ref:path}", response_class=HTMLResponse)
def incident(request: Request, ref: str, portal: PortalDep, person: SignedIn) -> HTMLResponse:
    found = incident_of(portal, ref)
    overview = incident_overview(
        portal.vault,
        portal.catalog,
        portal.settings,
        found,
        person.actor,
        now=datetime.now(UTC),
        purpose_of=lambda evidence_id: sessions.purpose_for(portal, person, evidence_id),
        who=person.access_details(),
    )
    return page(request, "incident.html", person, overview=overview, path=incident_path(found.value))
