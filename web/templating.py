"""Server-rendered pages: one Jinja2 environment, autoescaped, with no inline script anywhere (the
Content-Security-Policy forbids it); scripts and styles are served by the app itself from ``/static``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from evidence.times import in_utc
from web.people import Person

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


def _when(moment: datetime | None) -> str:
    """A time as people read it in the portal: UTC, to the second, zone named."""
    if moment is None:
        return ""
    return in_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def incident_path(reference: str) -> str:
    """The incident page's path; references may hold '/' (37/12345/26), which the route takes as is."""
    return "/incidents/" + quote(reference, safe="/")


templates.env.filters["when"] = _when
templates.env.filters["incident_path"] = incident_path


def page(
    request: Request,
    name: str,
    person: Person | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``templates/<name>`` with the person (for the header and the CSRF token) and ``context``."""
    return templates.TemplateResponse(
        request,
        name,
        {"person": person, "csrf_token": person.csrf_token if person else "", **context},
        status_code=status_code,
    )
