"""The station's commands: keys, vault, ingest, show, dock and demo.

Commands parse, call one function, render. Prefect is imported only by commands that run a flow, so
reading an item back does not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.app import (
    EXIT_SOME_FAILED,
    JsonOption,
    acting_user,
    app,
    dock_app,
    keys_app,
    print_json,
    settings_now,
    vault_app,
)
from flows.console import err, out, styled, visible, visible_message

# -- keys and vault -------------------------------------------------------------------------------


@keys_app.command("init")
def keys_init() -> None:
    """Create the vault key pair and id key in the keys directory (once per vault)."""
    from flows.keys import init_keys

    created = init_keys(settings_now())
    for path in created:
        out.print(f"created {visible(str(path))}")
    if not created:
        out.print("keys already present; nothing created")


@keys_app.command("station-bundle")
def keys_station_bundle(
    out_dir: Annotated[Path, typer.Argument(help="Empty folder to copy the station's keys into.")],
) -> None:
    """Copy what an ingest station needs (recipient public key, id key) and nothing that decrypts."""
    from flows.keys import station_bundle

    for path in station_bundle(settings_now(), out_dir):
        out.print(f"wrote {visible(str(path))}")


@vault_app.command("init")
def vault_init() -> None:
    """Create or check the vault: versioning on, Object Lock enabled, public access blocked."""
    from flows.keys import open_vault_for_init

    vault = open_vault_for_init(settings_now())
    setup = vault.initialise()
    problems = vault.store.check()
    out.print(f"vault {'created' if setup.created else 'already initialised'} at {visible(vault.store.url)}")
    for note in setup.notes:
        out.print(styled("note:", "cyan", f" {visible_message(note)}"))
    for problem in problems:
        err.print(styled("warning:", "yellow", f" {visible_message(problem)}"))
    if problems:
        raise typer.Exit(1)


@vault_app.command("check")
def vault_check() -> None:
    """Report anything that makes the vault unfit for evidence."""
    from storage.open import open_store

    store = open_store(settings_now())
    problems = store.check()
    for problem in problems:
        err.print(f"problem: {visible_message(problem)}")
    if problems:
        raise typer.Exit(1)
    out.print(f"{visible(store.url)}: versioning, Object Lock and access block in place")


# -- ingest ---------------------------------------------------------------------------------------


@app.command()
def ingest(
    device_dir: Annotated[Path, typer.Argument(help="Folder where the docked device is mounted.")],
    device: Annotated[
        str | None, typer.Option(help="Device serial (default: registry / folder name).")
    ] = None,
    officer: Annotated[
        str | None, typer.Option(help="Officer id (default: from the device registry).")
    ] = None,
    wipe: Annotated[
        bool, typer.Option(help="Remove each file from the device once its copy is verified.")
    ] = False,
    incident: Annotated[
        list[str] | None,
        typer.Option(
            "--incident",
            help="Link every file to this incident (repeatable); needs the officer or investigator role.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest every file on a docked device into the vault."""
    from flows.run import run_ingest

    linked_by = None
    if incident:
        linked_by = acting_user(settings_now()).user_id
    report = run_ingest(
        device_dir,
        device_serial=device,
        officer_id=officer,
        wipe=wipe,
        quiet=as_json,
        incidents=incident or (),
        linked_by=linked_by,
    )
    if as_json:
        print_json(report.as_json())
    else:
        _render_report(report)
    if not report.complete:
        raise typer.Exit(EXIT_SOME_FAILED)


def _render_report(report: Any) -> None:
    """The ingest table. Names come from the device, and reasons quote them: hidden characters in
    either are made visible, so an escape sequence or a bidi control in a file name cannot rewrite
    the report, nor a newline forge a row (``--json`` gives them exactly)."""
    table = Table(title=f"Device {visible(report.device_serial)}", show_lines=False)
    table.add_column("status")
    table.add_column("file", overflow="fold")
    table.add_column("evidence id", no_wrap=True, min_width=29)  # people copy these: never cut one
    table.add_column("type", overflow="fold")
    table.add_column("note", overflow="fold")
    for o in report.outcomes:
        note = o.reason or ""
        if o.flags:
            note = ", ".join(o.flags) + (f"; {note}" if note else "")
        if o.wiped:
            note = ("wiped; " + note).rstrip("; ")
        table.add_row(
            o.status,
            visible(o.source_path),
            o.evidence_id or "",
            visible(o.media_type or ""),
            visible_message(note),
        )
    out.print(table)
    out.print(", ".join(f"{n} {status}" for status, n in sorted(report.counts.items())) or "device is empty")
    if report.orphaned_objects:
        err.print(
            f"{len(report.orphaned_objects)} object(s) in the vault belong to no item: uploads of a run "
            "that was interrupted or lost the race to store the same file to another run. They are "
            "unreadable (their key was never stored) and no item misses them; they may be deleted once "
            "their lock expires (their keys: --json, orphaned_objects)."
        )
    if report.recovered_uploads:
        err.print(
            f"aborted {len(report.recovered_uploads)} upload(s) an interrupted run left unfinished; "
            "nothing of them remains."
        )


# -- automation -----------------------------------------------------------------------------------


@dock_app.command("watch")
def dock_watch(
    dock_root: Annotated[Path, typer.Argument(help="Folder under which docked devices appear.")],
    wipe: Annotated[bool, typer.Option(help="Wipe verified files from each device.")] = False,
    poll_seconds: Annotated[float, typer.Option(help="How often to look for devices.")] = 2.0,
    once: Annotated[bool, typer.Option(help="Ingest what is docked now, then exit.")] = False,
) -> None:
    """Start an ingest for every device folder that appears under DOCK_ROOT; Ctrl-C stops cleanly."""
    from flows.dock import watch_dock

    watch_dock(dock_root, wipe=wipe, poll_seconds=poll_seconds, once=once, console=err)


@app.command()
def demo() -> None:
    """Simulate a dock (generated photos and a video), ingest it, and show what was stored where."""
    from cli.demo import run_demo

    run_demo(settings_now(), out)
