"""Server-rendered pages: one Jinja2 environment, autoescaped, with no inline script anywhere (the
Content-Security-Policy forbids it); scripts and styles are served by the app itself from ``/static``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from web.people import Person

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


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
