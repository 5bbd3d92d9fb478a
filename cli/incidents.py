"""Incident and catalog commands: ``link``, ``unlink``, ``link-feed``, ``incident show``, ``items list``
and ``catalog rebuild`` (``flows/linking.py`` does the work; this module parses and renders).

Inputs are validated before the user is looked up or anything is opened, so a malformed reference or
evidence id is one clear line and nothing is written. Listings record an ``access`` event (action
``list``) on every item shown, before it is shown.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.app import (
    EXIT_SOME_FAILED,
    JsonOption,
    acting_user,
    app,
    finish_item_report,
    print_json,
    settings_now,
)
from flows.console import err, out, styled, visible, visible_message

incident_app = typer.Typer(help="Incidents and the evidence linked to them.", no_args_is_help=True)
items_app = typer.Typer(help="Find items in the catalog.", no_args_is_help=True)
catalog_app = typer.Typer(help="The query index over the vault.", no_args_is_help=True)
app.add_typer(incident_app, name="incident")
app.add_typer(items_app, name="items")
app.add_typer(catalog_app, name="catalog")

IncidentOption = Annotated[str, typer.Option("--incident", help="Incident reference, e.g. KNT-2026-000123.")]
EvidenceIds = Annotated[list[str], typer.Argument(help="Evidence ids (ev-...).")]
ListPurpose = Annotated[
    str | None, typer.Option("--purpose", help="Why you are looking; recorded on each item listed.")
]
DEFAULT_LIST_PURPOSE = "listing"


@app.command()
def link(
    evidence_ids: EvidenceIds,
    incident: IncidentOption,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why; recorded in each item's chain.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Link items to an incident (officers, investigators). Already linked items are left as they are."""
    from flows.linking import link_items

    settings, ref, ids = _checked(incident, evidence_ids)
    actor = acting_user(settings)
    actor.require("link")
    vault, catalog = _open(settings)
    result = link_items(vault, catalog, ids, ref, actor, reason=reason, source="manual")
    _render_change(result, "linked to", as_json)


@app.command()
def unlink(
    evidence_ids: EvidenceIds,
    incident: IncidentOption,
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded in each item's chain (required).")],
    as_json: JsonOption = False,
) -> None:
    """Unlink items from an incident; the link stays in each chain's history."""
    from flows.linking import clean_reason, unlink_items

    settings, ref, ids = _checked(incident, evidence_ids)
    clean_reason(reason, required=True)
    actor = acting_user(settings)
    actor.require("unlink")
    vault, catalog = _open(settings)
    result = unlink_items(vault, catalog, ids, ref, actor, reason=reason)
    _render_change(result, "unlinked from", as_json)


