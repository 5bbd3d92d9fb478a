"""Investigator commands: ``get`` (whole item or a byte range), ``show`` (an item's manifest and sealed
details), ``export`` (an incident as a BagIt bag) and ``thumbs`` (decrypted previews). Each checks the
person's role, verifies the item as every read does, and records the access in the item's custody
chain (``flows/retrieval.py``, ``flows/export.py``, ``docs/access.md``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cli.app import JsonOption, acting_user, app, print_json, settings_now
from flows.console import err, out, styled, visible, visible_message, visible_value

if TYPE_CHECKING:
    from evidence.settings import Settings
    from storage.catalog import Catalog

PurposeOption = Annotated[
    str | None,
    typer.Option("--purpose", help="Why you need it; recorded in each item's chain of custody."),
]
IncidentOption = Annotated[str, typer.Option("--incident", help="Incident reference, e.g. KNT-2026-000123.")]


@app.command()
def get(
    evidence_id: Annotated[str, typer.Argument(help="The item's evidence id (ev-...).")],
    out_path: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write it (a new file). With --range, default: standard output."),
    ] = None,
    byte_range: Annotated[
        str | None,
        typer.Option(
            "--range",
            help="Only these plaintext bytes: START-END with both ends included (0-499 is the first "
            "500 bytes, as HTTP Range), START- to the end, or -N for the last N.",
        ),
    ] = None,
    purpose: PurposeOption = None,
) -> None:
    """Decrypt one item, verify it against the SHA-256 taken at ingest, and write it out (investigators)."""
    from rich.progress import Progress

    from evidence.errors import InvalidInput
    from evidence.ids import require_evidence_id
    from flows.retrieval import get_original, get_range
    from storage.vault import Vault

    require_evidence_id(evidence_id)  # bad input is reported as such before anyone is looked up
    if byte_range is None and out_path is None:
        raise InvalidInput(
            "give --out: a whole item is verified before it is written, and standard output cannot be "
            "taken back (use --range to stream part of an item)"
        )
    settings = settings_now()
    actor = acting_user(settings)
    vault = Vault.open(settings)
    catalog = catalog_if_available(settings)
    if byte_range is not None:
        sink = out_path if out_path is not None else sys.stdout.buffer
        wanted = get_range(vault, evidence_id, actor, byte_range, sink, purpose=purpose, catalog=catalog)
        where = visible(str(out_path)) if out_path is not None else "standard output"
        err.print(f"{evidence_id} bytes {wanted.label} ({wanted.length} bytes, authenticated) -> {where}")
        return
    assert out_path is not None
    size = vault.manifest(evidence_id).size  # for the progress bar: the clear part, nothing released
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("decrypting and verifying", total=size)
        manifest = get_original(
            vault,
            evidence_id,
            actor,
            out_path,
            purpose=purpose,
            catalog=catalog,
            on_bytes=lambda n: bar.advance(task, n),
        )
    out.print(f"{evidence_id} -> {visible(str(out_path))} ({manifest.size} bytes, SHA-256 verified)")


def catalog_if_available(settings: Settings) -> Catalog | None:
    """The catalog, or None with a warning: a read of one item stands on the vault alone (the chain
    of custody is the record; the index catches up with `evidence catalog rebuild`), but without the
    catalog a chain cut short at its end cannot be told from a complete one, so the person is told."""
    from evidence.errors import EvidenceError
    from flows.records import open_catalog

    try:
        return open_catalog(settings)
    except EvidenceError as error:
        err.print(
            styled(
                "warning:",
                "yellow",
                " catalog unavailable, not updated, and chain lengths not checked against it: "
                f"{visible_message(str(error))}",
            ),
            highlight=False,
        )
        return None


@app.command()
def show(
    evidence_id: Annotated[str, typer.Argument(help="The item's evidence id (ev-...).")],
    as_json: JsonOption = False,
) -> None:
    """Show an item's manifest, and its sealed details to investigators on a machine holding the key
    (verified like any read, and recorded in the item's chain of custody)."""
    from evidence.ids import require_evidence_id
    from flows.retrieval import describe_item
    from storage.vault import Vault

    require_evidence_id(evidence_id)  # bad input is reported as such before anyone is looked up
    settings = settings_now()
    actor = acting_user(settings)
    vault = Vault.open(settings)
    doc = describe_item(vault, evidence_id, actor, catalog=catalog_if_available(settings))
    if as_json:
        print_json(doc)
        return
    for key, value in doc.items():
        out.print(styled(key, "bold", f": {visible_value(value)}"))


@app.command()
def export(
    incident: IncidentOption,
    out_dir: Annotated[Path, typer.Option("--out", help="New or empty folder to create the bag in.")],
    purpose: PurposeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export every item linked to an incident as a BagIt bag with chain-of-custody reports
    (investigators; --purpose required)."""
    from rich.progress import Progress

    from evidence.incident import parse_incident_ref
    from flows.export import export_incident
    from flows.retrieval import clean_purpose

    settings = settings_now()
    ref = parse_incident_ref(incident, settings.incident_ref_pattern)
    clean_purpose(purpose, required=True)
    actor = acting_user(settings)
    with Progress(console=err, transient=True, disable=as_json) as bar:
        task = bar.add_task("decrypting and verifying", total=None)
        report = export_incident(
            settings, ref, actor, purpose, out_dir, on_bytes=lambda n: bar.advance(task, n)
        )
    if as_json:
        print_json(
            {
                "bag": str(report.bag),
                "incident": report.incident,
                "items": [
                    {"evidence_id": i.evidence_id, "path": i.path, "size": i.size, "sha256": i.sha256}
                    for i in report.items
                ],
                "payload_bytes": report.payload_bytes,
                "payload_files": report.payload_files,
            }
        )
        return
    table = Table(title=f"Incident {report.incident}")
    table.add_column("evidence id", no_wrap=True, min_width=29)
    table.add_column("in the bag", overflow="fold")
    table.add_column("bytes", justify="right")
    table.add_column("SHA-256 (verified)", overflow="fold")
    for item in report.items:
        table.add_row(item.evidence_id, visible(item.path), str(item.size), item.sha256)
    out.print(table)
    out.print(
        f"{len(report.items)} item(s) -> {visible(str(report.bag))} "
        "(BagIt bag validated; custody reports in data/reports/)"
    )


@app.command()
def thumbs(
    incident: IncidentOption,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for <evidence-id>.jpg previews.")],
    purpose: PurposeOption = None,
) -> None:
    """Write the decrypted preview of every item linked to an incident, for a quick look (investigators)."""
    from evidence.incident import parse_incident_ref
    from flows.retrieval import thumbnails_for_incident

    settings = settings_now()
    ref = parse_incident_ref(incident, settings.incident_ref_pattern)
    report = thumbnails_for_incident(settings, ref, acting_user(settings), out_dir, purpose=purpose)
    for evidence_id, path in report.written:
        out.print(f"{evidence_id} -> {visible(str(path))}")
    if report.without_thumbnail:
        err.print(f"no preview stored for: {', '.join(report.without_thumbnail)}")
    out.print(f"{len(report.written)} preview(s) in {visible(str(out_dir))}")
