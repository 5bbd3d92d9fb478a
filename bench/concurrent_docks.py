"""Four devices docked at once: ``python -m bench.concurrent_docks``.

What the issue asks: concurrency, 4 devices docked at once. A dock folder holds 4 device folders, each a
body-worn camera after a shift in miniature: 50 camera JPEGs with EXIF and GPS and one 64 MiB video (a
real MP4 from ``flows.simulate.make_mp4`` followed by a ``free`` box of random bytes: it probes as
``video/mp4``, gets a thumbnail attempt like a camera's file, and does not compress). Each run ingests
all 4 into a fresh vault:

- ``concurrent``: ``flows.dock.DockWatcher(...).run(once=True)``, exactly what ``evidence dock watch``
  does when 4 devices appear: one thread per device (``MAX_DEVICES_AT_ONCE`` = 4), each calling
  ``flows.run.run_ingest``, each a run of the Prefect flow ``ingest-device`` with ``ingest_workers``
  task threads, all in one process;
- ``sequential``: the same ``run_ingest`` for each device, one after another, in one process.

Against the embedded local store and S3 (moto's server, fresh per run), reporting to one Prefect server
started for the benchmark. Each run is a fresh process (``python -m bench.concurrent_docks measure``)
that sets up a station, warms up with a one-photo flow run into a vault of its own, times the dock, and
then counts the vault: every file of every device exactly one item, one manifest version, no stray
object (``bench.small_photos.vault_census``), or the benchmark fails.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.run_all import ingest_settings, machine_description
from bench.servers import BenchmarkError
from bench.small_photos import (
    MB,
    PACKAGES,
    PREFECT_NOTES,
    STORES,
    Measurement,
    add_counts,
    add_measure_options,
    add_run_options,
    census_line,
    check_disk,
    default_prefect_database,
    device_files,
    make_photos,
    measured,
    new_workdir,
    optional,
    others_cores,
    parse_stores,
    parse_watch,
    prefect_api,
    prepare_station,
    run_child,
    store_for_run,
    table,
    timed,
    wait_for_quiet,
    warm_page_cache,
    warm_up,
    write_results,
)

MiB = 1024 * 1024
MODES = ("concurrent", "sequential")
DEFAULT_DEVICES = 4
DEFAULT_PHOTOS = 50
DEFAULT_VIDEO_BYTES = 64 * MiB
QUICK_PHOTOS = 10
QUICK_VIDEO_BYTES = 8 * MiB
DEFAULT_QUIET_WAIT = 20.0


@dataclass(frozen=True)
class DockShape:
    devices: int = DEFAULT_DEVICES
    photos: int = DEFAULT_PHOTOS
    video_bytes: int = DEFAULT_VIDEO_BYTES

    def to_json(self) -> dict[str, int]:
        return {"devices": self.devices, "photos_per_device": self.photos, "video_bytes": self.video_bytes}


def device_serial(number: int) -> str:
    return f"BWC-DOCK{number + 1:02d}"


def officer_of(number: int) -> str:
    return f"PC-{4400 + number + 1}"


def make_padded_video(path: Path, size: int, *, seed: int) -> Path:
    """A real one-second MP4 grown to ``size`` bytes by a trailing ISO BMFF ``free`` box of random
    bytes: readers skip a ``free`` box, so it stays a valid video, and random bytes do not compress."""
    from flows.simulate import make_mp4

    make_mp4(path, seconds=1.0, size=(320, 240), fps=10, seed=seed)
    padding = size - path.stat().st_size
    if padding < 8:
        return path
    rng = random.Random(f"video-padding:{seed}")
    with path.open("ab") as video:
        video.write(struct.pack(">I", padding) + b"free")  # 32-bit box size includes its 8-byte header
        remaining = padding - 8
        while remaining > 0:
            chunk = min(MiB, remaining)
            video.write(rng.randbytes(chunk))
            remaining -= chunk
    return path


def make_dock(dock: Path, shape: DockShape) -> list[Path]:
    """``shape.devices`` camera folders under ``dock``, each ``DCIM/100BWC01/IMG_*.JPG`` + ``VID_0001.MP4``."""
    from flows.simulate import DEVICE_FOLDER

    devices = []
    for number in range(shape.devices):
        device = dock / device_serial(number)
        folder = device / DEVICE_FOLDER
        make_photos(folder, shape.photos, serial=device.name, seed=100 + number)
        if shape.video_bytes > 0:
            make_padded_video(folder / "VID_0001.MP4", shape.video_bytes, seed=200 + number)
        devices.append(device)
    return devices


# -- one measured run (the child side) ----------------------------------------------------------------


def dock_concurrently(dock: Path) -> dict[str, int]:
    """What ``evidence dock watch`` does when devices appear; the outcomes as the watcher prints them."""
    from rich.console import Console

    from flows.dock import DockWatcher

    printed = io.StringIO()
    DockWatcher(dock, wipe=False, console=Console(file=printed, width=200)).run(poll_seconds=0.1, once=True)
    return counts_from_watcher_output(printed.getvalue())


def counts_from_watcher_output(text: str) -> dict[str, int]:
    """The watcher prints ``device NAME: 51 ingested`` (or ``failed: ...``) per device."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("device ") or line.startswith("device docked"):
            continue
        outcome = line.split(": ", 1)[1]
        if outcome.startswith("failed"):
            add_counts(counts, {"device failed": 1})
            continue
        for part in outcome.split(", "):
            number, _, status = part.partition(" ")
            if number.isdigit():
                add_counts(counts, {status: int(number)})
    return counts


