"""Retention run over a large catalog: ``python -m bench.retention_run [--items 100000] [--actions 200]``.

Builds a station in a temporary directory (keys, local vault, SQLite catalog), writes ``--items``
synthetic catalog rows straight into the catalog's tables (one bulk insert; the catalog is an index,
so rows need no vault objects as long as they need no action), and ingests ``--actions`` real tiny
photos for each action measured. The photos to dispose of were recorded 40 days ago and are stored as
docked 20 days ago, and their storage locks are made to run out (as ``tests/test_retention_flow.py``
does): a simulated clock alone never lets a run dispose of anything. Then, with the simulated clock 32
days ahead:

1. the decision pass alone (``flows.retention.decide_catalog`` over every row);
2. a whole dry run (``run_retention``, CSV included) over the catalog plus the real items;
3. a whole applied run: the real non-evidential items are disposed of and the real linked ones get
   their locks extended: actions per second on the local store.

The synthetic rows are a mix that needs nothing tonight: recent non-evidential footage, linked items
whose lock already reaches their policy date, held items within their dates, and items disposed of long
ago. Results: stdout and ``bench/results/retention_run.{json,md}``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_ITEMS = 100_000
DEFAULT_ACTIONS = 200
TARGET_SECONDS = 60.0


def synthetic_id(rng: random.Random) -> str:
    return "ev-" + base64.b32encode(rng.randbytes(20)).decode("ascii").lower()[:26]


def synthetic_rows(count: int, now: datetime, *, seed: int = 1) -> Iterator[dict[str, Any]]:
    """Catalog rows (naive UTC, as the catalog stores times) that need no action at ``now``."""
    rng = random.Random(seed)
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    for n in range(count):
        evidence_id = synthetic_id(rng)
        kind = n % 20
        recorded = naive_now - timedelta(days=rng.uniform(1, 29))
        row: dict[str, Any] = {
            "evidence_id": evidence_id,
            "ingested_at": recorded + timedelta(hours=2),
            "recorded_at": recorded,
            "seen_at": recorded,
            "station_id": "bench-station",
            "device_serial": f"BWC-{n % 500:04d}",
            "officer_id": f"PC-{n % 800}",
            "media_type": "video/mp4",
            "kind": "video",
            "size": 50_000_000,
            "flags": "[]",
            "length": 1,
            "retain_until": None,
            "retention_category": None,
            "linked_at": None,
            "disposed_at": None,
            "links": [],
            "holds": [],
        }
        if kind < 4:  # linked, lock already extended to the policy date
            linked = recorded + timedelta(days=1)
            row |= {
                "linked_at": linked,
                "retain_until": linked.replace(year=linked.year + 11),
                "retention_category": "evidential-da",
                "length": 3,
                "links": [(f"KNT-2026-{n:06d}", "domestic-abuse", linked)],
            }
        elif kind == 4:  # held
            incident = f"KNT-2025-{n:06d}"
            row |= {
                "linked_at": recorded,
                "retain_until": recorded.replace(year=recorded.year + 11),
                "length": 4,
                "links": [(incident, "violence", recorded)],
                "holds": [(f"incident:{incident}", incident)],
            }
        elif kind == 5:  # disposed of long ago
            disposed = naive_now - timedelta(days=400)
            row |= {"ingested_at": disposed - timedelta(days=40), "disposed_at": disposed, "length": 2}
        yield row


def write_catalog(catalog_url: str, rows: Iterator[dict[str, Any]], batch: int = 5000) -> int:
    import sqlalchemy as sa

    from storage.catalog import (
        chains_table,
        disposals_finished_table,
        holds_table,
        items_table,
        links_table,
    )

    engine = sa.create_engine(catalog_url)
    written = 0
    item_columns = {c.name for c in items_table.columns}
    with engine.begin() as conn:
        pending: list[dict[str, Any]] = []

        def flush() -> None:
            if not pending:
                return
            conn.execute(sa.insert(items_table), [{k: r[k] for k in item_columns} for r in pending])
            conn.execute(
                sa.insert(chains_table),
                [
                    {
                        "evidence_id": r["evidence_id"],
                        "length": r["length"],
                        "retain_until": r["retain_until"],
                        "retention_category": r["retention_category"],
                        "linked_at": r["linked_at"],
                        "disposed_at": r["disposed_at"],
                    }
                    for r in pending
                ],
            )
            links = [
                {"incident": i, "evidence_id": r["evidence_id"], "category": c, "linked_at": at}
                for r in pending
                for i, c, at in r["links"]
            ]
            if links:
                conn.execute(sa.insert(links_table), links)
            holds = [
                {"evidence_id": r["evidence_id"], "hold_id": h, "incident": i}
                for r in pending
                for h, i in r["holds"]
            ]
            if holds:
                conn.execute(sa.insert(holds_table), holds)
            finished = [  # disposed of long ago, and seen complete by an earlier run
                {"evidence_id": r["evidence_id"], "confirmed_at": r["disposed_at"]}
                for r in pending
                if r["disposed_at"] is not None
            ]
            if finished:
                conn.execute(sa.insert(disposals_finished_table), finished)
            pending.clear()

        for row in rows:
            pending.append(row)
            written += 1
            if len(pending) >= batch:
                flush()
        flush()
    engine.dispose()
    return written


def ingest_tiny_photos(station: Any, folder: Path, count: int, *, seed: int, due: bool = False) -> list[str]:
    """Tiny photos recorded an hour ago; ``due``: recorded 40 days ago, docked 20 days ago (the vault's
    clock set back for the ingest) and with their storage locks run out, so that the policy at the
    real date and storage let a run dispose of them."""
    from unittest import mock

    import storage.vault
    from flows.simulate import DEVICE_FOLDER, make_jpeg

    real = datetime.now(UTC)
    taken = (real - timedelta(days=40 if due else 0, hours=1)).replace(microsecond=0)
    for n in range(count):
        make_jpeg(
            folder / DEVICE_FOLDER / f"IMG_{n:05d}.JPG", size=(32, 24), taken=taken, gps=None, seed=seed + n
        )
    docked = real - timedelta(days=20 if due else 0)
    with mock.patch.object(storage.vault, "_now", lambda: docked + (datetime.now(UTC) - real)):
        report = station.ingest(folder)
    ids = [str(o.evidence_id) for o in report.by_status("ingested")]
    if due:
        let_locks_lapse(station, ids)
    return ids


def let_locks_lapse(station: Any, evidence_ids: list[str]) -> None:
    """Every version's lock a moment past, as a storage admin with the governance bypass could set it
    on the local store's version records (the retention run itself never shortens a lock)."""
    from storage import lifecycle

    lapsed = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()

    def shorten(record: dict[str, Any]) -> None:
        record["retention"]["retain_until"] = lapsed

    for evidence_id in evidence_ids:
        for info in lifecycle.item_objects(station.vault, evidence_id).versions:
            station.vault.store._update_record(info.key, info.version_id, shorten, "shortening the lock of")


