"""Feed linking at the issue's scale: ``python -m bench.feed_linking [--officers 100] [--items 10000]``.

A station in a temporary directory (keys, local vault, SQLite catalog) holding ``--items`` items as
ingest leaves them (manifest, signed ingest event, catalogued; no media; stored with fsync skipped, as
setting them up is not what is measured), and a records-system feed of ``--officers`` x 10 incidents
around them (``tests/test_feed_linking.generated``). The real ``flows.linking.link_feed`` links them
with fsync on, then runs again. The scenario is the suite's own
(``tests/test_feed_linking.link_generated_feed_through_the_vault``, run there at a tenth of this scale),
so every link and every ambiguity is checked against an independent oracle, every item's chain is read
back, and the second run must write nothing; a failed check fails the benchmark. Results: stdout and
``bench/results/feed_linking.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_OFFICERS = 100
DEFAULT_ITEMS = 10_000


def run(officers: int, items: int, workdir: Path) -> dict[str, Any]:
    from tests.station import make_station
    from tests.test_feed_linking import USERS, link_generated_feed_through_the_vault

    station = make_station(workdir / "station")
    station.settings.users_file.write_text(USERS)
    figures = link_generated_feed_through_the_vault(station, officers=officers, items=items)
    return {
        "benchmark": "feed linking",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        **figures,
        "links_per_second": round(figures["linked"] / figures["link_seconds"], 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def render_markdown(report: dict[str, Any]) -> str:
    return "\n".join(
        [
            "# Feed linking benchmark",
            "",
            f"Run {report['date']} by `python -m bench.feed_linking`; {report['machine']['nproc']} CPUs, "
            f"Python {report['machine']['python']}, {report['machine']['platform']}. Local store with "
            "fsync, SQLite catalog.",
            "",
            f"Feed: {report['incidents']:,} incidents; vault: {report['items']:,} items. Every link and "
            "ambiguity matched the oracle, every chain was read back, and the second run wrote nothing.",
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| items linked (one signed custody record each) | {report['linked']:,} |",
            f"| items reported ambiguous (for a person) | {report['ambiguous']:,} |",
            f"| first run (match + write every link) | {report['link_seconds']:.1f} s "
            f"({report['links_per_second']} links/s) |",
            f"| second run of the same feed (writes nothing) | {report['second_run_seconds']:.1f} s |",
            f"| setting up the items (not the measure) | {report['store_seconds']:.1f} s |",
            f"| peak RSS | {report['peak_rss_mib']} MiB |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.feed_linking", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--officers", type=int, default=DEFAULT_OFFICERS, help="officers; 10 incidents each")
    parser.add_argument("--items", type=int, default=DEFAULT_ITEMS)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    for name in [n for n in os.environ if n.startswith("EVIDENCE_")]:
        del os.environ[name]  # a station's own settings must not leak into the benchmark
    workdir = Path(tempfile.mkdtemp(prefix="evidence-feed-bench-", dir=args.workdir))
    try:
        report = run(args.officers, args.items, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = "feed_linking" if args.items == DEFAULT_ITEMS else f"feed_linking-{args.items}"
    (args.results / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / f"{stem}.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
