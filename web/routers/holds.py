"""Legal holds on an incident's evidence: set (``POST /incidents/{ref}/hold``, investigators and
storage admins) and release (``POST /incidents/{ref}/hold/release``, storage admins alone), each with a
reason, CSRF-checked, and recorded in every item's chain with the person's session and client
(``flows.holds``). The answer lists what happened to each item; a failed item is named, not hidden."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from flows.holds import HoldReport, release_hold, set_hold
from web.people import Person
from web.portal import PortalDep
from web.routers.incidents import incident_of
from web.sessions import CsrfChecked
from web.templating import incident_path, page

router = APIRouter()


@router.post("/incidents/{ref:path}/hold/release", response_class=HTMLResponse)
def release(
    request: Request, ref: str, portal: PortalDep, person: CsrfChecked, reason: Annotated[str, Form()] = ""
) -> HTMLResponse:
    incident = incident_of(portal, ref)
    person.actor.require("release")
    report = release_hold(
        portal.vault, portal.catalog, incident, reason, person.actor, requested_via=person.access_details()
    )
    return _report_page(request, person, report, f"Hold released on {incident}")


@router.post("/incidents/{ref:path}/hold", response_class=HTMLResponse)
def hold(
    request: Request, ref: str, portal: PortalDep, person: CsrfChecked, reason: Annotated[str, Form()] = ""
) -> HTMLResponse:
    incident = incident_of(portal, ref)
    person.actor.require("hold")
    report = set_hold(
        portal.vault, portal.catalog, incident, reason, person.actor, requested_via=person.access_details()
    )
    return _report_page(request, person, report, f"Hold set on {incident}")


def _report_page(request: Request, person: Person, report: HoldReport, title: str) -> HTMLResponse:
    failed = bool(report.failed)
    return page(
        request,
        "change.html",
        person,
        status_code=502 if failed else 200,
        title=title + (": some items failed" if failed else ""),
        done=[(o.evidence_id, o.status + (f" ({o.note})" if o.note else "")) for o in report.outcomes],
        back=incident_path(report.incident),
    )
