"""Large-file ingest benchmark: ``python -m bench.run_all [--server rgw]`` (``make bench`` runs both).

Writes random files of each size, runs every measured operation in a child process of its own
(``bench.large_file``) against a fresh moto S3 server process on 127.0.0.1 (or, with ``--server rgw``,
a fresh bucket of one Ceph RGW started for the run), and reports throughput,
the ratios the issue asks for, and peak RSS per operation and size. Results go to stdout and to
``bench/results/large_file.{json,md}`` (other sizes: ``large_file-<sizes>.{json,md}``). What each figure
means is in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.large_file import INGEST_MODES, MODES, S3_MODES, Measurement
from bench.servers import BUCKET, REGION, BenchmarkError, CephRgwServer, MotoS3Server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_SIZES = (1 * GiB, 4 * GiB)
QUICK_SIZES = (256 * MiB, 512 * MiB)
RSS_TOLERANCE_MIB = 32
"""Peak RSS may differ this much between sizes and still count as not growing (allocator noise)."""
QUIET_CORES = 0.25
"""Others' CPU use (in cores) below which the shared machine counts as quiet enough to measure."""
CHILD_TIMEOUT_SECONDS = 3600


# -- sizes and resources ----------------------------------------------------------------------------


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9]+)\s*(GiB|MiB|KiB|G|M|K)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 512MiB or 1GiB")
    unit = (match.group(2) or "").upper()[:1]
    return int(match.group(1)) * {"": 1, "K": 1024, "M": MiB, "G": GiB}[unit]


