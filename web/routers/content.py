"""An item's bytes in the browser: ``/items/{id}/content`` (played with HTTP Range, or with
``?download=1`` saved whole) and ``/items/{id}/thumbnail``. The item page links here once the person
has given a purpose for the item in this session; without one the answer is 403.

The checks and custody records are ``flows/playback.py``'s; Range is ``web/ranges.py``'s."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from evidence.ids import require_evidence_id
from flows.playback import (
    Viewer,
    check_viewer,
    download_original,
    item_thumbnail,
    played_bytes,
    start_playing,
)
from web.disposition import attachment, media_type_for
from web.people import Person
from web.portal import Portal, PortalDep
from web.ranges import answer_for
from web.sessions import SignedIn, first_in_session, purpose_for
from web.templating import page

router = APIRouter()

NO_STORE = {"Cache-Control": "no-store"}


def viewer_of(person: Person) -> Viewer:
    return Viewer(person.actor, person.session_id, person.access_details())


def etag_of(evidence_id: str) -> str:
    """A strong ETag: an evidence id names one content for ever (it is derived from its SHA-256)."""
    return f'"{evidence_id}"'


@router.api_route("/items/{evidence_id}/content", methods=["GET", "HEAD"], response_model=None)
def item_content(
    evidence_id: str,
    request: Request,
    person: SignedIn,
    portal: PortalDep,
    download: Annotated[bool, Query()] = False,
) -> Response:
    person.actor.require("get")
    require_evidence_id(evidence_id)
    purpose = purpose_for(portal, person, evidence_id)
    if purpose is None:
        return purpose_needed(request, person, evidence_id)
    viewer = viewer_of(person)
    if download and request.method == "GET":
        return _download(portal, evidence_id, viewer, purpose)
    item = check_viewer(portal.vault, portal.catalog, portal.recent, evidence_id, viewer)
    etag = etag_of(evidence_id)
    answer = answer_for(
        request.headers.get("range"),
        item.manifest.size,
        method=request.method,
        if_range=request.headers.get("if-range"),
        etag=etag,
    )
    headers = answer.headers() | NO_STORE | {"ETag": etag}
    media_type = media_type_for(item.manifest.media_type)
    if answer.status == 416:
        return Response(status_code=416, headers=headers)
    headers["Content-Disposition"] = "inline"
    if request.method == "HEAD":
        if download:
            headers |= {"Content-Disposition": "attachment", "Accept-Ranges": "none"}
        return Response(status_code=200, headers=headers, media_type=media_type)
    assert answer.part is not None
    item = start_playing(
        portal.vault,
        portal.catalog,
        portal.recent,
        evidence_id,
        viewer,
        purpose=purpose,
        first_in_session=lambda: first_in_session(portal, person, evidence_id, "play"),
    )
    return StreamingResponse(
        played_bytes(portal.vault, item, answer.part),
        status_code=answer.status,
        headers=headers,
        media_type=media_type,
    )


def _download(portal: Portal, evidence_id: str, viewer: Viewer, purpose: str) -> Response:
    """The whole original, saved as a file. Range is not served here: only a whole file can be
    checked against the SHA-256 taken at ingest before its last byte leaves."""
    download = download_original(portal.vault, portal.catalog, evidence_id, viewer, purpose=purpose)
    headers = NO_STORE | {
        "Content-Length": str(download.item.manifest.size),
        "Content-Disposition": attachment(download.original_name),
        "Accept-Ranges": "none",
    }
    return StreamingResponse(
        download.chunks, headers=headers, media_type=media_type_for(download.item.manifest.media_type)
    )


@router.get("/items/{evidence_id}/thumbnail", response_model=None)
def item_thumbnail_jpeg(evidence_id: str, request: Request, person: SignedIn, portal: PortalDep) -> Response:
    person.actor.require("thumbs")
    require_evidence_id(evidence_id)
    purpose = purpose_for(portal, person, evidence_id)
    if purpose is None:
        return purpose_needed(request, person, evidence_id)
    preview = item_thumbnail(
        portal.vault,
        portal.catalog,
        portal.recent,
        evidence_id,
        viewer_of(person),
        purpose=purpose,
        first_in_session=lambda: first_in_session(portal, person, evidence_id, "thumbs"),
    )
    return Response(preview, media_type="image/jpeg", headers=NO_STORE | {"Content-Disposition": "inline"})


def purpose_needed(request: Request, person: Person, evidence_id: str) -> Response:
    """403: nothing of an item is released before its purpose is recorded (the item page asks)."""
    return page(request, "purpose_needed.html", person, status_code=403, evidence_id=evidence_id)
