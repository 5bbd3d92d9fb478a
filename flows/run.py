"""Running flows from the command line, with the one piece of advice an officer's dock needs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evidence.errors import InvalidInput
from evidence.settings import load_settings
from flows.console import err, styled, visible
from flows.ingest import IngestReport, resolve_device
from storage.vault import Vault


def quiet_prefect() -> None:
    """A dock has no business phoning home, and on a closed network the attempt logs an ERROR."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def prefect_server_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def advise_on_prefect(quiet: bool) -> None:
    if not prefect_server_configured() and not quiet:
        err.print(
            styled(
                "No Prefect server configured: starting a temporary one (about 20 s). For a dock, set "
                "PREFECT_API_URL to a Prefect server running on PostgreSQL (see infra/compose.yaml).",
                "dim",
            ),
            highlight=False,
        )


def preflight(
    device_dir: Path,
    *,
    device_serial: str | None,
    officer_id: str | None,
    incidents: Sequence[str] = (),
    linked_by: str | None = None,
) -> None:
    """Refuse a bad device folder, serial, officer, key set or vault before a flow run starts, so
    the person sees one clear line rather than a failed run's log."""
    if not device_dir.is_dir():
        raise InvalidInput(f"{device_dir} is not a directory: give the folder where the device is mounted")
    settings = load_settings()
    resolve_device(
        settings,
        device_dir,
        serial=device_serial,
        officer=officer_id,
        incidents=incidents,
        linked_by=linked_by,
    )
    Vault.open(settings)


def run_ingest(
    device_dir: Path,
    *,
    device_serial: str | None,
    officer_id: str | None,
    wipe: bool,
    quiet: bool = False,
    incidents: Sequence[str] = (),
    linked_by: str | None = None,
) -> IngestReport:
    preflight(
        device_dir,
        device_serial=device_serial,
        officer_id=officer_id,
        incidents=incidents,
        linked_by=linked_by,
    )
    parameters: dict[str, Any] = {
        "device_serial": device_serial,
        "officer_id": officer_id,
        "wipe": wipe,
        "incidents": list(incidents) or None,
        "linked_by": linked_by,
    }
    quiet_prefect()
    advise_on_prefect(quiet)
    from flows.ingest_flow import ingest_device, ingest_progress

    if quiet:
        return ingest_device(str(device_dir), **parameters)
    with Progress(
        TextColumn("ingesting {task.description}", markup=False),  # the folder name is the device's
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(visible(device_dir.name), total=None)
        token = ingest_progress.set(lambda done, total: bar.update(task, completed=done, total=total))
        try:
            return ingest_device(str(device_dir), **parameters)
        finally:
            ingest_progress.reset(token)