def format_size(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def disk_needed(sizes: Sequence[int]) -> int:
    # One input at a time, plus one stored copy of it: the local vault's, or moto's spill file of the
    # assembled object (moto keeps objects over 128 MiB in a temporary file).
    return 2 * max(sizes) + 512 * MiB


def memory_needed(sizes: Sequence[int], server: str = "moto") -> int:
    if server == "rgw":
        return rgw_memstore_bytes(sizes) + 1 * GiB
    # moto's server holds every part in memory, then joins them into a bytearray and copies that to
    # bytes when the multipart upload completes: about three copies of the largest object at once.
    return 3 * max(sizes) + 1 * GiB


def rgw_memstore_bytes(sizes: Sequence[int]) -> int:
    # RGW's memstore holds what one measurement stored (its bucket is removed after it) plus RGW's
    # own pools; it fills, and then writes hang, long before the RAM it was given is used up
    return 2 * max(sizes) + 2 * GiB


def available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_resources(workdir: Path, sizes: Sequence[int], server: str = "moto") -> None:
    """Refuse to start, with a clear message, rather than fill the disk or memory half-way through."""
    free = shutil.disk_usage(workdir).free
    if free < disk_needed(sizes):
        raise BenchmarkError(
            f"{workdir} has {free / GiB:.1f} GiB free; sizes up to {format_size(max(sizes))} need "
            f"{disk_needed(sizes) / GiB:.1f} GiB. Free space, pass --workdir on a larger disk, or use "
            "--quick / smaller --sizes"
        )
    memory = available_memory()
    if memory is not None and memory < memory_needed(sizes, server):
        raise BenchmarkError(
            f"{memory / GiB:.1f} GiB of memory available; the {server} S3 server needs about "
            f"{memory_needed(sizes, server) / GiB:.1f} GiB to hold a {format_size(max(sizes))} object. "
            "Use --quick or smaller --sizes"
        )


# -- the S3 endpoint ----------------------------------------------------------------------------------


@contextmanager
def moto_server(workdir: Path) -> Iterator[MotoS3Server]:
    with MotoS3Server(workdir, _base_environment(workdir)) as server:
        assert isinstance(server, MotoS3Server)
        yield server


def _base_environment(workdir: Path) -> dict[str, str]:
    """This process's environment without the station's or AWS settings (so neither a real account
    nor a local evidence.toml can leak in), plus moto's dummy credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVIDENCE_", "AWS_"))}
    return env | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
        "PYTHONPATH": str(PROJECT_ROOT),
    }


def child_environment(
    workdir: Path, endpoint: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = _base_environment(workdir) | {"EVIDENCE_DATA_DIR": str(workdir / "unused-station")}
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env | dict(extra or {})


def run_child(
    mode: str,
    path: Path,
    *,
    workdir: Path,
    endpoint: str | None = None,
    bucket: str | None = None,
    extra_args: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
) -> Measurement:
    """``python -m bench.large_file`` in a fresh process; its last line of output is the result."""
    command = [sys.executable, "-m", "bench.large_file", mode, str(path), "--workdir", str(workdir)]
    if bucket is not None:
        command += ["--bucket", bucket]
    command += list(extra_args)
    try:
        finished = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            env=child_environment(workdir, endpoint, environment),
            timeout=CHILD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise BenchmarkError(f"{mode} on {path} took over {CHILD_TIMEOUT_SECONDS}s") from err
    if finished.returncode != 0:
        raise BenchmarkError(
            f"{mode} on {path} failed (exit {finished.returncode}):\n{finished.stderr[-3000:]}"
        )
    lines = finished.stdout.strip().splitlines()
    try:
        measurement = Measurement.from_json(json.loads(lines[-1]))
    except (IndexError, ValueError, TypeError) as err:
        raise BenchmarkError(f"{mode} printed no result line:\n{finished.stdout[-2000:]}") from err
    if mode in INGEST_MODES and measurement.status != "ingested":
        raise BenchmarkError(
            f"{mode} reported {measurement.status!r}, not 'ingested': the run did not store the file"
        )
    return measurement


# -- a benchmark run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    measurement: Measurement
    server_cpu_seconds: float | None = None
    server_peak_rss_kib: int | None = None
    other_cpu_seconds: float | None = None
    """CPU that processes other than this benchmark's used while the child ran (machine is shared)."""
    window_seconds: float | None = None
    """How long the child ran, set-up included: the window ``other_cpu_seconds`` was taken over."""

    def to_json(self) -> dict[str, Any]:
        record = self.measurement.to_json()
        if self.server_cpu_seconds is not None:
            record |= {
                "server_cpu_seconds": round(self.server_cpu_seconds, 3),
                "server_peak_rss_kib": self.server_peak_rss_kib,
            }
        if self.other_cpu_seconds is not None and self.window_seconds is not None:
            record |= {
                "other_cpu_seconds": round(self.other_cpu_seconds, 3),
                "window_seconds": round(self.window_seconds, 3),
            }
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Sample:
        return cls(
            Measurement.from_json(record),
            record.get("server_cpu_seconds"),
            record.get("server_peak_rss_kib"),
            record.get("other_cpu_seconds"),
            record.get("window_seconds"),
        )


def machine_busy_seconds() -> float | None:
    """CPU seconds every process on the machine has used since boot (all cores), from /proc/stat;
    stolen time counts as busy: those cycles were not ours either."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(max_seconds: float, log: Any = print) -> None:
    """The machine is shared: wait (up to ``max_seconds``) until other processes use less than a
    quarter of a core, so a sample measures this code rather than someone's test run."""
    deadline = time.monotonic() + max_seconds
    announced = False
    while True:
        before = machine_busy_seconds()
        time.sleep(1.0)
        after = machine_busy_seconds()
        if before is None or after is None or after - before < QUIET_CORES:
            return
        if time.monotonic() >= deadline:
            log(f"  (machine still busy: {after - before:.2f} cores in use by others; measuring anyway)")
            return
        if not announced:
            log(f"  (waiting for the machine to go quiet: {after - before:.2f} cores in use by others)")
            announced = True


def measure_once(
    mode: str, path: Path, workdir: Path, *, quiet_wait: float = 0.0, rgw: CephRgwServer | None = None
) -> Sample:
    warm_page_cache(path)  # every mode starts from the same cache state: the file in memory
    if quiet_wait > 0:
        wait_for_quiet(quiet_wait)
    if mode not in S3_MODES:
        return _observed(lambda: (run_child(mode, path, workdir=workdir), None), server=None)
    if rgw is not None:
        return _measure_on_rgw(mode, path, workdir, rgw)
    with moto_server(workdir) as server:  # fresh per operation: empty, and its figures are this run's

        def run() -> tuple[Measurement, float]:
            cpu_before = server.cpu_seconds()
            measured = run_child(mode, path, workdir=workdir, endpoint=server.endpoint, bucket=BUCKET)
            return measured, server.cpu_seconds() - cpu_before

        return _observed(run, server=server)


# botocore's default since 1.36 sends a CRC32 in an aws-chunked trailer over HTTPS, which RGW 16 refuses
# (MissingContentLength): plain upload_file works there only with checksums sent when an operation
# requires one. The project's own client is not given this: it sends its integrity headers itself.
PLAIN_BOTO3_ON_RGW = {"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"}


def _measure_on_rgw(mode: str, path: Path, workdir: Path, rgw: CephRgwServer) -> Sample:
    bucket = rgw.new_bucket()  # fresh: empty, never a duplicate
    environment = rgw.environment() | (PLAIN_BOTO3_ON_RGW if mode == "boto3-upload" else {})
    try:

        def run() -> tuple[Measurement, float]:
            cpu_before = rgw.cpu_seconds()
            measured = run_child(
                mode, path, workdir=workdir, endpoint=rgw.endpoint, bucket=bucket, environment=environment
            )
            return measured, rgw.cpu_seconds() - cpu_before

        return _observed(run, server=rgw)
    finally:
        rgw.remove_bucket(bucket)


def _observed(run: Any, *, server: MotoS3Server | CephRgwServer | None) -> Sample:
    """Run a child and note what else the machine did meanwhile."""
    busy_before, children_before, own_before = (
        machine_busy_seconds(),
        _children_cpu_seconds(),
        time.process_time(),
    )
    started = time.perf_counter()
    measurement, server_cpu = run()
    window = time.perf_counter() - started
    busy_after = machine_busy_seconds()
    ours = _children_cpu_seconds() - children_before + (server_cpu or 0.0) + time.process_time() - own_before
    other = None if busy_before is None or busy_after is None else max(0.0, busy_after - busy_before - ours)
    return Sample(
        measurement,
        server_cpu,
        server.peak_rss_kib() if server is not None else None,
        other,
        window,
    )


def warm_page_cache(path: Path) -> None:
    with path.open("rb", buffering=0) as source:
        while source.read(8 * MiB):
            pass


def _cores(sample: Sample) -> float:
    if sample.other_cpu_seconds is None or not sample.window_seconds:
        return 0.0
    return sample.other_cpu_seconds / sample.window_seconds


def plan(sizes: Sequence[int]) -> list[tuple[int, tuple[str, ...]]]:
    """Every mode at the first size (the ratios come from one run at one size); the ingest modes at
    every other size (peak RSS must not grow with size)."""
    return [(size, MODES if index == 0 else INGEST_MODES) for index, size in enumerate(sizes)]


def run_benchmark(
    sizes: Sequence[int],
    workdir: Path,
    *,
    repeat: int = 1,
    repeat_large: int = 1,
    quiet_wait: float = 0.0,
    log: Any = print,
    server: str = "moto",
) -> dict[tuple[str, int], list[Sample]]:
    with ExitStack() as stack:
        rgw = None
        if server == "rgw":
            log("starting Ceph RGW ...")
            rgw = stack.enter_context(CephRgwServer(workdir, rgw_memstore_bytes(sizes)))
        return _run_plan(sizes, workdir, repeat, repeat_large, quiet_wait, log, rgw)


def _run_plan(
    sizes: Sequence[int],
    workdir: Path,
    repeat: int,
    repeat_large: int,
    quiet_wait: float,
    log: Any,
    rgw: CephRgwServer | None,
) -> dict[tuple[str, int], list[Sample]]:
    from flows.simulate import random_file

    samples: dict[tuple[str, int], list[Sample]] = {}
    for index, (size, modes) in enumerate(plan(sizes)):
        device = workdir / f"device-{index}"
        path = device / f"bench-{size}.bin"
        log(f"writing {format_size(size)} of random data to {path} ...")
        random_file(path, size, seed=index)
        try:
            rounds = repeat if index == 0 else repeat_large
            for round_number in range(rounds):
                for mode in modes:
                    sample = measure_once(mode, path, workdir, quiet_wait=quiet_wait, rgw=rgw)
                    samples.setdefault((mode, size), []).append(sample)
                    m = sample.measurement
                    label = f" (round {round_number + 1}/{rounds})" if rounds > 1 else ""
                    log(
                        f"  {mode:<15} {format_size(size):>8}: {m.seconds:7.2f} s  {m.mb_per_s:7.1f} MB/s  "
                        f"peak RSS {m.peak_rss_kib / 1024:6.1f} MiB  others' CPU {_cores(sample):4.2f} cores{label}"
                    )
        finally:
            shutil.rmtree(device, ignore_errors=True)
    return samples


# -- the report ---------------------------------------------------------------------------------------


def fastest_sample(samples: Sequence[Sample]) -> Sample:
    """Best of N, as ``timeit`` advises: slower samples are slowed by other processes (the machine
    is shared), not by the code measured."""
    return min(samples, key=lambda sample: sample.measurement.seconds)


def peak_rss_kib(samples: Sequence[Sample]) -> int:
    """The highest peak of any sample: how many part buffers are alive at once depends on timing."""
    return max(sample.measurement.peak_rss_kib for sample in samples)


def machine_description(
    packages: Sequence[str] = ("boto3", "botocore", "moto", "cryptography"),
) -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    with suppress(ValueError, OSError):
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB, 1)
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def ingest_settings() -> dict[str, Any]:
    """The defaults the ingest modes ran with (children ignore EVIDENCE_* variables)."""
    from evidence.settings import Settings

    fields = Settings.model_fields
    return {name: fields[name].default for name in ("part_size", "upload_concurrency", "segment_size")}


