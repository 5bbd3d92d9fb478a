"""Catalog benchmark: incident lookup over many catalogued items, and rebuilding the catalog from a vault.

``python -m bench.catalog_lookup [--items 100000] [--rebuild-sizes 10000,20000] [--out NAME]``

1. Lookup: a SQLite catalog (the default, beside the station) holding ``--items`` synthetic items, each
   with an ingest event and a link to one of ``items / 10`` incidents (10 items per incident, a
   category on a quarter of them), spread over 40 officers and a year. Timed: ``items(incident=...)``
   for random incidents, ``items(officer=..., since=..., until=...)`` for a day of one officer, and
   ``item(evidence_id)``; median and 95th percentile in milliseconds over ``--queries`` calls each.
2. Rebuild: for each size, a local-store vault (``file://``, the embedded vault) holding that many items,
   each a manifest, a signed ingest event and a signed link event, written through the vault's own
   store and custody log (not timed); then ``Catalog.rebuild`` into a fresh SQLite file (timed), and a
   check that the rebuilt catalog answers a sample of incident lookups like the live one.

Synthetic manifests carry no content objects: rebuild reads manifests and custody records only, so
what is measured is exactly what a rebuild does. Results go to stdout and ``bench/results/<name>.json``
and ``.md``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
START = datetime(2026, 1, 1, tzinfo=UTC)
OFFICERS = 40
ITEMS_PER_INCIDENT = 10
WRITERS = 8


def evidence_id(n: int) -> str:
    return "ev-" + base64.b32encode(hashlib.sha256(f"bench item {n}".encode()).digest()).decode().lower()[:26]


def incident_of(n: int) -> str:
    return f"KNT-2026-{n // ITEMS_PER_INCIDENT:06d}"


def category_of(n: int) -> str | None:
    return "domestic-abuse" if (n // ITEMS_PER_INCIDENT) % 4 == 0 else None


def recorded_at(n: int) -> datetime:
    # an incident's items are recorded within its first hour; incidents spread over a year
    incident = n // ITEMS_PER_INCIDENT
    return START + timedelta(minutes=(incident * 37) % (365 * 24 * 60) + n % ITEMS_PER_INCIDENT * 5)


def officer_of(n: int) -> str:
    return f"PC-{(n // ITEMS_PER_INCIDENT) % OFFICERS:03d}"


def manifest(n: int) -> Any:
    from evidence.manifest import Manifest, StoredObject

    content = StoredObject(f"objects/{n % 256:02x}/{n:032x}", "v1", 1_000_000, "0" * 64, None)
    return Manifest(
        evidence_id=evidence_id(n),
        ingested_at=recorded_at(n) + timedelta(hours=9),
        station_id="bench-station",
        device_serial=f"BWC-{n % 300:04d}",
        officer_id=officer_of(n),
        media_type="video/mp4" if n % 3 else "image/jpeg",
        kind="video" if n % 3 else "photo",
        recorded_at=recorded_at(n).isoformat(),
        size=1_000_000 + n,
        segment_size=1 << 20,
        content=content,
        thumbnail=None,
        recipients=({"type": "x25519", "wrapped": "AAAA"},),
        sealed_details="AAAA",
        flags=(),
    )


def event(n: int, seq: int) -> Any:
    from evidence.custody import CustodyEvent

    at = recorded_at(n) + timedelta(hours=9, seconds=seq)
    if seq == 0:
        return CustodyEvent(
            evidence_id(n),
            0,
            None,
            "ingest",
            at,
            "bench-station",
            "ingest-station",
            "bench",
            {"size": 1_000_000 + n, "device": f"BWC-{n % 300:04d}", "officer": officer_of(n)},
        )
    return CustodyEvent(
        evidence_id(n), 1, None, "link", at, "det-bench", "investigator", "bench", link_details(n)
    )


def link_details(n: int) -> dict[str, Any]:
    return {"incident": incident_of(n), "category": category_of(n), "reason": "bench", "source": "feed"}


def timed(calls: list[Callable[[], object]]) -> dict[str, float]:
    samples = []
    for call in calls:
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 3),
        "calls": len(samples),
    }


def chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def bench_lookup(workdir: Path, items: int, queries: int) -> dict[str, Any]:
    from storage.catalog import Catalog

    catalog = Catalog(f"sqlite:///{workdir / 'lookup.sqlite'}")
    started = time.perf_counter()
    for batch in chunks(items, 20_000):
        catalog.record_manifests(manifest(n) for n in batch)
        catalog.record_events([event(n, 0) for n in batch] + [event(n, 1) for n in batch])
    filled = time.perf_counter() - started
    db_bytes = sum(p.stat().st_size for p in workdir.glob("lookup.sqlite*"))
    rng = random.Random(1)
    incidents = [rng.randrange(items // ITEMS_PER_INCIDENT) for _ in range(queries)]
    found = {len(catalog.items(incident=f"KNT-2026-{i:06d}")) for i in incidents[:20]}
    assert found == {ITEMS_PER_INCIDENT}, found
    by_incident = timed([lambda i=i: catalog.items(incident=f"KNT-2026-{i:06d}") for i in incidents])
    days = [START + timedelta(days=rng.randrange(365)) for _ in range(queries)]
    officers = [f"PC-{rng.randrange(OFFICERS):03d}" for _ in range(queries)]
    by_officer_day = timed(
        [
            lambda d=d, o=o: catalog.items(officer=o, since=d, until=d + timedelta(days=1))
            for d, o in zip(days, officers, strict=True)
        ]
    )
    by_category_month = timed(
        [
            lambda d=d: catalog.items(category="domestic-abuse", since=d, until=d + timedelta(days=30))
            for d in days[:20]
        ]
    )
    one = timed(
        [lambda n=n: catalog.item(evidence_id(n)) for n in (rng.randrange(items) for _ in range(queries))]
    )
    return {
        "items": items,
        "incidents": items // ITEMS_PER_INCIDENT,
        "fill_seconds": round(filled, 1),
        "database_bytes": db_bytes,
        "items_by_incident": by_incident,
        "items_by_officer_and_day": by_officer_day,
        "items_by_category_and_month": by_category_month,
        "item_by_id": one,
    }


def bench_rebuild(workdir: Path, items: int) -> dict[str, Any]:
    from evidence import layout
    from evidence.manifest import encode_manifest
    from evidence.settings import Settings
    from flows.keys import init_keys, open_vault_for_init
    from storage.catalog import Catalog
    from storage.vault import Vault

    settings = Settings(data_dir=workdir / f"station-{items}", station_id="bench-station")
    init_keys(settings)
    open_vault_for_init(settings).initialise()
    vault = Vault.open(settings)
    live = Catalog(f"sqlite:///{workdir / f'live-{items}.sqlite'}")
    retention = vault.retention_for_new_objects()

    def write(n: int) -> None:
        record = manifest(n)
        vault.store.put_bytes(
            layout.manifest_key(record.evidence_id),
            encode_manifest(record),
            retention=retention,
            if_absent=True,
        )
        vault.record_ingest(record)
        vault.custody.append(
            record.evidence_id, "link", actor="det-bench", role="investigator", details=link_details(n)
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(write, range(items)))
    written = time.perf_counter() - started
    live_report = live.rebuild(vault)  # the "before" answers, from the same vault
    fresh = Catalog(f"sqlite:///{workdir / f'rebuilt-{items}.sqlite'}")
    started = time.perf_counter()
    report = fresh.rebuild(vault)
    seconds = time.perf_counter() - started
    sample = random.Random(2).sample(range(items // ITEMS_PER_INCIDENT), 50)
    same = all(
        fresh.items(incident=f"KNT-2026-{i:06d}") == live.items(incident=f"KNT-2026-{i:06d}") for i in sample
    )
    assert report.items == items and report.events == 2 * items and not report.problems, report
    assert live_report.items == items and same
    return {
        "items": items,
        "custody_events": report.events,
        "vault_write_seconds": round(written, 1),
        "rebuild_seconds": round(seconds, 2),
        "rebuild_ms_per_item": round(seconds / items * 1000, 3),
        "same_answers_on_sample": same,
    }


def markdown(result: dict[str, Any]) -> str:
    lookup = result["lookup"]
    lines = [
        f"# Catalog benchmark ({result['when']})",
        "",
        f"Machine: {result['machine']}. SQLite catalog (default), {lookup['items']:,} items, "
        f"{lookup['incidents']:,} incidents, database {lookup['database_bytes'] / 1e6:.0f} MB "
        f"(filled in {lookup['fill_seconds']} s).",
        "",
        "| query | median ms | p95 ms | calls |",
        "|---|---|---|---|",
    ]
    for name in (
        "items_by_incident",
        "items_by_officer_and_day",
        "items_by_category_and_month",
        "item_by_id",
    ):
        m = lookup[name]
        lines.append(f"| {name.replace('_', ' ')} | {m['median_ms']} | {m['p95_ms']} | {m['calls']} |")
    lines += [
        "",
        "Rebuild from a local-store vault (manifest + ingest event + link event per item):",
        "",
        "| items | custody events | rebuild s | ms per item | vault written in s (not timed) |",
        "|---|---|---|---|---|",
    ]
    for r in result["rebuild"]:
        lines.append(
            f"| {r['items']:,} | {r['custody_events']:,} | {r['rebuild_seconds']} | {r['rebuild_ms_per_item']} "
            f"| {r['vault_write_seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rebuild-sizes", default="10000,20000")
    parser.add_argument("--out", default="catalog_lookup")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.rebuild_sizes.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="catalog-bench-") as tmp:
        workdir = Path(tmp)
        lookup = bench_lookup(workdir, args.items, args.queries)
        print(json.dumps({"lookup": lookup}, indent=2), flush=True)
        rebuilds = []
        for size in sizes:
            rebuilds.append(bench_rebuild(workdir, size))
            print(json.dumps(rebuilds[-1]), flush=True)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "lookup": lookup,
        "rebuild": rebuilds,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS_DIR / f"{args.out}.md").write_text(markdown(result))
    sys.stdout.write(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