class Station:
    """The parts of a station the benchmark needs (the same steps as ``tests/station.py``)."""

    def __init__(self, data_dir: Path) -> None:
        from evidence.settings import Settings
        from flows.journal import IngestJournal
        from flows.keys import init_keys, open_vault_for_init
        from storage.catalog import Catalog
        from storage.vault import Vault

        self.settings = Settings(data_dir=data_dir, settle_seconds=0)
        init_keys(self.settings)
        open_vault_for_init(self.settings).initialise()
        self.journal = IngestJournal.for_station(self.settings.journal_dir)
        self.vault = Vault.open(self.settings, journal=self.journal)
        self.catalog = Catalog.open(self.settings)

    def ingest(self, device_dir: Path) -> Any:
        from evidence.device import scan_device
        from flows.ingest import build_report, ingest_file, resolve_device, skipped_outcomes

        context = resolve_device(self.settings, device_dir, serial="BWC-BENCH", officer="PC-1")
        scan = scan_device(device_dir, settle_seconds=0)
        outcomes = skipped_outcomes(scan) + [
            ingest_file(self.vault, item, context, self.catalog) for item in scan.files
        ]
        return build_report(context, outcomes, recovered_uploads=[], orphaned_objects=[])


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(items: int, actions: int, workdir: Path) -> dict[str, Any]:
    from evidence.access import Actor
    from evidence.incident import parse_incident_ref
    from evidence.retention import load_policy
    from flows.linking import link_items
    from flows.retention import decide_catalog, run_retention

    station = Station(workdir / "station")
    assert station.settings.retention_policy is not None
    policy = load_policy(station.settings.retention_policy)
    admin = Actor("bench-admin", frozenset({"storage-admin"}))
    investigator = Actor("bench-investigator", frozenset({"investigator"}))
    now = datetime.now(UTC) + timedelta(days=32)

    started = time.perf_counter()
    to_dispose = ingest_tiny_photos(station, workdir / "BWC-DISPOSE", actions, seed=1_000, due=True)
    to_extend = ingest_tiny_photos(station, workdir / "BWC-EXTEND", actions, seed=500_000)
    link_items(
        station.vault, station.catalog, to_extend, parse_incident_ref("KNT-2026-999999"), investigator,
        category="domestic-abuse",
    )  # fmt: skip
    setup_real = time.perf_counter() - started
    started = time.perf_counter()
    written = write_catalog(station.settings.catalog_url, synthetic_rows(items, now))
    setup_rows = time.perf_counter() - started
    total = station.catalog.count()

    started = time.perf_counter()
    decisions = decide_catalog(
        station.catalog.iter_items(include_disposed=True), policy, station.settings, now
    )
    decision_seconds = time.perf_counter() - started
    planned = {kind: sum(1 for p in decisions.planned if p.kind == kind) for kind in ("dispose", "extend")}

    started = time.perf_counter()
    dry = run_retention(
        station.vault, station.catalog, policy, admin, now=now, apply=False, csv_path=workdir / "dry.csv"
    )
    dry_seconds = time.perf_counter() - started

    started = time.perf_counter()
    applied = run_retention(
        station.vault, station.catalog, policy, admin, now=now, apply=True, csv_path=workdir / "applied.csv"
    )
    applied_seconds = time.perf_counter() - started
    failures = [line for line in applied.lines if line.outcome.startswith("failed")]
    disposed_left = sum(1 for i in to_dispose if station.vault.has_item(i))

    # the actions alone: the action pass over fresh items of each kind, timed per kind
    ingest_tiny_photos(station, workdir / "BWC-DISPOSE2", actions, seed=2_000, due=True)
    more_extend = ingest_tiny_photos(station, workdir / "BWC-EXTEND2", actions, seed=600_000)
    link_items(
        station.vault, station.catalog, more_extend, parse_incident_ref("KNT-2026-888888"), investigator,
        category="domestic-abuse",
    )  # fmt: skip
    from flows.retention import RunContext, act_on

    context = RunContext.of_run(policy, now, admin, apply=True, extend_locks=True, simulated=True)
    fresh = decide_catalog(station.catalog.iter_items(include_disposed=True), policy, station.settings, now)
    by_kind = {kind: [p for p in fresh.planned if p.kind == kind] for kind in ("dispose", "extend")}
    rates: dict[str, float] = {}
    for kind, group in by_kind.items():
        started = time.perf_counter()
        outcomes = [act_on(station.vault, station.catalog, p, context) for p in group]
        seconds = time.perf_counter() - started
        assert not [o for o in outcomes if o.outcome.startswith("failed")], outcomes[:3]
        rates[kind] = round(len(group) / seconds, 1) if seconds else 0.0

    return {
        "benchmark": "retention run",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "catalog": {"synthetic_rows": written, "real_items": 2 * actions, "rows_total": total},
        "setup_seconds": {
            "ingest_and_link_real_items": round(setup_real, 2),
            "bulk_insert": round(setup_rows, 2),
        },
        "decision_pass": {
            "seconds": round(decision_seconds, 2),
            "items_per_second": round(total / decision_seconds),
            "planned": planned,
            "counts": dict(decisions.counts),
        },
        "dry_run": {"seconds": round(dry_seconds, 2), "counts": dry.counts},
        "applied_run": {
            "seconds": round(applied_seconds, 2),
            "counts": applied.counts,
            "failures": len(failures),
            "disposed_items_still_present": disposed_left,
        },
        "actions_per_second_local_store": {"dispose": rates.get("dispose"), "extend": rates.get("extend")},
        "actions_measured": {kind: len(group) for kind, group in by_kind.items()},
        "target_seconds": TARGET_SECONDS,
        "within_target": dry_seconds < TARGET_SECONDS and applied_seconds < TARGET_SECONDS,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def render_markdown(report: dict[str, Any]) -> str:
    decision, dry, applied = report["decision_pass"], report["dry_run"], report["applied_run"]
    rates, catalog = report["actions_per_second_local_store"], report["catalog"]
    verdict = "within" if report["within_target"] else "OVER"
    return "\n".join(
        [
            "# Retention run benchmark",
            "",
            f"Run {report['date']} by `python -m bench.retention_run`; {report['machine']['nproc']} CPUs, "
            f"Python {report['machine']['python']}, {report['machine']['platform']}. Local store, SQLite catalog.",
            "",
            f"Catalog: {catalog['rows_total']:,} items ({catalog['synthetic_rows']:,} synthetic rows needing "
            f"nothing, {catalog['real_items']} real items that need action). Simulated clock: 32 days ahead.",
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| decision pass over every item | {decision['seconds']} s ({decision['items_per_second']:,} items/s) |",
            f"| whole dry run (decisions, vault checks of action items, CSV) | {dry['seconds']} s |",
            f"| whole applied run (decisions + disposals + lock extensions) | {applied['seconds']} s |",
            f"| disposals per second, local store | {rates['dispose']} |",
            f"| lock extensions per second, local store | {rates['extend']} |",
            f"| applied run failures | {applied['failures']} |",
            f"| peak RSS | {report['peak_rss_mib']} MiB |",
            "",
            f"Target: a run over 100,000 catalogued items in under {report['target_seconds']:.0f} s: {verdict}.",
            "",
            f"Dry run: {dry['counts']}. Applied: {applied['counts']}.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.retention_run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--items", type=int, default=DEFAULT_ITEMS, help="synthetic catalog rows")
    parser.add_argument("--actions", type=int, default=DEFAULT_ACTIONS, help="real items per action kind")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    for name in [n for n in os.environ if n.startswith("EVIDENCE_")]:
        del os.environ[name]  # a station's own settings must not leak into the benchmark
    workdir = Path(tempfile.mkdtemp(prefix="evidence-retention-bench-", dir=args.workdir))
    try:
        report = run(args.items, args.actions, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = "retention_run" if args.items == DEFAULT_ITEMS else f"retention_run-{args.items}"
    (args.results / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.results / f"{stem}.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0 if report["within_target"] and report["applied_run"]["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
