"""Audit trails for storage admins (role ``audit``): ``/audit/items/{evidence_id}`` (the item's custody
chain, verified) and ``/audit/users/{user_id}`` (a person's accesses and exports across items, their
searches and sign-ins), each as a page or as CSV (``?format=csv``, or the path ending in ``.csv``),
streamed with formula-injection protection (``web.csv_download``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from evidence.devices import require_identifier
from evidence.ids import require_evidence_id
from flows.audit import TRAIL_COLUMNS, TrailEntry, item_trail, user_trail
from web.csv_download import csv_lines
from web.portal import PortalDep
from web.sessions import SignedIn
from web.templating import page

router = APIRouter()

PAGE_ROWS = 1000
"""A trail page shows at most this many entries (oldest first); the CSV has them all."""


@router.get("/audit", response_class=HTMLResponse)
def audit_index(request: Request, person: SignedIn) -> Response:
    """Where to look: an item's trail by evidence id, or a person's by user id."""
    person.actor.require("audit")
    item = request.query_params.get("item", "").strip()
    user = request.query_params.get("user", "").strip()
    if item:
        return RedirectResponse(f"/audit/items/{require_evidence_id(item)}", status_code=303)
    if user:
        return RedirectResponse(f"/audit/users/{require_identifier(user, 'user id')}", status_code=303)
    return page(request, "audit_index.html", person)


@router.get("/audit/items/{evidence_id}", response_class=HTMLResponse)
def audit_item(request: Request, evidence_id: str, portal: PortalDep, person: SignedIn) -> Response:
    evidence_id, as_csv = _csv_asked(request, evidence_id)
    trail = item_trail(portal.vault, evidence_id, person.actor)
    if as_csv:
        return _csv(f"audit-{evidence_id}.csv", trail.entries)
    return page(request, "audit_item.html", person, trail=trail, columns=TRAIL_COLUMNS)


@router.get("/audit/users/{user_id}", response_class=HTMLResponse)
def audit_user(request: Request, user_id: str, portal: PortalDep, person: SignedIn) -> Response:
    user_id, as_csv = _csv_asked(request, user_id)
    trail = user_trail(portal.catalog, portal.audit_log, portal.accounts, user_id, person.actor)
    if as_csv:
        return _csv(f"audit-{user_id}.csv", trail.entries)
    shown = list(itertools.islice(trail.entries, PAGE_ROWS + 1))
    return page(
        request,
        "audit_user.html",
        person,
        trail=trail,
        entries=shown[:PAGE_ROWS],
        more=len(shown) > PAGE_ROWS,
        columns=TRAIL_COLUMNS,
    )


def _csv_asked(request: Request, name: str) -> tuple[str, bool]:
    if name.endswith(".csv"):
        return name.removesuffix(".csv"), True
    return name, request.query_params.get("format") == "csv"


def _csv(filename: str, entries: Iterable[TrailEntry]) -> StreamingResponse:
    return StreamingResponse(
        csv_lines(TRAIL_COLUMNS, (entry.row() for entry in entries)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