def build_report(
    samples: dict[tuple[str, int], list[Sample]],
    sizes: Sequence[int],
    *,
    date: datetime | None = None,
    server: str = "moto",
) -> dict[str, Any]:
    ratio_size, largest = sizes[0], max(sizes)
    chosen = {key: fastest_sample(group) for key, group in samples.items()}
    peaks = {key: peak_rss_kib(group) for key, group in samples.items()}

    def rate(mode: str) -> float | None:
        sample = chosen.get((mode, ratio_size))
        return sample.measurement.mb_per_s if sample else None

    def ratio(numerator: str, denominator: str) -> float | None:
        top, bottom = rate(numerator), rate(denominator)
        return round(top / bottom, 3) if top is not None and bottom else None

    def seconds_without_complete(mode: str) -> float | None:
        # moto joins every part in memory and writes the object to a temporary file when a multipart
        # upload completes, a cost real S3 does not put on the client's clock
        sample = chosen.get((mode, ratio_size))
        complete = sample and sample.measurement.s3_calls.get("CompleteMultipartUpload")
        if not sample or not complete:
            return None
        return sample.measurement.seconds - complete["seconds"]

    without_complete: dict[str, float | None] = {}
    ingest_s3, boto3_upload = seconds_without_complete("ingest-s3"), seconds_without_complete("boto3-upload")
    if ingest_s3 and boto3_upload and server == "moto":
        without_complete["ingest-s3 / boto3-upload"] = round(boto3_upload / ingest_s3, 3)

    peak_rss: dict[str, dict[str, float]] = {}
    for (mode, size), peak in sorted(peaks.items(), key=lambda item: (MODES.index(item[0][0]), item[0][1])):
        peak_rss.setdefault(mode, {})[format_size(size)] = round(peak / 1024, 1)
    growth: dict[str, float] = {}
    for mode in INGEST_MODES:
        small, large = peaks.get((mode, ratio_size)), peaks.get((mode, largest))
        if small and large and largest != ratio_size:
            growth[mode] = round((large - small) / 1024, 1)
    return {
        "benchmark": "large-file ingest",
        "server": server,
        "date": (date or datetime.now(UTC)).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "ingest_settings": ingest_settings(),
        "sizes": [format_size(size) for size in sizes],
        "ratio_size": format_size(ratio_size),
        "figures": {
            "throughput_mb_s": {mode: round(value, 1) for mode in MODES if (value := rate(mode)) is not None},
            "ratios": {
                "ingest-s3 / boto3-upload": ratio("ingest-s3", "boto3-upload"),
                "ingest-s3 / one-pass-limit": ratio("ingest-s3", "one-pass-limit"),
                "ingest-local / one-pass-limit": ratio("ingest-local", "one-pass-limit"),
                "boto3-upload / one-pass-limit": ratio("boto3-upload", "one-pass-limit"),
            },
            "ratios_without_moto_complete": without_complete,
            "peak_rss_mib": peak_rss,
            "rss_growth_mib": growth,
            "rss_flat": all(value <= RSS_TOLERANCE_MIB for value in growth.values()),
            "rss_tolerance_mib": RSS_TOLERANCE_MIB,
        },
        "runs": [
            {
                "mode": mode,
                "size": format_size(size),
                "best": chosen[(mode, size)].to_json(),
                "peak_rss_kib": peaks[(mode, size)],
                "samples": [sample.to_json() for sample in group],
            }
            for (mode, size), group in samples.items()
        ],
    }


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(row) for row in rows)]


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def runs_section(report: dict[str, Any]) -> list[str]:
    header = ["mode", "size", "seconds", "MB/s", "CPU s", "S3 server CPU s", "peak RSS MiB"]
    header += ["RSS before op MiB", "others' CPU (cores)", "status", "samples (s)"]
    rows = []
    for run in report["runs"]:
        m = run["best"]
        server_cpu = m.get("server_cpu_seconds")
        rows.append(
            [
                run["mode"],
                run["size"],
                f"{m['seconds']:.2f}",
                f"{m['mb_per_s']:.1f}",
                f"{m['cpu_seconds']:.2f}",
                "" if server_cpu is None else f"{server_cpu:.2f}",
                f"{run['peak_rss_kib'] / 1024:.1f}",
                f"{m['setup_rss_kib'] / 1024:.1f}",
                _others_cores(m),
                m.get("status") or "",
                ", ".join(f"{sample['seconds']:.2f}" for sample in run["samples"]),
            ]
        )
    return _table(header, rows)


