"""Searching the catalog from the portal: by incident, officer, device, recording dates and media kind.

What a person types is checked by the same validators the CLI uses (incident references, identifiers,
times), so a bad value is one clear line, never a query. Results are pages in a stable order (recording
time, then evidence id) whose links carry the criteria. Every search is recorded in the portal's audit
log (who, how signed in, session, client, criteria, how many matched) before its results are returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from evidence.access import Actor
from evidence.devices import require_identifier
from evidence.errors import InvalidInput
from evidence.incident import IncidentRef, parse_incident_ref
from evidence.times import in_utc, later, parse_time

if TYPE_CHECKING:
    from storage.audit_log import AuditLog
    from storage.catalog import Catalog, CatalogItem

PAGE_SIZE = 50
MAX_PAGE = 100_000
MEDIA_KINDS: Mapping[str, tuple[str, ...]] = {
    "photo": ("photo",),
    "video": ("video",),
    "audio": ("audio",),
    "other": ("document", "other"),
}
"""What a person picks, and the manifest kinds (``evidence.media.info.MediaKind``) each stands for."""
CRITERIA_FIELDS = ("incident", "officer", "device", "from", "to", "media")


@dataclass(frozen=True)
class SearchCriteria:
    incident: IncidentRef | None = None
    officer: str | None = None
    device: str | None = None
    recorded_from: date | datetime | None = None
    """Recorded at or after (a date: from that day's start, UTC)."""
    recorded_to: date | datetime | None = None
    """Recorded up to (a date: to that day's end, UTC, the day included)."""
    media: str | None = None
    """``photo``, ``video``, ``audio`` or ``other``."""
    page: int = 1

    def as_query(self) -> dict[str, str]:
        """The criteria as form fields (empty ones left out), for page links and the audit record."""
        values = {
            "incident": self.incident.value if self.incident else None,
            "officer": self.officer,
            "device": self.device,
            "from": self.recorded_from.isoformat() if self.recorded_from else None,
            "to": self.recorded_to.isoformat() if self.recorded_to else None,
            "media": self.media,
        }
        return {name: value for name, value in values.items() if value}

    def page_query(self, page: int) -> dict[str, str]:
        return self.as_query() | {"page": str(page)}

    @property
    def since(self) -> datetime | None:
        if self.recorded_from is None:
            return None
        return _start_of(self.recorded_from)

    @property
    def until(self) -> datetime | None:
        """Exclusive upper bound: a date means the whole of that day."""
        if self.recorded_to is None:
            return None
        if isinstance(self.recorded_to, datetime):
            return self.recorded_to
        return later(_start_of(self.recorded_to), timedelta(days=1))


@dataclass(frozen=True)
class SearchPage:
    criteria: SearchCriteria
    items: tuple[CatalogItem, ...]
    total: int
    """Items matching, over all pages."""
    page_size: int = PAGE_SIZE

    @property
    def page(self) -> int:
        return self.criteria.page

    @property
    def first_shown(self) -> int:
        return (self.page - 1) * self.page_size + 1 if self.items else 0

    @property
    def last_shown(self) -> int:
        return (self.page - 1) * self.page_size + len(self.items)

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page * self.page_size < self.total


def parse_criteria(fields: Mapping[str, str], *, incident_pattern: str) -> SearchCriteria:
    """The search form's fields (``incident``, ``officer``, ``device``, ``from``, ``to``, ``media``,
    ``page``), validated; blank fields are no criterion. ``InvalidInput`` names the field at fault."""
    given = {
        name: value.strip() for name, value in fields.items() if isinstance(value, str) and value.strip()
    }
    media = given.get("media")
    if media is not None and media not in MEDIA_KINDS:
        raise InvalidInput(f"media type {media[:40]!r} is not one of {', '.join(MEDIA_KINDS)}")
    criteria = SearchCriteria(
        incident=parse_incident_ref(given["incident"], incident_pattern) if "incident" in given else None,
        officer=require_identifier(given["officer"], "officer id") if "officer" in given else None,
        device=require_identifier(given["device"], "device serial") if "device" in given else None,
        recorded_from=_day_or_time(given["from"], "from date") if "from" in given else None,
        recorded_to=_day_or_time(given["to"], "to date") if "to" in given else None,
        media=media,
        page=_page_number(given.get("page", "1")),
    )
    since, until = criteria.since, criteria.until
    if since is not None and until is not None and until <= since:
        raise InvalidInput("the to date is before the from date: swap them, or leave one empty")
    return criteria


def search_evidence(
    catalog: Catalog,
    audit_log: AuditLog,
    criteria: SearchCriteria,
    actor: Actor,
    who: Mapping[str, str],
    *,
    page_size: int = PAGE_SIZE,
) -> SearchPage:
    """One page of the items matching ``criteria``, recorded (``who``: how the person signed in, their
    session and client) in the audit log before it is returned: no search is shown unrecorded."""
    actor.require("list")
    items, total = catalog.search(
        incident=criteria.incident.value if criteria.incident else None,
        officer=criteria.officer,
        device=criteria.device,
        since=criteria.since,
        until=criteria.until,
        kinds=MEDIA_KINDS[criteria.media] if criteria.media else None,
        offset=(criteria.page - 1) * page_size,
        limit=page_size,
    )
    audit_log.record_search(
        user_id=actor.user_id,
        role=actor.role,
        who=who,
        criteria=criteria.page_query(criteria.page),
        result_count=total,
    )
    return SearchPage(criteria, tuple(items), total, page_size)


def _day_or_time(text: str, what: str) -> date | datetime:
    """A date (``2026-03-14``, as a date field sends it) or an ISO 8601 time."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        return parse_time(text, what)


def _start_of(moment: date | datetime) -> datetime:
    if isinstance(moment, datetime):
        return moment
    return in_utc(datetime(moment.year, moment.month, moment.day))


def _page_number(text: str) -> int:
    if (
        len(text) > len(str(MAX_PAGE))
        or not text.isascii()
        or not text.isdigit()
        or not 1 <= int(text) <= MAX_PAGE
    ):
        raise InvalidInput(f"page {text[:20]!r} is not a page number (1 to {MAX_PAGE})")
    return int(text)
