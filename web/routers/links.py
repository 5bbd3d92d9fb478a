"""Linking evidence to an incident (``POST /incidents/{ref}/links``) and unlinking an item from one
(``POST /items/{evidence_id}/unlink``): forms on the incident page for the roles that may, each checked
against the session's CSRF token, each a signed custody event naming the person, their session and
client (``flows.linking``)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from evidence.ids import require_evidence_id
from flows.linking import link_items, unlink_items
from web.portal import PortalDep
from web.routers.incidents import incident_of
from web.sessions import CsrfChecked
from web.templating import incident_path, page

router = APIRouter()

_SEPARATORS = re.compile(r"[\s,;]+")
MAX_IDS = 500


@router.post("/incidents/{ref:path}/links", response_class=HTMLResponse)
def link(
    request: Request,
    ref: str,
    portal: PortalDep,
    person: CsrfChecked,
    evidence_ids: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Link the listed items (one per line, or separated by spaces or commas) to the incident."""
    incident = incident_of(portal, ref)
    person.actor.require("link")
    wanted = [require_evidence_id(e) for e in _SEPARATORS.split(evidence_ids[: MAX_IDS * 40]) if e][:MAX_IDS]
    result = link_items(
        portal.vault,
        portal.catalog,
        wanted,
        incident,
        person.actor,
        reason=reason,
        requested_via=person.access_details(),
    )
    return page(
        request,
        "change.html",
        person,
        title=f"Linked to {incident}",
        done=[(e, "linked") for e in result.changed] + [(e, "already linked") for e in result.unchanged],
        back=incident_path(incident.value),
    )


@router.post("/items/{evidence_id}/unlink", response_class=HTMLResponse)
def unlink(
    request: Request,
    evidence_id: str,
    portal: PortalDep,
    person: CsrfChecked,
    incident: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> HTMLResponse:
    require_evidence_id(evidence_id)
    ref = incident_of(portal, incident)
    person.actor.require("unlink")
    result = unlink_items(
        portal.vault,
        portal.catalog,
        [evidence_id],
        ref,
        person.actor,
        reason=reason,
        requested_via=person.access_details(),
    )
    return page(
        request,
        "change.html",
        person,
        title=f"Unlinked from {ref}",
        done=[(e, "unlinked") for e in result.changed],
        back=incident_path(ref.value),
    )