def _others_cores(record: dict[str, Any]) -> str:
    other, window = record.get("other_cpu_seconds"), record.get("window_seconds")
    return "" if other is None or not window else f"{other / window:.2f}"


def ratios_section(report: dict[str, Any]) -> list[str]:
    figures = report["figures"]
    rows = [[name, _number(value, 3)] for name, value in figures["ratios"].items()]
    without = figures.get("ratios_without_moto_complete") or {}
    rows += [
        [f"{name}, leaving out moto's CompleteMultipartUpload", _number(v, 3)] for name, v in without.items()
    ]
    return _table(["throughput ratio", "value"], rows)


def rss_section(report: dict[str, Any]) -> list[str]:
    figures, sizes = report["figures"], report["sizes"]
    rows = []
    for mode, by_size in figures["peak_rss_mib"].items():
        growth = figures["rss_growth_mib"].get(mode)
        rows.append(
            [
                mode,
                *[str(by_size.get(size, "")) for size in sizes],
                "" if growth is None else f"{growth:+.1f}",
            ]
        )
    verdict = "does not grow" if figures["rss_flat"] else "GROWS"
    return [
        *_table(["peak RSS MiB", *sizes, "growth"], rows),
        "",
        f"Peak RSS of the ingest {verdict} with file size (counts as growth above {figures['rss_tolerance_mib']} MiB).",
    ]


