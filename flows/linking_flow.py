"""Prefect flow ``link-feed``: link evidence to the incidents of a records-system export, on a schedule.

The records system drops its export at a known path; a deployment of this flow (with a cron schedule)
links what matches and leaves a table artifact listing what a person must decide (ambiguous items)
and which rows of the export were rejected. Re-running on the same export changes nothing.

``linked_by`` names the user the links are recorded under: a service account in the users file with
the officer or investigator role (``[users.records-feed] role = "investigator"``), so a scheduled run is
as accountable as a person's. The task builds the vault and catalog from settings inside (a boto3
client cannot be a task argument, prefect#15861); the run's name carries no file name or reference.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from evidence.access import UserDirectory
from evidence.errors import InvalidInput
from evidence.settings import Settings, load_settings
from flows.linking import FeedReport, link_feed, read_feed_file
from flows.records import open_catalog
from storage.vault import Vault

ARTIFACT_ROWS = 500
"""Rows shown per artifact table; the flow's return value and log carry the full counts."""


@task(cache_policy=NO_CACHE, task_run_name="link-feed-items", persist_result=False)
def link_feed_task(feed_path: str, linked_by: str | None, settings: Settings, dry_run: bool) -> FeedReport:
    actor = UserDirectory.load(settings.users_file).resolve(linked_by or settings.user)
    actor.require("link")
    feed = read_feed_file(Path(feed_path), settings)
    return link_feed(
        Vault.open(settings),
        open_catalog(settings),
        feed,
        actor,
        tolerance=timedelta(minutes=settings.link_tolerance_minutes),
        dry_run=dry_run,
    )


@flow(name="link-feed", flow_run_name="link-feed", persist_result=False, log_prints=False)
def link_feed_flow(
    feed_path: str,
    linked_by: str | None = None,
    dry_run: bool = False,
    settings_overrides: dict[str, Any] | None = None,
) -> FeedReport:
    """Link the unambiguous matches of the export at ``feed_path``; report the rest."""
    settings = load_settings(**(settings_overrides or {}))
    if not feed_path:
        raise InvalidInput("give feed_path: the records-system export to link from")
    logger = get_run_logger()
    report = link_feed_task(feed_path, linked_by, settings, dry_run)
    create_table_artifact(
        key="link-feed-summary",
        table=[
            {"outcome": "incident rows accepted", "count": report.incidents},
            {"outcome": "would be linked" if dry_run else "linked", "count": len(report.linked)},
            {"outcome": "already linked", "count": report.already_linked},
            {"outcome": "ambiguous (a person decides)", "count": len(report.ambiguous)},
            {"outcome": "rows rejected", "count": len(report.rejected)},
            {"outcome": "unlinked by a person, left alone", "count": len(report.kept_unlinked)},
            {"outcome": "no recording time", "count": len(report.undated)},
            {"outcome": "not written: storage failure (re-run)", "count": len(report.failed)},
            {
                "outcome": "case closures to record" if dry_run else "case closures recorded",
                "count": len(report.closed),
            },
            {"outcome": "case closures already recorded", "count": report.closures_already},
        ],
        description=f"Records-system feed linking at station {settings.station_id}",
    )
    if report.ambiguous:
        create_table_artifact(
            key="link-feed-ambiguous",
            table=[
                {"evidence_id": a.evidence_id, "incidents": ", ".join(a.incidents)}
                for a in report.ambiguous[:ARTIFACT_ROWS]
            ],
            description="Items more than one incident fits: link by hand with `evidence link`",
        )
    if report.rejected:
        create_table_artifact(
            key="link-feed-rejected-rows",
            table=[{"row": r.row, "reason": r.reason} for r in report.rejected[:ARTIFACT_ROWS]],
            description="Rows of the export that could not be used",
        )
    logger.info(
        "feed: %d linked, %d already linked, %d ambiguous, %d rows rejected, %d failed",
        len(report.linked),
        report.already_linked,
        len(report.ambiguous),
        len(report.rejected),
        len(report.failed),
    )
    return report