@app.command("link-feed")
def link_feed(
    feed: Annotated[Path, typer.Argument(help="CSV or JSON export of incidents from the records system.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be linked; write nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Link items to the incidents of a records-system export by officer and recording time.
    Ambiguous matches are listed for a person to decide; re-running the same feed changes nothing."""
    from flows.linking import link_feed as run_feed
    from flows.linking import read_feed_file

    settings = settings_now()
    parsed = read_feed_file(feed, settings)
    actor = acting_user(settings)
    actor.require("link")
    vault, catalog = _open(settings)
    report = run_feed(
        vault,
        catalog,
        parsed,
        actor,
        tolerance=timedelta(minutes=settings.link_tolerance_minutes),
        dry_run=dry_run,
    )
    if as_json:
        print_json(report.as_json())
    else:
        _render_feed(report)
    if report.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


@incident_app.command("show")
def incident_show(
    reference: Annotated[str, typer.Argument(help="Incident reference, e.g. KNT-2026-000123.")],
    purpose: ListPurpose = None,
    as_json: JsonOption = False,
) -> None:
    """The items linked to an incident, with their operational metadata (recorded as an access)."""
    settings, ref = _incident(reference)
    shown = _listed(settings, purpose, incident=ref.value)
    if as_json:
        print_json({"incident": ref.value, "items": [item.operational() for item in shown]})
        return
    _render_items(shown, title=f"Incident {ref}")


IncidentArgument = Annotated[str, typer.Argument(help="Incident reference, e.g. KNT-2026-000123.")]
ClosureReason = Annotated[
    str, typer.Option("--reason", help="Why (e.g. 'CPS: no further action, letter 2027-01-12'); recorded.")
]


@incident_app.command("close")
def incident_close(
    reference: IncidentArgument,
    reason: ClosureReason,
    closed_at: Annotated[
        str | None,
        typer.Option(
            "--closed-at",
            help="When the case closed (ISO 8601; no offset means UTC; from 2000 to now). Default: now.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Record that an incident's case closed: rules counted from closure start from this date."""
    from evidence.times import require_plausible
    from flows.closure import close_incident
    from flows.retention import parse_now

    settings, ref = _incident(reference)
    when = require_plausible(parse_now(closed_at, option="--closed-at"), "--closed-at")
    report = close_incident(*_open(settings), ref, when, reason, acting_user(settings))
    _render_closure(report, as_json)


@incident_app.command("reopen")
def incident_reopen(reference: IncidentArgument, reason: ClosureReason, as_json: JsonOption = False) -> None:
    """Record that a closed case is open again: rules counted from closure wait for its next closure."""
    from flows.closure import reopen_incident

    settings, ref = _incident(reference)
    report = reopen_incident(*_open(settings), ref, reason, acting_user(settings))
    _render_closure(report, as_json)


@items_app.command("list")
def items_list(
    officer: Annotated[str | None, typer.Option("--officer", help="Officer id.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Device serial.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Recorded at or after (ISO 8601, UTC if no offset).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Recorded before (ISO 8601, UTC if no offset).")
    ] = None,
    purpose: ListPurpose = None,
    as_json: JsonOption = False,
) -> None:
    """Items by officer, device and recording time (recorded as an access on each item listed)."""
    from evidence.devices import require_identifier
    from evidence.errors import InvalidInput
    from evidence.times import parse_time

    filters: dict[str, Any] = {}
    if officer is not None:
        filters["officer"] = require_identifier(officer, "officer id")
    if device is not None:
        filters["device"] = require_identifier(device, "device serial")
    if since is not None:
        filters["since"] = parse_time(since, "--since")
    if until is not None:
        filters["until"] = parse_time(until, "--until")
    if since is not None and until is not None and filters["until"] <= filters["since"]:
        raise InvalidInput("--until must be later than --since")
    shown = _listed(settings_now(), purpose, **filters)
    if as_json:
        print_json({"items": [item.operational() for item in shown]})
        return
    _render_items(shown, title="Items")


@catalog_app.command("rebuild")
def catalog_rebuild(as_json: JsonOption = False) -> None:
    """Rebuild the catalog from the vault alone (manifests and custody chains); items that do not verify
    are refused and named (exit 3)."""
    from flows.records import open_catalog
    from storage.vault import Vault

    settings = settings_now()
    report = open_catalog(settings).rebuild(Vault.open(settings))
    if as_json:
        print_json(
            {
                "items": report.items,
                "events": report.events,
                "seconds": round(report.seconds, 3),
                "problems": list(report.problems),
                "refused": [{"evidence_id": item, "reason": why} for item, why in report.refused],
            }
        )
    else:
        out.print(
            f"catalog rebuilt: {report.items} items, {report.events} custody events in {report.seconds:.1f} s"
        )
    for problem in report.problems:
        err.print(styled("unreadable:", "yellow", f" {visible_message(problem)}"), highlight=False)
    for item, why in report.refused:
        err.print(styled("refused, not indexed:", "red", f" {item}: {visible_message(why)}"), highlight=False)
    if report.refused:
        err.print(
            f"{len(report.refused)} item(s) left out of the catalog because they do not verify; the vault "
            "keeps them untouched: `evidence custody ID` and `evidence fixity` say more"
        )
    if report.problems or report.refused:
        raise typer.Exit(3)


# -- helpers ----------------------------------------------------------------------------------------


def _checked(incident: str, evidence_ids: list[str]) -> tuple[Any, Any, list[str]]:
    from evidence.ids import require_evidence_id

    settings, ref = _incident(incident)
    return settings, ref, [require_evidence_id(e) for e in evidence_ids]


def _incident(reference: str) -> tuple[Any, Any]:
    """The settings, and the reference checked against their pattern (refused with one line)."""
    from evidence.incident import parse_incident_ref

    settings = settings_now()
    return settings, parse_incident_ref(reference, settings.incident_ref_pattern)


def _open(settings: Any) -> tuple[Any, Any]:
    from flows.records import open_catalog
    from storage.vault import Vault

    return Vault.open(settings), open_catalog(settings)


def _listed(settings: Any, purpose: str | None, **filters: Any) -> list[Any]:
    from flows.linking import clean_reason
    from flows.records import record_listing

    stated = clean_reason(purpose, required=False, what="purpose") or DEFAULT_LIST_PURPOSE
    actor = acting_user(settings)
    actor.require("list")
    vault, catalog = _open(settings)
    found = catalog.items(**filters)
    record_listing(
        vault, catalog, [i.evidence_id for i in found], actor=actor.user_id, role=actor.role, purpose=stated
    )
    return list(found)


def _render_change(result: Any, verb: str, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "incident": result.incident,
                "changed": list(result.changed),
                "unchanged": list(result.unchanged),
            }
        )
        return
    incident = visible(result.incident)
    for evidence_id in result.changed:
        out.print(f"{visible(evidence_id)} {verb} {incident}")
    for evidence_id in result.unchanged:
        out.print(f"{visible(evidence_id)} already linked to {incident}; nothing written")


def _render_closure(report: Any, as_json: bool) -> None:
    when = f"case closed {report.closed_at:%Y-%m-%d %H:%M:%S} UTC" if report.closed_at else "case reopened"
    finish_item_report(report, f"Incident {report.incident}: {when}", as_json)


def _render_items(items: list[Any], *, title: str) -> None:
    """Catalogued items: serials, officers, types and references came from devices, the feed and
    people, so each is made visible."""
    table = Table(title=visible(title))
    table.add_column("evidence id", no_wrap=True, min_width=29)  # people copy these: never cut one
    table.add_column("recorded (UTC)", no_wrap=True)
    table.add_column("officer")
    table.add_column("device")
    table.add_column("type", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("incidents", overflow="fold")
    table.add_column("category", overflow="fold")
    table.add_column("holds / closures / flags", overflow="fold")
    for item in items:
        when = item.recorded_at or item.ingested_at
        table.add_row(
            item.evidence_id,
            f"{when:%Y-%m-%d %H:%M:%S}" + ("" if item.recorded_at else " (ingested)"),
            visible(item.officer_id or ""),
            visible(item.device_serial),
            visible(item.media_type),
            str(item.size),
            ", ".join(map(visible, item.incidents)),
            ", ".join(map(visible, item.categories)),
            ", ".join(
                [
                    *(f"hold {visible(h)}" for h in item.holds),
                    *(f"{visible(ref)} closed {at:%Y-%m-%d}" for ref, at in item.closures),
                    *map(visible, item.flags),
                ]
            ),
        )
    out.print(table)
    out.print(f"{len(items)} item(s); each listing is recorded in the items' chains of custody")


def _render_feed(report: Any) -> None:
    verb = "would link" if report.dry_run else "linked"
    out.print(
        f"{report.incidents} incident row(s): {len(report.linked)} {verb}, {report.already_linked} already linked, "
        f"{len(report.ambiguous)} ambiguous, {len(report.rejected)} row(s) rejected"
    )
    if report.ambiguous:
        table = Table(title="Ambiguous: more than one incident fits; link by hand with `evidence link`")
        table.add_column("evidence id", no_wrap=True, min_width=29)
        table.add_column("incidents that fit", overflow="fold")
        for ambiguous in report.ambiguous:
            table.add_row(ambiguous.evidence_id, ", ".join(map(visible, ambiguous.incidents)))
        out.print(table)
    for row in report.rejected:
        # a rejected row's reason quotes the feed's own values
        err.print(
            styled(f"row {row.row} rejected:", "yellow", f" {visible_message(row.reason)}"), highlight=False
        )
    for evidence_id, ref in report.kept_unlinked:
        out.print(f"{evidence_id} fits {visible(ref)} but was unlinked from it by a person; left unlinked")
    if report.undated:
        out.print(
            f"{len(report.undated)} item(s) of the feed's officers have no recording time; link them by hand"
        )
    for skipped in report.skipped:
        err.print(
            styled(
                "skipped",
                "yellow",
                f" {skipped.evidence_id} -> {visible(skipped.incident)}: {visible_message(skipped.reason)}",
            ),
            highlight=False,
        )
    if report.closed or report.closures_already:
        verb = "to record" if report.dry_run else "recorded"
        out.print(
            f"case closures: {len(report.closed)} item(s) {verb}, {report.closures_already} already recorded"
        )
    if report.closures_refused:
        err.print(
            styled("closures not recorded:", "yellow", f" {visible_message(report.closures_refused)}"),
            highlight=False,
        )
    for failed in report.failed:
        err.print(
            styled(
                "not written",
                "red",
                f" {failed.evidence_id} -> {visible(failed.incident)}: "
                f"{visible_message(failed.reason)}; re-run the feed",
            )
        )