def phases_section(report: dict[str, Any]) -> list[str]:
    runs = [run for run in report["runs"] if run["best"].get("phases")]
    if not runs:
        return []
    names = sorted({name for run in runs for name in run["best"]["phases"]})

    def cell(record: dict[str, Any], name: str) -> str:
        wall, cpu = record["phases"].get(name, 0.0), record.get("phase_cpu", {}).get(name)
        return f"{wall:.2f}" if cpu is None else f"{wall:.2f} / {cpu:.2f}"

    rows = [[name, *[cell(run["best"], name) for run in runs]] for name in names]
    rest = [run["best"]["seconds"] - sum(run["best"]["phases"].values()) for run in runs]
    rows.append(["reading the file + glue (the rest)", *[f"{value:.2f}" for value in rest]])
    rows.append(
        [
            "total",
            *[f"{run['best']['seconds']:.2f} / {run['best']['main_thread_cpu_seconds']:.2f}" for run in runs],
        ]
    )
    header = "phase: exclusive wall s / main-thread CPU s"
    return _table([header, *[f"{run['mode']} {run['size']}" for run in runs]], rows)


def s3_calls_section(report: dict[str, Any]) -> list[str]:
    rows = []
    for run in report["runs"]:
        for operation, call in (run["best"].get("s3_calls") or {}).items():
            rows.append(
                [
                    f"{run['mode']} {run['size']}",
                    operation,
                    f"{call['count']:.0f}",
                    f"{call['seconds']:.2f}",
                    f"{call['cpu_seconds']:.2f}",
                ]
            )
    if not rows:
        return []
    return _table(["run", "S3 operation", "calls", "wall s (summed over threads)", "client CPU s"], rows)


