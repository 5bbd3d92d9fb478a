"""Project errors as pages: the same one-line messages the CLI prints, with the HTTP status that fits.
Never a traceback: anything unexpected is logged and shown as a plain 500 page."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from evidence.errors import (
    AccessDenied,
    ConfigError,
    EvidenceError,
    IntegrityError,
    InvalidInput,
    LockedError,
    NotFound,
    ServiceUnavailable,
    StorageError,
)
from web.templating import page

log = logging.getLogger(__name__)

STATUS_FOR: tuple[tuple[type[EvidenceError], int, str], ...] = (
    (AccessDenied, 403, "Not allowed"),
    (NotFound, 404, "Not found"),
    (InvalidInput, 400, "Cannot do that"),
    (LockedError, 423, "Locked"),
    (IntegrityError, 409, "Integrity check failed"),
    (ServiceUnavailable, 503, "Unavailable; try again"),
    (StorageError, 502, "Storage error"),
    (ConfigError, 500, "Configuration error"),
)


def status_for(error: EvidenceError) -> tuple[int, str]:
    for kind, status, title in STATUS_FOR:
        if isinstance(error, kind):
            return status, title
    return 500, "Error"


def install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(EvidenceError)
    async def _evidence_error(request: Request, error: EvidenceError) -> HTMLResponse:
        status, title = status_for(error)
        return page(
            request,
            "error.html",
            getattr(request.state, "person", None),
            status_code=status,
            title=title,
            message=str(error),
        )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> HTMLResponse:
        # unknown paths (404) and methods (405): a page like every other, not the framework's JSON
        answer = page(
            request,
            "error.html",
            getattr(request.state, "person", None),
            status_code=error.status_code,
            title={404: "Not found", 405: "Not allowed"}.get(error.status_code, "Cannot do that"),
            message=str(error.detail) if error.status_code not in (404, 405) else "There is no such page.",
        )
        for name, value in (error.headers or {}).items():
            answer.headers[name] = value
        return answer

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, error: RequestValidationError) -> HTMLResponse:
        # a form field too long, a parameter of the wrong type: one line naming it, never the
        # framework's JSON echo of what was sent (which could carry a password)
        problem = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in problem.get("loc", ())[1:]) or "the request"
        return page(
            request,
            "error.html",
            getattr(request.state, "person", None),
            status_code=400,
            title="Cannot do that",
            message=f"{where}: {problem.get('msg', 'not accepted')}",
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> HTMLResponse:
        log.exception("unexpected error serving %s", request.url.path)
        return page(
            request,
            "error.html",
            None,
            status_code=500,
            title="Unexpected error",
            message="Something went wrong; the service log has the details.",
        )
