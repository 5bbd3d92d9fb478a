"""A ready ingest station for tests: keys, an initialised vault, and a way to ingest without Prefect."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence.device import scan_device
from evidence.settings import Settings
from flows.ingest import IngestReport, build_report, ingest_file, resolve_device, skipped_outcomes
from flows.journal import IngestJournal
from flows.keys import init_keys, open_vault_for_init
from storage.catalog import Catalog
from storage.vault import Vault


@dataclass
class Station:
    settings: Settings
    vault: Vault
    journal: IngestJournal = field(repr=False)
    catalog: Catalog = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.catalog is None:
            self.catalog = Catalog.open(self.settings)

    def ingest(
        self,
        device_dir: Path,
        *,
        serial: str | None = "BWC-TEST01",
        officer: str | None = "PC-1",
        wipe: bool = False,
        incidents: tuple[str, ...] = (),
        user: str | None = None,
    ) -> IngestReport:
        """The flow's steps as plain calls (the flow itself is tested in test_ingest_flow.py)."""
        context = resolve_device(
            self.settings,
            device_dir,
            serial=serial,
            officer=officer,
            wipe=wipe,
            incidents=incidents,
            linked_by=user,
        )
        recovery = self.journal.recover(self.vault.store)
        scan = scan_device(device_dir, settle_seconds=self.settings.settle_seconds)
        outcomes = skipped_outcomes(scan) + [
            ingest_file(self.vault, item, context, self.catalog) for item in scan.files
        ]
        return build_report(
            context, outcomes, recovered_uploads=recovery.aborted, orphaned_objects=self.journal.orphans()
        )

    def all_versions(self) -> list[Any]:
        return list(self.vault.store.list_versions(""))


def make_station(data_dir: Path, **overrides: Any) -> Station:
    settings = Settings(data_dir=data_dir, settle_seconds=0, **overrides)
    init_keys(settings)
    open_vault_for_init(settings).initialise()
    journal = IngestJournal.for_station(settings.journal_dir)
    return Station(settings, Vault.open(settings, journal=journal), journal)