SERVER_DESCRIPTIONS = {
    "moto": "moto's server, a separate process on 127.0.0.1",
    "rgw": (
        "Ceph RGW 16 over HTTPS on 127.0.0.1 (one monitor, one memstore OSD, the gateway: `tests.rgw`), "
        "a fresh bucket per measurement; plain boto3 runs with "
        "`AWS_REQUEST_CHECKSUM_CALCULATION=when_required`, without which its uploads fail on RGW 16"
    ),
}


def render_markdown(report: dict[str, Any]) -> str:
    machine, settings = report["machine"], report["ingest_settings"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    lines = [
        "# Large-file ingest benchmark",
        "",
        f"Run {report['date']} by `python -m bench.run_all`; what each figure means: `bench/README.md`.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB memory, "
        f"Python {machine['python']}, {machine['platform']}; {packages}.",
        "",
        f"Ingest settings: part size {format_size(settings['part_size'])}, upload concurrency "
        f"{settings['upload_concurrency']}, segment size {format_size(settings['segment_size'])}. S3 is "
        f"{SERVER_DESCRIPTIONS[report.get('server', 'moto')]}, sharing the same CPUs. MB = 10^6 bytes.",
        "",
        "## Runs (fastest sample; peak RSS: highest of the samples)",
        "",
        *runs_section(report),
        "",
        f"## Ratios (throughput at {report['ratio_size']}, same run)",
        "",
        *ratios_section(report),
        "",
        "## Peak RSS by size",
        "",
        *rss_section(report),
        "",
    ]
    phases = phases_section(report)
    if phases:
        lines += ["## Where ingest time goes", "", *phases, ""]
    calls = s3_calls_section(report)
    if calls:
        lines += ["## S3 calls", "", *calls, ""]
    return "\n".join(lines)


def render_summary(report: dict[str, Any]) -> str:
    """What a run prints at the end: the runs, the ratios and peak RSS."""
    return "\n".join([*runs_section(report), "", *ratios_section(report), "", *rss_section(report)])


def results_stem(sizes: Sequence[int], server: str = "moto") -> str:
    stem = "large_file" if server == "moto" else f"large_file-{server}"
    if tuple(sizes) == DEFAULT_SIZES:
        return stem
    return f"{stem}-" + "-".join(format_size(size).replace(" ", "") for size in sizes)


def write_results(report: dict[str, Any], results_dir: Path, stem: str) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results_dir / f"{stem}.json", results_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(render_markdown(report))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [parse_size(part) for part in text.split(",")],
        help="comma-separated sizes, the first for the ratios (default 1GiB,4GiB)",
    )
    parser.add_argument("--quick", action="store_true", help="256MiB,512MiB: a smoke run in about a minute")
    parser.add_argument("--repeat", type=int, default=5, help="rounds at the first size; the fastest counts")
    parser.add_argument("--repeat-large", type=int, default=3, help="rounds at the other sizes (peak RSS)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="seconds to wait before each sample for other processes to leave the CPUs (0: never)",
    )
    parser.add_argument("--workdir", type=Path, help="where inputs and temporary vaults go (default: /tmp)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="where to write the result files")
    parser.add_argument(
        "--server",
        choices=("moto", "rgw"),
        default="moto",
        help="the S3 server: moto's (a fresh process per measurement) or Ceph RGW (tests.rgw; root installs it)",
    )
    args = parser.parse_args(argv)
    sizes = args.sizes or (list(QUICK_SIZES) if args.quick else list(DEFAULT_SIZES))
    if args.repeat < 1 or args.repeat_large < 1:
        parser.error("--repeat and --repeat-large must be at least 1")
    base = args.workdir or Path(tempfile.gettempdir())
    try:
        base.mkdir(parents=True, exist_ok=True)
        check_resources(base, sizes, args.server)
        workdir = Path(tempfile.mkdtemp(prefix="evidence-bench-", dir=base))
        try:
            samples = run_benchmark(
                sizes,
                workdir,
                repeat=args.repeat,
                repeat_large=args.repeat_large,
                quiet_wait=args.quiet_wait,
                server=args.server,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    except BenchmarkError as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        return 2
    report = build_report(samples, sizes, server=args.server)
    json_path, md_path = write_results(report, args.results, results_stem(sizes, args.server))
    print()
    print(render_summary(report))
    if report["figures"]["rss_growth_mib"]:
        print("(phases and S3 calls: see the markdown file)")
    print(f"\nwritten: {json_path}, {md_path}")
    return 0 if report["figures"]["rss_flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
