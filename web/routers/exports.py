"""An incident's evidence as one download: ``POST /incidents/{ref}/export`` answers with a BagIt bag
inside a zip, streamed as it is written (``flows/export_zip.py`` says what is checked and recorded
before the first byte, and what happens if an original fails its check on the way)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import StreamingResponse

from evidence.incident import parse_incident_ref
from flows.export_zip import export_incident_zip
from web.disposition import attachment
from web.portal import PortalDep
from web.sessions import CsrfChecked

router = APIRouter()


@router.post("/incidents/{ref:path}/export")
def export_incident(
    ref: str,
    person: CsrfChecked,
    portal: PortalDep,
    purpose: Annotated[str, Form()] = "",
) -> StreamingResponse:
    person.actor.require("export")
    incident = parse_incident_ref(ref, portal.settings.incident_ref_pattern)
    export = export_incident_zip(
        portal.vault, portal.catalog, incident, person.actor, purpose, details=person.access_details()
    )
    return StreamingResponse(
        export.chunks,
        media_type="application/zip",
        headers={
            "Content-Disposition": attachment(f"{export.bag_name}.zip".encode()),
            "Cache-Control": "no-store",
        },
    )
