"""Running flows from the command line, with the one piece of advice an officer's dock needs."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from flows.ingest import IngestReport

_err = Console(stderr=True)


def prefect_server_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def advise_on_prefect(quiet: bool) -> None:
    if not prefect_server_configured() and not quiet:
        _err.print(
            "[dim]No Prefect server configured: starting a temporary one (about 20 s). For a dock, run "
            "`prefect server start` once and set PREFECT_API_URL=http://127.0.0.1:4200/api.[/]",
            highlight=False,
        )


def run_ingest(
    device_dir: Path, *, device_serial: str | None, officer_id: str | None, wipe: bool, quiet: bool = False
) -> IngestReport:
    advise_on_prefect(quiet)
    from flows.ingest_flow import ingest_device

    return ingest_device(str(device_dir), device_serial=device_serial, officer_id=officer_id, wipe=wipe)
