"""Memory of ``link-feed`` on a large export: ``python -m bench.feed_memory [--rows 500000]``.

A records-system export of ``--rows`` incident rows (two officers per incident, a category on a third
of the rows, windows in 2025-2026; about 39 MB as CSV for 500,000 rows, the issue's figure) is written
as CSV and as JSON, and each is linked by a fresh child process (``python -m bench.feed_memory measure
FEED``) against a station in a temporary directory (keys, local vault, SQLite catalog, a few items of
the feed's officers): ``flows.linking.read_feed_file`` then ``flows.linking.link_feed``, as the
``link-feed`` command runs them. The child reports its peak RSS (``VmHWM``, see ``bench/README.md``:
``ru_maxrss`` would carry the parent's peak into the child) just before reading the feed (imports and
set-up) and at the end, and what the run found: every row accepted, and the items linked (by the
first child; the second finds them linked already). Results: stdout and
``bench/results/feed_memory.{json,md}``. Memory targets live here, not in the unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.large_file import _peak_rss_kib, _ru_maxrss_kib

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_ROWS = 500_000
OFFICERS = 5_000
FIRST_WINDOW = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
USERS = '[users.records-feed]\nrole = "investigator"\n'


def feed_rows(rows: int) -> list[tuple[str, str, str, str, str]]:
    """(incident_ref, officer_id, start, end, category): each incident attended by two officers, each
    officer's incidents a few hours apart; deterministic."""
    written: list[tuple[str, str, str, str, str]] = []
    for n in range(rows):
        incident = n // 2
        officer = f"PC-{(incident * 7 + n % 2) % OFFICERS:05d}"
        start = FIRST_WINDOW + timedelta(minutes=137 * (incident // OFFICERS) + incident % 97)
        end = start + timedelta(minutes=20 + incident % 160)
        written.append(
            (
                f"KNT-{2025 + incident // 900_000}-{incident % 900_000:06d}",
                officer,
                f"{start:%Y-%m-%dT%H:%M:%S}Z",
                f"{end:%Y-%m-%dT%H:%M:%S}Z",
                "domestic-abuse" if n % 3 == 0 else "",
            )
        )
    return written


def write_feeds(rows: int, folder: Path) -> dict[str, Path]:
    generated = feed_rows(rows)
    csv_path = folder / "incidents.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("incident_ref,officer_id,start,end,category\n")
        handle.writelines(",".join(row) + "\n" for row in generated)
    json_path = folder / "incidents.json"
    with json_path.open("w", encoding="utf-8") as handle:
        handle.write("[\n")
        for n, (ref, officer, start, end, category) in enumerate(generated):
            entry = {"incident_ref": ref, "officer_id": officer, "start": start, "end": end}
            if category:
                entry["category"] = category
            handle.write(("," if n else "") + json.dumps(entry) + "\n")
        handle.write("]\n")
    return {"csv": csv_path, "json": json_path}


def make_station(data_dir: Path) -> None:
    """Keys, an initialised vault and a few items of the feed's officers, recorded an hour into their
    first windows (so the feed links something)."""
    from tests.station import make_station as station_at
    from tests.test_feed_linking import stored_item

    station = station_at(data_dir)
    assert station.settings.users_file is not None
    station.settings.users_file.write_text(USERS)
    for n in range(20):
        stored_item(station.vault, station.catalog, n, f"PC-{n * 7 % OFFICERS:05d}", FIRST_WINDOW)


def measure(feed: Path) -> dict[str, Any]:
    """In the child: link the feed as ``evidence link-feed`` does, and report the peak RSS."""
    from evidence.access import UserDirectory
    from evidence.settings import load_settings
    from flows.linking import link_feed, read_feed_file
    from flows.records import open_catalog
    from storage.vault import Vault

    settings = load_settings()
    actor = UserDirectory.load(settings.users_file).resolve("records-feed")
    vault, catalog = Vault.open(settings), open_catalog(settings)
    before = _peak_rss_kib()
    parsed = read_feed_file(feed, settings)
    report = link_feed(
        vault, catalog, parsed, actor, tolerance=timedelta(minutes=settings.link_tolerance_minutes)
    )
    return {
        "feed_bytes": feed.stat().st_size,
        "rows_accepted": report.incidents,
        "rows_rejected": len(report.rejected),
        "linked": len(report.linked) + report.already_linked,
        "peak_rss_before_feed_mib": round(before / 1024, 1),
        "peak_rss_mib": round(_peak_rss_kib() / 1024, 1),
        "ru_maxrss_mib": round(_ru_maxrss_kib() / 1024, 1),
    }


def run(rows: int, workdir: Path) -> dict[str, Any]:
    feeds = write_feeds(rows, workdir)
    data_dir = workdir / "station"
    make_station(data_dir)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    environment["EVIDENCE_DATA_DIR"] = str(data_dir)
    measured: dict[str, Any] = {}
    for fmt, path in feeds.items():
        child = subprocess.run(
            [sys.executable, "-m", "bench.feed_memory", "measure", str(path)],
            env=environment,
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"the {fmt} child failed ({child.returncode}):\n{child.stderr[-4000:]}")
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        accounted = figures["rows_accepted"] + figures["rows_rejected"]
        if accounted != rows or figures["rows_rejected"] or figures["linked"] == 0:
            raise SystemExit(f"the {fmt} feed was not read whole and linked: {figures}")
        measured[fmt] = figures
    return {
        "benchmark": "feed memory",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "rows": rows,
        **measured,
    }


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Feed memory benchmark",
        "",
        f"Run {report['date']} by `python -m bench.feed_memory`; {report['machine']['nproc']} CPUs, "
        f"Python {report['machine']['python']}, {report['machine']['platform']}.",
        "",
        f"A feed of {report['rows']:,} rows read and linked by `read_feed_file` + `link_feed` in a fresh "
        "process; peak RSS is the process's `VmHWM`.",
        "",
        "| format | feed MB | peak RSS before the feed (MiB) | peak RSS (MiB) | added by the feed (MiB) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for fmt in ("csv", "json"):
        figures = report[fmt]
        added = figures["peak_rss_mib"] - figures["peak_rss_before_feed_mib"]
        lines.append(
            f"| {fmt} | {figures['feed_bytes'] / 1e6:.1f} | {figures['peak_rss_before_feed_mib']} | "
            f"{figures['peak_rss_mib']} | {added:.1f} |"
        )
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else argv
    if args_given[:1] == ["measure"]:
        print(json.dumps(measure(Path(args_given[1]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.feed_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(args_given)
    workdir = Path(tempfile.mkdtemp(prefix="evidence-feed-memory-", dir=args.workdir))
    try:
        report = run(args.rows, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = "feed_memory" if args.rows == DEFAULT_ROWS else f"feed_memory-{args.rows}"
    (args.results / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / f"{stem}.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