def dock_one_after_another(devices: Sequence[Path]) -> dict[str, int]:
    from flows.run import run_ingest

    counts: dict[str, int] = {}
    for device in devices:
        report = run_ingest(device, device_serial=None, officer_id=None, wipe=False, quiet=True)
        add_counts(counts, report.counts)
    return counts


def measure_dock(
    mode: str,
    dock: Path,
    station_dir: Path,
    vault_url: str,
    *,
    store: str,
    workers: int,
    watched: Mapping[str, int],
    prefect_database: str = "given",
) -> Measurement:
    """Child side: ingest every device under ``dock`` by ``mode``, timed, then count the vault."""
    devices = sorted(path for path in dock.iterdir() if path.is_dir())
    officers = {device.name: officer_of(number) for number, device in enumerate(devices)}
    station = prepare_station(station_dir, vault_url, workers=workers, officers=officers)
    warm_up(station_dir, vault_url, through_prefect=True)
    files = device_files(devices)
    warm_page_cache(files)
    if mode == "concurrent":
        counts, timing = timed(lambda: dock_concurrently(dock), watched)
    else:
        counts, timing = timed(lambda: dock_one_after_another(devices), watched)
    return measured(
        f"{len(devices)} devices, {mode}",
        store,
        vault=station.vault,
        files=files,
        counts=counts,
        timing=timing,
        settings={
            "mode": mode,
            "devices": len(devices),
            "ingest_workers": workers,
            "prefect_database": prefect_database,
        },
    )


# -- the benchmark (the parent side) ------------------------------------------------------------------


def plan_runs(
    stores: Sequence[str], modes: Sequence[str], database: str, compare_sqlite: bool
) -> list[tuple[str, str, str]]:
    """(Prefect database, store, mode) per run. On PostgreSQL, the concurrent runs are repeated on
    SQLite: a station that runs ``prefect server start`` as it comes gets SQLite, and SQLite refuses
    concurrent writers (the API answers 503 and clients back off for seconds)."""
    runs = [(database, store, mode) for store in stores for mode in modes]
    if compare_sqlite and database == "postgres" and "concurrent" in modes:
        runs += [("sqlite", store, "concurrent") for store in stores]
    return runs


