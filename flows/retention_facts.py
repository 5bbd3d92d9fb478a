"""What the catalog says about an item's retention: the facts the decision takes, and the lock its objects
were last given; and which policy file applies. Plain functions without Prefect, shared by the retention
run (``flows/retention.py``) and the portal's incident page, which must not load the flow machinery to
show an item's retention state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from evidence.retention import LinkFact, RetentionFacts, as_utc
from evidence.settings import Settings

# -- what the catalog says ------------------------------------------------------------------------


class CatalogItemLike(Protocol):
    @property
    def evidence_id(self) -> str: ...
    @property
    def ingested_at(self) -> datetime: ...
    @property
    def recorded_at(self) -> datetime | None: ...
    @property
    def links(self) -> tuple[LinkFact, ...]: ...
    @property
    def holds(self) -> tuple[str, ...]: ...
    @property
    def retain_until(self) -> datetime | None: ...
    @property
    def reviewed_keep_until(self) -> datetime | None: ...
    @property
    def reviewed_dispose_at(self) -> datetime | None: ...


def facts_from_catalog(item: CatalogItemLike) -> RetentionFacts:
    """The retention facts the catalog holds for an item: each link with its own time, category and
    case closure, as the chain's fold gave them (``evidence.retention.fold_chain``), so the decision
    here is the one the action pass will take again from the chain."""
    return RetentionFacts(
        item.evidence_id,
        item.ingested_at,
        item.recorded_at,
        item.links,
        tuple(item.holds),
        item.reviewed_keep_until,
        item.reviewed_dispose_at,
    )


def catalog_lock(item: CatalogItemLike, settings: Settings) -> datetime:
    """The lock the item's objects were last given: from its latest ``retention`` event, else the
    lock every object gets at ingest."""
    return item.retain_until or as_utc(item.ingested_at) + timedelta(days=settings.retention_days)


def policy_path(settings: Settings) -> Path:
    """The retention policy file the settings name (the shipped default when none is set)."""
    assert settings.retention_policy is not None
    return settings.retention_policy
