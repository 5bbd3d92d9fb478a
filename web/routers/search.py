"""``/search``: find evidence by incident, officer, device, recording dates and media type, a page at a
time (``flows.search``). Every search is recorded in the portal's audit log before it is shown."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from evidence.errors import InvalidInput
from flows import search as searching
from flows.search import CRITERIA_FIELDS, MEDIA_KINDS, parse_criteria, search_evidence
from web.portal import PortalDep
from web.sessions import SignedIn
from web.templating import page

router = APIRouter()


@router.get("/search", response_class=HTMLResponse)
def search(request: Request, portal: PortalDep, person: SignedIn) -> HTMLResponse:
    typed = {
        name: value for name, value in request.query_params.items() if name in (*CRITERIA_FIELDS, "page")
    }
    context = {"typed": typed, "media_kinds": list(MEDIA_KINDS), "results": None, "problem": None}
    if not request.query_params:  # the first visit: the form alone
        return page(request, "search.html", person, **context)
    try:
        criteria = parse_criteria(typed, incident_pattern=portal.settings.incident_ref_pattern)
    except InvalidInput as problem:
        return page(request, "search.html", person, status_code=400, **context | {"problem": str(problem)})
    results = search_evidence(
        portal.catalog,
        portal.audit_log,
        criteria,
        person.actor,
        person.access_details(),
        page_size=searching.PAGE_SIZE,  # read when asked, so a test can make pages small
    )
    links = {
        "previous": "/search?" + urlencode(criteria.page_query(results.page - 1))
        if results.has_previous
        else None,
        "next": "/search?" + urlencode(criteria.page_query(results.page + 1)) if results.has_next else None,
    }
    return page(request, "search.html", person, **context | {"results": results, "links": links})