def run_concurrent_docks(
    workdir: Path,
    *,
    shape: DockShape = DockShape(),
    stores: Sequence[str] = STORES,
    modes: Sequence[str] = MODES,
    workers: int = 2,
    prefect_api_url: str | None = None,
    prefect_database: str | None = None,
    compare_sqlite: bool = True,
    quiet_wait: float = 0.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the dock once, then ingest it in each mode into each store; the report (``build_report``).
    ``prefect_api_url``: report to that API instead of starting a server; ``prefect_database``: what
    a started server runs on (default: PostgreSQL where it can run here)."""
    dock = workdir / "dock"
    device_bytes = shape.photos * 300_000 + shape.video_bytes
    check_disk(workdir, 3 * shape.devices * device_bytes + 512 * MiB)
    log(
        f"generating {shape.devices} devices ({shape.photos} photos + {shape.video_bytes // MiB} MiB video each) ..."
    )
    make_dock(dock, shape)
    database = "given" if prefect_api_url else prefect_database or default_prefect_database()
    runs = plan_runs(stores, modes, database, compare_sqlite)
    measurements = []
    prefect_servers = []
    for server_database in dict.fromkeys(run[0] for run in runs):
        with prefect_api(workdir, prefect_api_url, server_database) as prefect:
            prefect_servers.append(prefect.describe())
            for store, mode in [(store, mode) for db, store, mode in runs if db == server_database]:
                run_dir = workdir / f"run-{server_database}-{store}-{mode}"
                wait_for_quiet(quiet_wait, log)
                with store_for_run(store, workdir, run_dir) as (vault_url, s3):
                    arguments = [mode, str(dock), str(run_dir / "station"), vault_url]
                    measurement = run_child(
                        "bench.concurrent_docks",
                        [*arguments, f"--store={store}", f"--workers={workers}"],
                        workdir=workdir,
                        prefect=prefect,
                        s3=s3,
                    )
                shutil.rmtree(run_dir, ignore_errors=True)
                measurements.append(measurement)
                log(
                    f"  {mode:<10} {store:<5} Prefect on {server_database:<8}: {measurement.seconds:7.2f} s  "
                    f"{measurement.mb_per_s:7.1f} MB/s  {measurement.files_per_s:6.1f} files/s  "
                    f"others' CPU {others_cores(measurement) or '?'} cores"
                )
    return build_report(measurements, shape=shape, workers=workers, prefect="; ".join(prefect_servers))


# -- the report ---------------------------------------------------------------------------------------


def run_key(measurement: Measurement) -> str:
    return f"{measurement.settings['mode']}, Prefect on {measurement.settings['prefect_database']}"


def build_report(
    measurements: Sequence[Measurement],
    *,
    shape: DockShape,
    workers: int,
    prefect: str,
    date: datetime | None = None,
) -> dict[str, Any]:
    figures: dict[str, dict[str, Any]] = {}
    for m in measurements:
        figures.setdefault(m.store, {})[run_key(m)] = {
            "seconds": round(m.seconds, 2),
            "mb_per_s": round(m.mb_per_s, 1),
            "files_per_s": round(m.files_per_s, 1),
        }
    speed_ups = []
    for store in figures:
        for database in dict.fromkeys(m.settings["prefect_database"] for m in measurements):
            at_once = figures[store].get(f"concurrent, Prefect on {database}")
            in_turn = figures[store].get(f"sequential, Prefect on {database}")
            if at_once and in_turn:
                speed_ups.append(
                    {
                        "store": store,
                        "prefect_database": database,
                        "sequential_mb_per_s": in_turn["mb_per_s"],
                        "concurrent_mb_per_s": at_once["mb_per_s"],
                        "speed_up": round(in_turn["seconds"] / at_once["seconds"], 2),
                    }
                )
    return {
        "benchmark": "devices docked at once",
        "date": (date or datetime.now(UTC)).isoformat(timespec="seconds"),
        "machine": machine_description(PACKAGES),
        "station_defaults": ingest_settings() | {"ingest_workers": workers},
        "dock": shape.to_json(),
        "prefect_server": prefect,
        "figures": figures,
        "speed_ups": speed_ups,
        "runs": [m.to_json() for m in measurements],
    }


def runs_table(measurements: Sequence[Measurement]) -> list[str]:
    header = ["run", "store", "Prefect DB", "files", "MB", "seconds", "MB/s", "files/s", "ingest CPU s"]
    header += [
        "Prefect CPU s",
        "S3 server CPU s",
        "peak RSS MiB",
        "others' CPU (cores)",
        "Prefect 503s",
        "verified",
    ]
    rows = [
        [
            m.name,
            m.store,
            str(m.settings.get("prefect_database", "")),
            str(m.files),
            f"{m.bytes / MB:.1f}",
            f"{m.seconds:.2f}",
            f"{m.mb_per_s:.1f}",
            f"{m.files_per_s:.1f}",
            f"{m.cpu_seconds:.2f}",
            optional(m.prefect_cpu_seconds),
            optional(m.s3_server_cpu_seconds),
            f"{m.peak_rss_kib / 1024:.0f}",
            others_cores(m),
            "" if m.prefect_refused_requests is None else str(m.prefect_refused_requests),
            "yes" if m.verified else "NO",
        ]
        for m in measurements
    ]
    return table(header, rows)


def speed_up_table(report: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            entry["store"],
            entry["prefect_database"],
            f"{entry['sequential_mb_per_s']:.1f}",
            f"{entry['concurrent_mb_per_s']:.1f}",
            f"{entry['speed_up']:.2f}",
        ]
        for entry in report["speed_ups"]
    ]
    header = ["store", "Prefect DB", "one after another MB/s", "all at once MB/s", "speed-up"]
    return table(header, rows) if rows else []


def render_markdown(report: Mapping[str, Any]) -> str:
    measurements = [Measurement.from_json(run) for run in report["runs"]]
    machine, defaults, dock = report["machine"], report["station_defaults"], report["dock"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    lines = [
        "# Devices docked at once",
        "",
        f"Run {report['date']} by `python -m bench.concurrent_docks`; how it measures: the module's "
        "docstring and `bench/README.md`.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB memory, "
        f"Python {machine['python']}, {machine['platform']}; {packages}.",
        "",
        f"Dock: {dock['devices']} devices, each {dock['photos_per_device']} JPEGs with EXIF and GPS and one "
        f"{dock['video_bytes'] // MiB} MiB MP4, read from the page cache. `concurrent` is "
        "`DockWatcher.run(once=True)` (a thread per device, each a flow run, in one process); `sequential` "
        f"is the same `run_ingest` per device in turn. Prefect: {report['prefect_server']}. S3: moto's "
        "server, a separate process on 127.0.0.1, fresh per run. Station: ingest_workers "
        f"{defaults['ingest_workers']}, part size {defaults['part_size'] // MiB} MiB, upload concurrency "
        f"{defaults['upload_concurrency']}. MB = 10^6 bytes. One sample per run.",
        "",
        "## Runs",
        "",
        *runs_table(measurements),
        "",
        census_line(measurements),
        "",
        "`Prefect CPU s`: Prefect's server and its database (PostgreSQL's processes; SQLite runs inside "
        "the server). All processes share the same CPUs.",
        "",
        PREFECT_NOTES,
        "",
    ]
    speed_up = speed_up_table(report)
    if speed_up:
        lines += ["## All at once against one after another", "", *speed_up, ""]
    return "\n".join(lines)


def results_stem(shape: DockShape) -> str:
    if shape == DockShape():
        return "concurrent_docks"
    return f"concurrent_docks-{shape.devices}x{shape.photos}-{shape.video_bytes // MiB}MiB"


def measure_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrent_docks measure")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("dock", type=Path)
    parser.add_argument("station", type=Path, help="station directory to create")
    parser.add_argument("vault_url")
    add_measure_options(parser)
    args = parser.parse_args(argv)
    measurement = measure_dock(
        args.mode,
        args.dock,
        args.station,
        args.vault_url,
        store=args.store,
        workers=args.workers,
        watched=parse_watch(args.watch),
        prefect_database=args.prefect_db,
    )
    args.result.write_text(json.dumps(measurement.to_json()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.concurrent_docks [--quick]``; ``measure ...`` is one run, in the child."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["measure"]:
        return measure_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m bench.concurrent_docks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES)
    parser.add_argument("--photos", type=int, default=DEFAULT_PHOTOS, help="photos per device")
    parser.add_argument(
        "--video-mib", type=int, default=DEFAULT_VIDEO_BYTES // MiB, help="video size per device"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_PHOTOS} photos + {QUICK_VIDEO_BYTES // MiB} MiB"
    )
    parser.add_argument("--workers", type=int, default=2, help="ingest_workers of each flow run")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: concurrent,sequential")
    parser.add_argument(
        "--no-sqlite-comparison", action="store_true", help="on PostgreSQL, skip the SQLite runs"
    )
    add_run_options(parser, DEFAULT_QUIET_WAIT)
    args = parser.parse_args(argv)
    if args.quick:
        shape = DockShape(args.devices, QUICK_PHOTOS, QUICK_VIDEO_BYTES)
    else:
        shape = DockShape(args.devices, args.photos, args.video_mib * MiB)
    stores = parse_stores(parser, args.stores)
    modes = [mode for mode in args.modes.split(",") if mode]
    if shape.devices < 1 or shape.photos < 0 or not modes or any(mode not in MODES for mode in modes):
        parser.error(
            f"--devices must be at least 1, --photos at least 0, --modes a list of {', '.join(MODES)}"
        )
    workdir = new_workdir(args.workdir, "evidence-bench-docks-")
    started = time.perf_counter()
    try:
        report = run_concurrent_docks(
            workdir,
            shape=shape,
            stores=stores,
            modes=modes,
            workers=args.workers,
            prefect_database=args.prefect_db,
            compare_sqlite=not args.no_sqlite_comparison,
            quiet_wait=args.quiet_wait,
        )
    except BenchmarkError as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    json_path, md_path = write_results(report, render_markdown(report), args.results, results_stem(shape))
    measurements = [Measurement.from_json(run) for run in report["runs"]]
    print()
    print("\n".join([*runs_table(measurements), "", *speed_up_table(report)]))
    print(f"\nwritten: {json_path}, {md_path} ({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
