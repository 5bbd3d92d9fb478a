"""Running flows from the command line, with the one piece of advice an officer's dock needs."""

from __future__ import annotations

import os
from pathlib import Path

from flows.console import err
from flows.ingest import IngestReport


def quiet_prefect() -> None:
    """A dock has no business phoning home, and on a closed network the attempt logs an ERROR."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def prefect_server_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def advise_on_prefect(quiet: bool) -> None:
    if not prefect_server_configured() and not quiet:
        err.print(
            "[dim]No Prefect server configured: starting a temporary one (about 20 s). For a dock, run "
            "`prefect server start` once and set PREFECT_API_URL=http://127.0.0.1:4200/api.[/]",
            highlight=False,
        )


def run_ingest(
    device_dir: Path, *, device_serial: str | None, officer_id: str | None, wipe: bool, quiet: bool = False
) -> IngestReport:
    quiet_prefect()
    advise_on_prefect(quiet)
    from flows.ingest_flow import ingest_device

    return ingest_device(str(device_dir), device_serial=device_serial, officer_id=officer_id, wipe=wipe)
