"""The dock's speed, before and after, in one run: ``python -m bench.dock_speed`` (issue 11).

Measures any two trees of this project from the outside: ``--before REV`` (a commit, exported with
``git archive`` into the work folder) and ``--after PATH`` (a checkout, default this one). Every
measured operation is a child process of the same Python (``sys.executable``: the project's venv has
every dependency) with ``PYTHONPATH`` and the working directory set to one tree, so code of one tree
never mixes with the other's; both trees are byte-compiled first (an exported tree has no
``__pycache__``, and compiling on a first import is not what a dock pays). Where an order could favour
one tree (machine load drifts), the trees take turns going first, round by round.

Rows (the issue's table):

- **re-dock**: a device of ``--redock-gib`` GiB (four random files, read-only, shared by both trees)
  ingested once without ``--wipe`` (not timed), then docked again, timed: ``python -m cli ingest
  DEVICE --json``. Every file must come back as a duplicate; the vault folder's bytes and files are
  counted before and after (anything written during a re-dock shows). Its time is set against reading
  and hashing the same files locally (SHA-256, 1 MiB reads, a child process), timed in the same round.
- **photos**: ``--photos`` camera JPEGs (``bench.small_photos.make_photo_device``) through ``python -m
  cli ingest`` with the Prefect server running, into a fresh local vault and a fresh Ceph RGW bucket:
  files / the command's wall time (what a person waits for), and the command's peak RSS.
- **tiny files**: ``--tiny-files`` files of 1-4 KiB of random bytes in ``DCIM/1xxBWC01/`` folders,
  ingested, then docked again (not wiped): files/s of both, peak RSS of the ingest.
- **dock start**: ``python -m cli ingest`` from process start to exit, median of ``--start-runs``:
  the same one-file device docked again (its file already stored: what a re-dock costs), a device with
  one new photo each run (a fresh file), and an empty device.
- **dock watch**: one ``python -m cli dock watch DOCK --poll-seconds 0.2`` per tree; after a warm-up
  device (the first pays the imports), ``--watch-devices`` folders each holding one new photo are
  moved into the dock one after another: median time from the folder appearing to the watcher's line
  "device NAME: 1 ingested" (the poll interval and the ingest itself included).
- **large file**: ``python -m bench.large_file ingest-local FILE --no-phases`` of ``--large-gib`` GiB
  (best of ``--large-rounds``) and once of ``--large-rss-gib`` GiB per tree, against the after tree's
  ``one-pass-limit`` of the same file (best of as many): ratio one-pass seconds / ingest seconds; peak
  RSS (the child's ``VmHWM``) at both sizes.
- **restic**: Debian's ``restic`` (installed as root when missing, through ``tests.debian``) backs up
  the ``--large-gib`` file to a fresh local repository and to a fresh RGW bucket (``restic backup``
  timed, ``init`` not), against ``bench.large_file ingest-local`` / ``ingest-s3`` of the same file:
  ratio ingest seconds / restic seconds (lower is better).

Peak RSS of a child is ``ru_maxrss`` from ``os.wait4`` taken by a small launcher process (stdlib
only) that starts the measured command: Linux folds the *spawning* process's peak into a child's
``ru_maxrss`` at exec (subprocess uses vfork), so a launcher of ~10 MiB keeps the benchmark's own
memory out of the figure. The launcher also times the child, from just before it is spawned to its exit.

Results: a table on stdout, ``bench/results/dock_speed.json`` and ``dock_speed.md`` (other sizes write
``dock_speed-<sizes>.*``, which git ignores). What each figure means is in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.run_all import machine_busy_seconds, machine_description
from bench.servers import BenchmarkError

# The commit on main before issue 11's work started: the "before" every figure is set against.
BEFORE_REV = "96e089d"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024
GiB = 1024 * MiB

DEFAULT_REDOCK_GIB = 4.0
DEFAULT_PHOTOS = 1000
DEFAULT_TINY_FILES = 20_000
DEFAULT_LARGE_GIB = 1.0
DEFAULT_LARGE_RSS_GIB = 4.0
DEFAULT_LARGE_ROUNDS = 3
DEFAULT_REDOCK_ROUNDS = 3
DEFAULT_START_RUNS = 5
DEFAULT_WATCH_DEVICES = 5
REDOCK_FILES = 4
TINY_FILES_PER_FOLDER = 200
TINY_SIZES = (1024, 4096)
WATCH_POLL_SECONDS = 0.2
RSS_TOLERANCE_MIB = 32  # as bench.run_all: peak RSS may differ this much between sizes and be "flat"
CHILD_TIMEOUT_SECONDS = 3600.0
WATCH_DEVICE_TIMEOUT_SECONDS = 120.0
PACKAGES = ("prefect", "boto3", "cryptography", "pillow")
TREES = ("before", "after")
STORES = ("local", "rgw")

# The launcher (``python -c``, stdlib only): spawns the command with its output to files, waits for
# it with wait4 and writes the result as JSON. Its own peak is a few MiB, so the child's ru_maxrss is
# the child's own.
LAUNCHER = r"""
import json, os, subprocess, sys, time
result, command = sys.argv[1], sys.argv[2:]
with open(result + ".out", "wb") as out, open(result + ".err", "wb") as err:
    started = time.perf_counter()
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    seconds = time.perf_counter() - started
    try:  # the exited child's I/O counters, read before it is reaped
        with open(f"/proc/{child.pid}/io") as io:
            counters = dict(line.split(": ") for line in io.read().splitlines())
    except OSError:
        counters = {}
    _, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
with open(result, "w") as done:
    json.dump({"seconds": seconds, "peak_rss_kib": usage.ru_maxrss, "returncode": child.returncode,
               "cpu_seconds": usage.ru_utime + usage.ru_stime,
               "written_bytes": int(counters["wchar"]) if "wchar" in counters else None}, done)
"""

# Reading and hashing the device's files locally: the floor a re-dock is set against.
LOCAL_HASH = r"""
import hashlib, sys
for name in sys.argv[1:]:
    digest = hashlib.sha256()
    with open(name, "rb", buffering=0) as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
"""


# -- the trees ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    label: str
    """``before`` or ``after``."""
    path: Path
    source: str
    """What it is: ``git archive 96e089d`` or the checkout's path and commit."""


def export_tree(project_root: Path, rev: str, destination: Path) -> Path:
    """``git archive REV | tar -x``: the tree at ``rev`` with no git or worktree metadata."""
    destination.mkdir(parents=True, exist_ok=False)
    archive = subprocess.Popen(
        ["git", "-C", str(project_root), "archive", "--format=tar", rev],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert archive.stdout is not None
    unpacked = subprocess.run(
        ["tar", "-x", "-C", str(destination)], stdin=archive.stdout, capture_output=True, check=False
    )
    archive.stdout.close()
    archive_error = archive.stderr.read().decode(errors="replace") if archive.stderr else ""
    if archive.wait() != 0:
        raise BenchmarkError(f"git archive {rev} failed: {archive_error.strip()}")
    if unpacked.returncode != 0:
        raise BenchmarkError(f"unpacking {rev} failed: {unpacked.stderr.decode(errors='replace').strip()}")
    return destination


def describe_checkout(path: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(path), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"{path} at {done.stdout.strip()}" if done.returncode == 0 else str(path)


# -- counting a vault ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderUsage:
    bytes: int
    files: int

    def __sub__(self, other: FolderUsage) -> FolderUsage:
        return FolderUsage(self.bytes - other.bytes, self.files - other.files)


def folder_usage(folder: Path) -> FolderUsage:
    """Total size and number of the regular files under ``folder`` (what a local vault holds)."""
    total = count = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            total += info.st_size
            count += 1
    return FolderUsage(total, count)


# -- running a child ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    """From just before the child was spawned to its exit."""
    peak_rss_kib: int
    cpu_seconds: float
    returncode: int
    stdout: str
    stderr: str
    others_cores: float | None
    """CPU the rest of the machine used meanwhile, in cores (this benchmark's servers included)."""
    written_bytes: int | None = None
    """Bytes the child passed to write calls (``wchar`` of /proc/PID/io): files, including ones it
    deleted again such as an upload's staging file, its databases and its output; None off Linux."""


def run_child(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, scratch: Path, timeout: float
) -> ChildRun:
    """Run ``command`` under the launcher: its wall time, peak RSS and CPU, and its output."""
    scratch.mkdir(parents=True, exist_ok=True)
    result = Path(tempfile.mkstemp(prefix="child-", suffix=".json", dir=scratch)[1])
    busy_before = machine_busy_seconds()
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(result), *command],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: a timeout ends the child with it
    )
    try:
        launcher.wait(timeout=timeout)
    except subprocess.TimeoutExpired as err:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
        raise BenchmarkError(f"{' '.join(command)} did not finish in {timeout:.0f} s") from err
    busy_after = machine_busy_seconds()
    outputs = [Path(f"{result}.out"), Path(f"{result}.err")]
    try:
        record = json.loads(result.read_text() or "null")
        stdout, stderr = (path.read_text(errors="replace") if path.exists() else "" for path in outputs)
    finally:
        for path in (result, *outputs):
            path.unlink(missing_ok=True)
    if not record:
        raise BenchmarkError(f"the launcher of {' '.join(command)} failed (exit {launcher.returncode})")
    others = None
    if busy_before is not None and busy_after is not None:
        others = max(0.0, busy_after - busy_before - record["cpu_seconds"]) / max(record["seconds"], 1e-6)
    return ChildRun(
        seconds=record["seconds"],
        peak_rss_kib=record["peak_rss_kib"],
        cpu_seconds=round(record["cpu_seconds"], 3),
        returncode=record["returncode"],
        stdout=stdout,
        stderr=stderr,
        others_cores=None if others is None else round(others, 2),
        written_bytes=record.get("written_bytes"),
    )


def ingest_document(run: ChildRun) -> dict[str, Any]:
    """The ``evidence ingest --json`` document a run printed."""
    text = run.stdout
    try:
        return dict(json.loads(text[text.index("{") :]))
    except ValueError as err:
        raise BenchmarkError(
            f"ingest printed no JSON document:\n{text[-1500:]}\n{run.stderr[-1500:]}"
        ) from err


def outcome_counts(document: Mapping[str, Any]) -> dict[str, int]:
    return {name: len(document.get(name, [])) for name in ("ingested", "duplicates", "rejected")}


# -- inputs -------------------------------------------------------------------------------------------


def write_random_file(path: Path, size: int, *, seed: str) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as target:
        remaining = size
        while remaining:
            step = min(MiB, remaining)
            target.write(rng.randbytes(step))
            remaining -= step
    return path


def make_redock_device(device: Path, total: int) -> list[Path]:
    """``REDOCK_FILES`` random files adding up to ``total`` bytes, read-only (the device is shared)."""
    sizes = [total // REDOCK_FILES] * REDOCK_FILES
    sizes[-1] += total - sum(sizes)
    files = []
    for index, size in enumerate(sizes):
        path = write_random_file(
            device / "DCIM" / "100BWC01" / f"MOV_{index + 1:04d}.BIN", size, seed=f"r{index}"
        )
        path.chmod(0o444)
        files.append(path)
    return files


def make_tiny_device(device: Path, count: int) -> list[Path]:
    """``count`` files of 1-4 KiB of random bytes, 200 to a camera folder (DCIM/100BWC01, 101BWC01...)."""
    rng = random.Random(f"tiny:{count}")
    files = []
    for index in range(count):
        folder = device / "DCIM" / f"{100 + index // TINY_FILES_PER_FOLDER}BWC01"
        if index % TINY_FILES_PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"DAT_{index % TINY_FILES_PER_FOLDER + 1:04d}.BIN"
        path.write_bytes(rng.randbytes(rng.randint(*TINY_SIZES)))
        files.append(path)
    return files


def device_files(device: Path) -> list[Path]:
    return sorted(path for path in device.rglob("*") if path.is_file())


def warm_page_cache(paths: Sequence[Path]) -> None:
    from bench.small_photos import warm_page_cache as read_whole

    read_whole(paths)


# -- the results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the issue asks of a figure."""

    text: str
    compare: str
    """``>=``, ``<=``, ``<`` or ``==``."""
    limit: float

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return {
            ">=": value >= self.limit,
            "<=": value <= self.limit,
            "<": value < self.limit,
            "==": value == self.limit,
        }[self.compare]


@dataclass(frozen=True)
class Row:
    name: str
    target: Target | None
    before: float | None
    after: float | None
    digits: int = 2
    unit: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.after)

    def cell(self, value: float | None) -> str:
        if value is None:
            return "-"
        if round(value, self.digits) == 0:
            value = 0.0  # not "-0"
        return f"{value:,.{self.digits}f}{(' ' + self.unit) if self.unit else ''}"

    def cells(self) -> list[str]:
        met = {True: "yes", False: "NO", None: "-"}[self.met]
        return [
            self.name,
            self.target.text if self.target else "-",
            self.cell(self.before),
            self.cell(self.after),
            met,
        ]

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"met": self.met}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Row:
        target = record.get("target")
        return cls(
            name=record["name"],
            target=Target(**target) if target else None,
            before=record.get("before"),
            after=record.get("after"),
            digits=record.get("digits", 2),
            unit=record.get("unit", ""),
        )


def render_table(rows: Sequence[Row]) -> list[str]:
    header = ["row", "target", "before", "after", "met?"]
    lines = [header, ["---"] * len(header), *(row.cells() for row in rows)]
    return ["| " + " | ".join(cells) + " |" for cells in lines]


NOTES = (
    "How to read it: `before` is the tree at the commit named above, `after` the checkout named above; "
    "both ran in this run, on this machine, with the same Python and the same Prefect server, taking "
    "turns to go first. `met?` judges the after column. Times are wall times of whole commands, "
    "process start to exit (what a person at the dock waits for), unless a row says otherwise; "
    "files/s = files / that time. Best (fastest) of the rounds unless a row says median.",
    "Page cache: every input was read just before it was measured (the re-dock device by the local "
    "hash of the same round), so all runs read warm files, as a device read twice would be; a device "
    "read cold from USB would be slower for both trees alike.",
    "re-dock: bytes and files written = growth of the local vault folder (every file under it, by "
    "os.walk) across the timed re-dock, the largest over the rounds; duplicates must equal the files on "
    "the device or the run stops. Bytes the ingest wrote: every write call of the ingest process "
    "(wchar of /proc/PID/io), so an upload staged and thrown away as a duplicate shows, as do the "
    "journal, catalog and output. Ratio = re-dock seconds / local SHA-256 seconds of the same files "
    "(1 MiB reads, one child process), each the best of its rounds.",
    "Peak RSS: the measured command's ru_maxrss from wait4 in a small launcher process (so the "
    "benchmark's own memory is not folded in at exec); for bench.large_file rows the child's own VmHWM.",
    "dock watch: median time from a device folder appearing in the dock (os.rename) to the watcher's "
    "console line `device NAME: 1 ingested`; it includes up to one poll interval (0.2 s) of waiting "
    "and the ingest of the one new photo, so it is an upper bound of the per-device overhead.",
    "large file: the ingest's timed operation (scan + ingest_file, set-up untimed) from "
    "bench.large_file, and one-pass-limit of the same file in the after tree; ratio = one-pass seconds "
    "/ ingest seconds (1.0 = as fast as hashing and encrypting alone). Flat = peak RSS at the larger "
    f"size within {RSS_TOLERANCE_MIB} MiB of the smaller.",
    "restic: `restic backup FILE` wall time (process start to exit: opening the repository included; "
    "init not timed) into a fresh repository each round, against the ingest's timed operation from "
    "bench.large_file (station set-up untimed) of the same file; ratio = ingest / restic, lower is "
    "better. The issue's earlier figures: local restic 5.1-5.3 s against ingest 2.5-3.0 s (~0.5); RGW "
    "restic 14.1 s against 8.3 s (~0.59).",
    "The machine may be shared: each sample records the CPU other processes used meanwhile "
    "(`others_cores` in the JSON, this run's Prefect and RGW servers included).",
)


def summary_rows(figures: Mapping[str, Any]) -> list[Row]:
    """The issue's table from the measured figures (``figures[row][tree]``)."""

    def pair(key: str) -> tuple[float | None, float | None]:
        values = figures.get(key, {})
        return values.get("before"), values.get("after")

    specs: list[tuple[str, str, Target | None, int, str]] = [
        ("redock_written_bytes", "re-dock: bytes written to the vault", Target("0", "==", 0), 0, "B"),
        ("redock_written_files", "re-dock: files written to the vault", Target("0", "==", 0), 0, ""),
        ("redock_process_written_mib", "re-dock: bytes the ingest wrote, all files", None, 1, "MiB"),
        ("redock_seconds", "re-dock: seconds", None, 2, "s"),
        ("redock_hash_ratio", "re-dock / local sha256 (ratio)", Target("<= 1.2", "<=", 1.2), 2, ""),
        ("photos_local_files_per_s", "photos, local store: files/s", Target(">= 50", ">=", 50), 1, ""),
        ("photos_local_peak_rss_mib", "photos, local store: peak RSS", None, 0, "MiB"),
        ("photos_rgw_files_per_s", "photos, Ceph RGW: files/s", Target(">= 35", ">=", 35), 1, ""),
        ("photos_rgw_peak_rss_mib", "photos, Ceph RGW: peak RSS", None, 0, "MiB"),
        ("tiny_files_per_s", "tiny files: files/s", Target(">= 100", ">=", 100), 1, ""),
        ("tiny_peak_rss_mib", "tiny files: peak RSS", Target("<= 256 MiB", "<=", 256), 0, "MiB"),
        ("tiny_redock_files_per_s", "tiny files re-dock: files/s", Target(">= 500", ">=", 500), 1, ""),
        (
            "start_redock_seconds",
            "dock start, one-file device docked again (median)",
            Target("< 2 s", "<", 2),
            2,
            "s",
        ),
        ("start_fresh_seconds", "dock start, one new file (median)", Target("< 2 s", "<", 2), 2, "s"),
        ("start_empty_seconds", "dock start, empty device (median)", None, 2, "s"),
        (
            "watch_seconds",
            "dock watch: appearance to done per device (median)",
            Target("< 0.5 s", "<", 0.5),
            2,
            "s",
        ),
        (
            "large_one_pass_ratio",
            "large file, local: one-pass / ingest (ratio)",
            Target(">= 0.7", ">=", 0.7),
            2,
            "",
        ),
        ("large_peak_rss_small_mib", "large file: peak RSS, smaller size", None, 0, "MiB"),
        ("large_peak_rss_large_mib", "large file: peak RSS, larger size", None, 0, "MiB"),
        (
            "large_peak_rss_growth_mib",
            "large file: peak RSS growth",
            Target(f"<= {RSS_TOLERANCE_MIB} MiB", "<=", RSS_TOLERANCE_MIB),
            0,
            "MiB",
        ),
        ("restic_local_ratio", "ingest / restic, local (ratio, lower is better)", None, 2, ""),
        ("restic_rgw_ratio", "ingest / restic, Ceph RGW (ratio, lower is better)", None, 2, ""),
    ]
    rows = []
    for key, name, target, digits, unit in specs:
        if key in figures:
            before, after = pair(key)
            rows.append(Row(name, target, before, after, digits, unit))
    return rows


def load_line(samples: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """How busy the rest of the machine was while the samples ran: near 0 is a clean run."""
    cores = sorted(
        sample["others_cores"]
        for row in samples.values()
        for sample in row
        if isinstance(sample, Mapping) and sample.get("others_cores") is not None
    )
    if not cores:
        return "Other processes' CPU during the samples: not measured."
    return (
        f"Other processes' CPU during the samples (cores, this run's Prefect and RGW servers included): "
        f"median {statistics.median(cores):.2f}, highest {cores[-1]:.2f}, over {len(cores)} samples."
    )


def render_markdown(report: Mapping[str, Any]) -> str:
    machine = report["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    rows = [Row.from_json(row) for row in report["rows"]]
    sizes = report["sizes"]
    lines = [
        "# The dock's speed, before and after (issue 11)",
        "",
        f"Run {report['date']} by `{report['command']}`; how it measures: the module's docstring and "
        "`bench/README.md`.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB memory, "
        f"Python {machine['python']}, {machine['platform']}; {packages}. Prefect: {report['prefect']}. "
        f"restic: {report.get('restic_version') or 'not run'}.",
        "",
        f"Before: {report['trees']['before']}. After: {report['trees']['after']}.",
        "",
        "Sizes: " + ", ".join(f"{name} {value}" for name, value in sizes.items()) + ".",
        "",
        load_line(report.get("samples", {})),
        "",
        *render_table(rows),
        "",
        *(f"- {note}" for note in NOTES),
        "",
    ]
    return "\n".join(lines)


# -- the benchmark ------------------------------------------------------------------------------------


@dataclass
class Bench:
    """One run: the trees, the servers, the work folder, and the figures gathered so far."""

    workdir: Path
    trees: dict[str, Tree]
    prefect_url: str
    rgw: Any = None
    child_timeout: float = CHILD_TIMEOUT_SECONDS
    quiet_wait: float = 0.0
    log: Callable[[str], None] = print
    figures: dict[str, dict[str, float | None]] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    # -- children

    def environment(self, tree: Tree, station: Path | None = None, vault_url: str = "") -> dict[str, str]:
        from bench.small_photos import clean_environment

        env = clean_environment(self.workdir) | {
            "PYTHONPATH": str(tree.path),
            "PREFECT_API_URL": self.prefect_url,
            "PREFECT_HOME": str(self.workdir / f"prefect-home-{tree.label}"),
            "EVIDENCE_SETTLE_SECONDS": "0",
            "EVIDENCE_DATA_DIR": str(station or self.workdir / f"unused-station-{tree.label}"),
            "COLUMNS": "250",  # the console's lines are matched: no wrapping
        }
        if vault_url:
            env["EVIDENCE_VAULT_URL"] = vault_url
        if vault_url.startswith("s3://") and self.rgw is not None:
            env |= self.rgw.environment() | {"AWS_ENDPOINT_URL": self.rgw.endpoint}
        return env

    def run(
        self, tree: Tree, command: Sequence[str], env: Mapping[str, str], *, check: bool = True
    ) -> ChildRun:
        run = run_child(
            command, env=env, cwd=tree.path, scratch=self.workdir / "scratch", timeout=self.child_timeout
        )
        if check and run.returncode != 0:
            raise BenchmarkError(
                f"{tree.label}: {' '.join(command)} exited {run.returncode}:\n{run.stderr[-3000:]}"
            )
        return run

    def cli(self, tree: Tree, env: Mapping[str, str], *arguments: str) -> ChildRun:
        return self.run(tree, [sys.executable, "-m", "cli", *arguments], env)

    def station(self, tree: Tree, name: str, vault_url: str = "") -> tuple[Path, dict[str, str]]:
        """A fresh station for ``tree`` (keys, vault initialised through its own CLI)."""
        station = self.workdir / "stations" / f"{name}-{tree.label}"
        station.mkdir(parents=True)
        env = self.environment(tree, station, vault_url or (station / "vault").resolve().as_uri())
        self.cli(tree, env, "keys", "init")
        self.cli(tree, env, "vault", "init")
        return station, env

    def ingest(self, tree: Tree, env: Mapping[str, str], device: Path) -> tuple[ChildRun, dict[str, int]]:
        run = self.cli(tree, env, "ingest", str(device), "--json")
        return run, outcome_counts(ingest_document(run))

    def rounds(self, count: int) -> Iterator[tuple[int, list[Tree]]]:
        """Round by round, the trees in turn: before first, then after first, ..."""
        for number in range(count):
            order = [self.trees[label] for label in TREES]
            yield number, order if number % 2 == 0 else order[::-1]

    def record(self, row: str, tree: Tree, **sample: Any) -> None:
        self.samples.setdefault(row, []).append({"tree": tree.label} | sample)

    def figure(self, key: str, tree: Tree, value: float | None) -> None:
        self.figures.setdefault(key, {})[tree.label] = value

    def quiet(self) -> None:
        from bench.small_photos import wait_for_quiet

        wait_for_quiet(self.quiet_wait, self.log)

    # -- set-up

    def prepare_trees(self) -> None:
        """Byte-compile both trees (untimed) and check each child imports the project from its own tree."""
        probe = (
            "import json, bench, cli, evidence, flows, storage; "
            "print(json.dumps([m.__file__ for m in (bench, cli, evidence, flows, storage)]))"
        )
        for tree in self.trees.values():
            self.run(
                tree,
                [sys.executable, "-m", "compileall", "-q", "-x", r"/\.venv/|node_modules", "."],
                self.environment(tree),
            )
            run = self.run(tree, [sys.executable, "-c", probe], self.environment(tree))
            outside = [
                name
                for name in json.loads(run.stdout)
                if not Path(name).resolve().is_relative_to(tree.path.resolve())
            ]
            if outside:
                raise BenchmarkError(f"{tree.label}: modules imported from outside {tree.path}: {outside}")

    def make_photos(self, devices: Sequence[Path], count: int) -> None:
        """Camera JPEGs from ``bench.small_photos`` (in a child: Pillow's memory stays out of here)."""
        command = [sys.executable, "-m", "bench.dock_speed", "make-photos", str(count), *map(str, devices)]
        done = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            env=os.environ | {"PYTHONPATH": str(PROJECT_ROOT)},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BenchmarkError(f"making photos failed:\n{done.stderr[-2000:]}")

    # -- rows

    def redock(self, gib: float, rounds: int) -> None:
        self.log(f"re-dock: a {gib:g} GiB device")
        device = self.workdir / "inputs" / "redock" / "BWC-REDOCK01"
        files = make_redock_device(device, int(gib * GiB))
        stations = {}
        for label, tree in self.trees.items():
            station, env = self.station(tree, "redock")
            _, counts = self.ingest(tree, env, device)
            if counts["ingested"] != len(files):
                raise BenchmarkError(f"{label}: the first ingest of the re-dock device gave {counts}")
            stations[label] = (station / "vault", env)
        hash_command = [sys.executable, "-c", LOCAL_HASH, *map(str, files)]
        hashes: list[float] = []
        best: dict[str, float] = {}
        for number, order in self.rounds(rounds):
            self.quiet()
            local = self.run(self.trees["after"], hash_command, self.environment(self.trees["after"]))
            hashes.append(local.seconds)
            for tree in order:
                vault, env = stations[tree.label]
                before = folder_usage(vault)
                run, counts = self.ingest(tree, env, device)
                written = folder_usage(vault) - before
                if counts["duplicates"] != len(files):
                    raise BenchmarkError(
                        f"{tree.label}: a re-dock gave {counts}, not {len(files)} duplicates"
                    )
                self.record(
                    "redock",
                    tree,
                    round=number,
                    seconds=round(run.seconds, 3),
                    written_bytes=written.bytes,
                    written_files=written.files,
                    process_written_bytes=run.written_bytes,
                    counts=counts,
                    peak_rss_kib=run.peak_rss_kib,
                    others_cores=run.others_cores,
                )
                best[tree.label] = min(best.get(tree.label, run.seconds), run.seconds)
                for key, value in (
                    ("redock_written_bytes", written.bytes),
                    ("redock_written_files", written.files),
                    ("redock_process_written_mib", round((run.written_bytes or 0) / MiB, 1)),
                ):
                    previous = self.figures.get(key, {}).get(tree.label)
                    self.figure(key, tree, max(value, previous or 0))
                self.log(
                    f"  {tree.label:<6} re-dock {run.seconds:6.2f} s (local sha256 {local.seconds:.2f} s), "
                    f"{written.bytes} B kept in the vault, {(run.written_bytes or 0) / MiB:.1f} MiB written"
                )
        self.samples["redock_local_sha256_seconds"] = [{"seconds": round(s, 3)} for s in hashes]
        for tree in self.trees.values():
            self.figure("redock_seconds", tree, round(best[tree.label], 3))
            self.figure("redock_hash_ratio", tree, round(best[tree.label] / min(hashes), 3))
        for _vault, env in stations.values():
            shutil.rmtree(env["EVIDENCE_DATA_DIR"], ignore_errors=True)
        shutil.rmtree(device.parent, ignore_errors=True)

    def photos(self, count: int, stores: Sequence[str]) -> None:
        self.log(f"photos: {count} through the CLI")
        device = self.workdir / "inputs" / "photos" / "BWC-PHOTOS01"
        self.make_photos([device], count)
        files = device_files(device)
        for store_number, store in enumerate(stores):
            order = list(self.trees.values())
            for tree in order if store_number % 2 == 0 else order[::-1]:
                bucket = None
                vault_url = ""
                if store == "rgw":
                    bucket = self.rgw.new_bucket()
                    vault_url = f"s3://{bucket}/photos"
                try:
                    station, env = self.station(tree, f"photos-{store}", vault_url)
                    warm_page_cache(files)
                    self.quiet()
                    run, counts = self.ingest(tree, env, device)
                finally:
                    if bucket is not None:
                        self.rgw.remove_bucket(bucket)
                if counts["ingested"] != len(files):
                    raise BenchmarkError(f"{tree.label}: {len(files)} photos into {store} gave {counts}")
                shutil.rmtree(station, ignore_errors=True)
                rate = len(files) / run.seconds
                self.record(
                    f"photos_{store}",
                    tree,
                    seconds=round(run.seconds, 3),
                    files=len(files),
                    files_per_s=round(rate, 2),
                    peak_rss_kib=run.peak_rss_kib,
                    cpu_seconds=run.cpu_seconds,
                    others_cores=run.others_cores,
                )
                self.figure(f"photos_{store}_files_per_s", tree, round(rate, 2))
                self.figure(f"photos_{store}_peak_rss_mib", tree, round(run.peak_rss_kib / 1024, 1))
                self.log(
                    f"  {tree.label:<6} {store:<5} {run.seconds:7.2f} s  {rate:6.1f} files/s  "
                    f"peak RSS {run.peak_rss_kib / 1024:.0f} MiB"
                )
        shutil.rmtree(device.parent, ignore_errors=True)

    def tiny_files(self, count: int) -> None:
        self.log(f"tiny files: {count}")
        device = self.workdir / "inputs" / "tiny" / "BWC-TINY01"
        files = make_tiny_device(device, count)
        stations = {}
        for _number, order in self.rounds(1):
            for tree in order:
                station, env = self.station(tree, "tiny")
                stations[tree.label] = (station, env)
                warm_page_cache(files)
                self.quiet()
                run, counts = self.ingest(tree, env, device)
                if counts["ingested"] != count:
                    raise BenchmarkError(f"{tree.label}: {count} tiny files gave {counts}")
                rate = count / run.seconds
                self.record(
                    "tiny",
                    tree,
                    seconds=round(run.seconds, 3),
                    files_per_s=round(rate, 2),
                    peak_rss_kib=run.peak_rss_kib,
                    cpu_seconds=run.cpu_seconds,
                    others_cores=run.others_cores,
                )
                self.figure("tiny_files_per_s", tree, round(rate, 2))
                self.figure("tiny_peak_rss_mib", tree, round(run.peak_rss_kib / 1024, 1))
                self.log(
                    f"  {tree.label:<6} ingest  {run.seconds:7.2f} s  {rate:7.1f} files/s  "
                    f"peak RSS {run.peak_rss_kib / 1024:.0f} MiB"
                )
            for tree in order[::-1]:
                station, env = stations[tree.label]
                warm_page_cache(files)
                self.quiet()
                vault = station / "vault"
                before = folder_usage(vault)
                run, counts = self.ingest(tree, env, device)
                written = folder_usage(vault) - before
                if counts["duplicates"] != count:
                    raise BenchmarkError(f"{tree.label}: re-docking {count} tiny files gave {counts}")
                rate = count / run.seconds
                self.record(
                    "tiny_redock",
                    tree,
                    seconds=round(run.seconds, 3),
                    files_per_s=round(rate, 2),
                    peak_rss_kib=run.peak_rss_kib,
                    written_bytes=written.bytes,
                    written_files=written.files,
                    others_cores=run.others_cores,
                )
                self.figure("tiny_redock_files_per_s", tree, round(rate, 2))
                self.log(
                    f"  {tree.label:<6} re-dock {run.seconds:7.2f} s  {rate:7.1f} files/s  {written.bytes} B written"
                )
        for station, _env in stations.values():
            shutil.rmtree(station, ignore_errors=True)
        shutil.rmtree(device.parent, ignore_errors=True)

    def dock_start(self, runs: int, watch_devices: int) -> None:
        self.log(f"dock start: median of {runs} runs; dock watch: {watch_devices} devices")
        inputs = self.workdir / "inputs" / "start"
        one_file = inputs / "BWC-START01"
        fresh = [inputs / f"BWC-FRESH{index:02d}" for index in range(1, runs + 1)]
        watched = [inputs / "watch" / f"BWC-WATCH{index:02d}" for index in range(watch_devices + 1)]
        self.make_photos([one_file, *fresh, *watched], 1)
        empty = inputs / "BWC-EMPTY01"
        empty.mkdir()
        stations = {}
        for tree in self.trees.values():
            station, env = self.station(tree, "start")
            self.ingest(tree, env, one_file)  # untimed: from now on it is docked again
            stations[tree.label] = (station, env)
        times: dict[tuple[str, str], list[float]] = {}
        for number, order in self.rounds(runs):
            self.quiet()
            for tree in order:
                _station, env = stations[tree.label]
                for kind, device, outcome in (
                    ("redock", one_file, "duplicates"),
                    ("fresh", fresh[number], "ingested"),
                    ("empty", empty, None),
                ):
                    run, counts = self.ingest(tree, env, device)
                    if outcome is not None and counts[outcome] != 1:
                        raise BenchmarkError(f"{tree.label}: dock start ({kind}) gave {counts}")
                    times.setdefault((tree.label, kind), []).append(run.seconds)
                    self.record(
                        f"start_{kind}",
                        tree,
                        round=number,
                        seconds=round(run.seconds, 3),
                        peak_rss_kib=run.peak_rss_kib,
                        others_cores=run.others_cores,
                    )
        for tree in self.trees.values():
            for kind in ("redock", "fresh", "empty"):
                median = statistics.median(times[(tree.label, kind)])
                self.figure(f"start_{kind}_seconds", tree, round(median, 3))
                self.log(f"  {tree.label:<6} {kind:<7} median {median:.2f} s")
        for tree in self.trees.values():
            station, env = stations[tree.label]
            copies = self.workdir / "inputs" / f"watch-{tree.label}"
            shutil.copytree(watched[0].parent, copies)
            delays = watch_dock(self, tree, env, [copies / device.name for device in watched])
            self.samples.setdefault("watch", []).append(
                {"tree": tree.label, "seconds": [round(s, 3) for s in delays]}
            )
            if delays:  # --watch-devices 0: only the warm-up device, nothing measured
                watch_median = statistics.median(delays)
                self.figure("watch_seconds", tree, round(watch_median, 3))
                self.log(f"  {tree.label:<6} dock watch: median {watch_median:.2f} s per device")
            shutil.rmtree(station, ignore_errors=True)
        shutil.rmtree(inputs, ignore_errors=True)

    def large_file(
        self, gib: float, rss_gib: float, rounds: int, stores: Sequence[str], restic: bool
    ) -> None:
        self.log(f"large file: {gib:g} GiB (best of {rounds}) and {rss_gib:g} GiB once")
        inputs = self.workdir / "inputs" / "large"
        small = write_random_file(inputs / "small" / "LARGE.BIN", int(gib * GiB), seed="large")
        scratch = self.workdir / "large-work"
        scratch.mkdir(exist_ok=True)
        after = self.trees["after"]

        def large(
            tree: Tree, mode: str, path: Path, *extra: str, env: Mapping[str, str] | None = None
        ) -> dict[str, Any]:
            warm_page_cache([path])
            self.quiet()
            command = [sys.executable, "-m", "bench.large_file", mode, str(path), "--workdir", str(scratch)]
            if mode != "one-pass-limit":
                command.append("--no-phases")
            run = self.run(tree, [*command, *extra], env or self.environment(tree))
            measured = dict(json.loads(run.stdout.strip().splitlines()[-1]))
            if mode.startswith("ingest") and measured.get("status") != "ingested":
                raise BenchmarkError(f"{tree.label}: {mode} reported {measured.get('status')!r}")
            sample = {
                "mode": mode,
                "size": measured["size"],
                "seconds": round(measured["seconds"], 3),
                "peak_rss_kib": measured["peak_rss_kib"],
                "process_seconds": round(run.seconds, 3),
                "others_cores": run.others_cores,
            }
            self.record("large", tree, **sample)
            self.log(
                f"  {tree.label:<6} {mode:<15} {measured['size'] / GiB:5.2f} GiB {measured['seconds']:7.2f} s  "
                f"peak RSS {measured['peak_rss_kib'] / 1024:.0f} MiB"
            )
            return sample

        one_pass = min(large(after, "one-pass-limit", small)["seconds"] for _ in range(rounds))
        best: dict[str, dict[str, Any]] = {}
        for _number, order in self.rounds(rounds):
            for tree in order:
                sample = large(tree, "ingest-local", small)
                if tree.label not in best or sample["seconds"] < best[tree.label]["seconds"]:
                    best[tree.label] = sample
        peaks: dict[str, list[int]] = {label: [] for label in TREES}
        for tree in self.trees.values():
            peaks[tree.label] = [
                sample["peak_rss_kib"]
                for sample in self.samples["large"]
                if sample["tree"] == tree.label and sample["mode"] == "ingest-local"
            ]
            self.figure("large_one_pass_ratio", tree, round(one_pass / best[tree.label]["seconds"], 3))
            self.figure("large_peak_rss_small_mib", tree, round(max(peaks[tree.label]) / 1024, 1))
        self.figures["large_one_pass_seconds"] = {"after": one_pass}
        if rss_gib > 0:
            big = write_random_file(inputs / "big" / "LARGE.BIN", int(rss_gib * GiB), seed="large-rss")
            for tree in self.trees.values():
                peak = large(tree, "ingest-local", big)["peak_rss_kib"]
                self.figure("large_peak_rss_large_mib", tree, round(peak / 1024, 1))
                self.figure(
                    "large_peak_rss_growth_mib", tree, round((peak - max(peaks[tree.label])) / 1024, 1)
                )
            big.unlink()
        if "rgw" in stores:
            for _number, order in self.rounds(rounds):
                for tree in order:
                    bucket = self.rgw.new_bucket()
                    try:
                        env = (
                            self.environment(tree)
                            | self.rgw.environment()
                            | {"AWS_ENDPOINT_URL": self.rgw.endpoint}
                        )
                        sample = large(tree, "ingest-s3", small, "--bucket", bucket, env=env)
                    finally:
                        self.rgw.remove_bucket(bucket)
                    key = f"ingest_s3_{tree.label}"
                    if key not in best or sample["seconds"] < best[key]["seconds"]:
                        best[key] = sample
        if restic:
            self.restic(small, rounds, stores, best)
        shutil.rmtree(inputs, ignore_errors=True)

    def restic(
        self, path: Path, rounds: int, stores: Sequence[str], best: Mapping[str, Mapping[str, Any]]
    ) -> None:
        restic_binary = ensure_restic(self.workdir)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RESTIC_", "EVIDENCE_"))}
        env |= {
            "RESTIC_PASSWORD": "dock-speed-benchmark",
            "RESTIC_CACHE_DIR": str(self.workdir / "restic-cache"),
        }
        after = self.trees["after"]
        for store in stores:
            seconds = []
            for number in range(rounds):
                bucket = None
                repository = self.workdir / f"restic-{store}-{number}"
                options: list[str] = []
                store_env = dict(env)
                if store == "rgw":
                    bucket = self.rgw.new_bucket()
                    server = self.rgw.server
                    repository_url = f"s3:{server.https_url}/{bucket}"
                    options = ["--cacert", str(server.ca_bundle)]
                    store_env |= {
                        "AWS_ACCESS_KEY_ID": server.access_key,
                        "AWS_SECRET_ACCESS_KEY": server.secret_key,
                        "AWS_DEFAULT_REGION": server.region,
                    }
                else:
                    repository_url = str(repository)
                try:
                    base = [restic_binary, "-r", repository_url, *options, "--quiet"]
                    self.run(after, [*base, "init"], store_env)
                    warm_page_cache([path])
                    self.quiet()
                    run = self.run(after, [*base, "backup", str(path)], store_env)
                finally:
                    if bucket is not None:
                        self.rgw.remove_bucket(bucket)
                    shutil.rmtree(repository, ignore_errors=True)
                seconds.append(run.seconds)
                self.samples.setdefault(f"restic_{store}", []).append(
                    {
                        "seconds": round(run.seconds, 3),
                        "peak_rss_kib": run.peak_rss_kib,
                        "others_cores": run.others_cores,
                    }
                )
                self.log(f"  restic {store:<5} backup {run.seconds:7.2f} s")
            fastest = min(seconds)
            self.figures[f"restic_{store}_seconds"] = {"after": round(fastest, 3)}
            for tree in self.trees.values():
                key = tree.label if store == "local" else f"ingest_s3_{tree.label}"
                if key in best:
                    self.figure(f"restic_{store}_ratio", tree, round(best[key]["seconds"] / fastest, 3))


def watch_dock(bench: Bench, tree: Tree, env: Mapping[str, str], devices: Sequence[Path]) -> list[float]:
    """Start ``evidence dock watch`` for ``tree``, move ``devices`` into its dock one at a time (the
    first a warm-up) and return each later device's seconds from appearing to its "ingested" line."""
    dock = bench.workdir / f"dock-{tree.label}"
    dock.mkdir()
    command = [
        sys.executable,
        "-m",
        "cli",
        "dock",
        "watch",
        str(dock),
        "--poll-seconds",
        str(WATCH_POLL_SECONDS),
    ]
    watcher = subprocess.Popen(
        command,
        cwd=tree.path,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    seen: list[str] = []

    def read() -> None:
        assert watcher.stderr is not None
        for line in watcher.stderr:
            lines.put((time.perf_counter(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait_for(pattern: str) -> float:
        deadline = time.monotonic() + WATCH_DEVICE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                when, line = lines.get(timeout=0.5)
            except queue.Empty:
                if watcher.poll() is not None:
                    break
                continue
            seen.append(line)
            if re.search(pattern, line):
                return when
        raise BenchmarkError(f"{tree.label}: dock watch never said {pattern!r}:\n" + "\n".join(seen[-20:]))

    delays = []
    try:
        wait_for(r"^watching ")
        for index, device in enumerate(devices):
            if index:
                bench.quiet()
            appeared = time.perf_counter()
            os.rename(device, dock / device.name)
            done = wait_for(rf"^device {re.escape(device.name)}: (?!docked)")
            if not re.search(rf"^device {re.escape(device.name)}: 1 ingested$", seen[-1]):
                raise BenchmarkError(f"{tree.label}: dock watch said {seen[-1]!r}")
            if index:  # the first device pays for the imports and the flow's registration
                delays.append(done - appeared)
    finally:
        if watcher.poll() is None:
            watcher.send_signal(signal.SIGINT)
            try:
                watcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait()
        reader.join(timeout=5)
    return delays


def ensure_restic(workdir: Path) -> str:
    """Debian's restic, installed as root (through the suite's one apt installer) when missing."""
    found = shutil.which("restic")
    if found:
        return found
    from tests import debian

    if os.geteuid() != 0:
        raise BenchmarkError("restic is not installed and this is not root: apt-get install restic")
    log = workdir / "restic-install.log"
    with debian.locked(debian.INSTALL_LOCK):
        if not shutil.which("restic") and not debian.install(["restic"], log, recommends=False):
            raise BenchmarkError(f"installing restic failed:\n{debian.tail(log)}")
    found = shutil.which("restic")
    if not found:
        raise BenchmarkError("restic is still missing after apt-get install restic")
    return found


def restic_version() -> str | None:
    found = shutil.which("restic")
    if not found:
        return None
    done = subprocess.run([found, "version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


# -- the command --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    redock_gib: float
    photos: int
    tiny_files: int
    large_gib: float
    large_rss_gib: float

    @property
    def default(self) -> bool:
        return self == Sizes(
            DEFAULT_REDOCK_GIB, DEFAULT_PHOTOS, DEFAULT_TINY_FILES, DEFAULT_LARGE_GIB, DEFAULT_LARGE_RSS_GIB
        )

    def stem(self) -> str:
        if self.default:
            return "dock_speed"
        sizes = f"{self.redock_gib:g}G-{self.photos}p-{self.tiny_files}t-{self.large_gib:g}G-{self.large_rss_gib:g}G"
        return f"dock_speed-{sizes}"

    def disk_needed(self) -> int:
        # the re-dock device and a copy in each tree's vault; the large files and one stored copy
        return int((3 * self.redock_gib + self.large_gib + 2 * self.large_rss_gib + 1) * GiB)


def parse_rows(text: str) -> list[str]:
    rows = [name for name in text.split(",") if name]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown rows {', '.join(unknown)}: choose from {', '.join(ROWS)}")
    return rows


QUICK = (
    "--redock-gib=0.25",
    "--redock-rounds=2",
    "--photos=50",
    "--tiny-files=500",
    "--start-runs=3",
    "--watch-devices=3",
    "--large-gib=0.25",
    "--large-rss-gib=0.5",
    "--large-rounds=2",
)
"""``--quick``: a trial of every row (options given after it still win)."""
ROWS = ("redock", "photos", "tiny", "start", "large", "restic")


def run_dock_speed(args: argparse.Namespace, workdir: Path, command: str) -> dict[str, Any]:
    from bench.small_photos import default_prefect_database, prefect_api

    sizes = Sizes(args.redock_gib, args.photos, args.tiny_files, args.large_gib, args.large_rss_gib)
    free = shutil.disk_usage(workdir).free
    if free < sizes.disk_needed():
        raise BenchmarkError(
            f"{workdir} has {free / GiB:.1f} GiB free; this run needs {sizes.disk_needed() / GiB:.1f} GiB"
        )
    before = Tree(
        "before",
        export_tree(PROJECT_ROOT, args.before, workdir / "trees" / "before"),
        f"`git archive {args.before}`",
    )
    after_path = args.after.resolve()
    after = Tree("after", after_path, describe_checkout(after_path))
    rows, stores = args.rows, args.stores
    if "restic" in rows:
        ensure_restic(workdir)  # before anything is measured: a failed install wastes no run
    with ExitStack() as stack:
        prefect = stack.enter_context(
            prefect_api(workdir, None, args.prefect_db or default_prefect_database())
        )
        rgw = None
        if "rgw" in stores and {"photos", "large", "restic"} & set(rows):
            from bench.servers import CephRgwServer

            rgw = stack.enter_context(CephRgwServer(workdir, int((2 * args.large_gib + 3) * GiB)))
        bench = Bench(
            workdir, {"before": before, "after": after}, prefect.url, rgw, args.child_timeout, args.quiet_wait
        )
        bench.prepare_trees()
        if "redock" in rows:
            bench.redock(sizes.redock_gib, args.redock_rounds)
        if "photos" in rows:
            bench.photos(sizes.photos, stores)
        if "tiny" in rows:
            bench.tiny_files(sizes.tiny_files)
        if "start" in rows:
            bench.dock_start(args.start_runs, args.watch_devices)
        if "large" in rows or "restic" in rows:
            bench.large_file(
                sizes.large_gib,
                sizes.large_rss_gib if "large" in rows else 0,
                args.large_rounds,
                stores,
                "restic" in rows,
            )
        prefect_described = prefect.describe()
    return {
        "benchmark": "the dock's speed, before and after (issue 11)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_description(PACKAGES),
        "prefect": prefect_described,
        "restic_version": restic_version() if "restic" in rows else None,
        "trees": {"before": before.source, "after": after.source},
        "sizes": asdict(sizes),
        "rows": [row.to_json() for row in summary_rows(bench.figures)],
        "figures": bench.figures,
        "samples": bench.samples,
    }


def make_photos_main(argv: Sequence[str]) -> int:
    """``make-photos COUNT DEVICE...``: each device gets COUNT camera JPEGs of its own (a seed each)."""
    from bench.small_photos import make_photo_device

    count, *devices = argv
    for seed, device in enumerate(devices):
        make_photo_device(Path(device), int(count), seed=seed + 1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["make-photos"]:
        return make_photos_main(argv[1:])
    from bench.small_photos import PREFECT_DATABASES

    parser = argparse.ArgumentParser(
        prog="python -m bench.dock_speed", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--before", default=BEFORE_REV, help=f"the commit measured as before (default {BEFORE_REV})"
    )
    parser.add_argument(
        "--after", type=Path, default=PROJECT_ROOT, help="the checkout measured as after (default: this one)"
    )
    parser.add_argument("--redock-gib", type=float, default=DEFAULT_REDOCK_GIB)
    parser.add_argument("--redock-rounds", type=int, default=DEFAULT_REDOCK_ROUNDS)
    parser.add_argument("--photos", type=int, default=DEFAULT_PHOTOS)
    parser.add_argument("--tiny-files", type=int, default=DEFAULT_TINY_FILES)
    parser.add_argument("--start-runs", type=int, default=DEFAULT_START_RUNS)
    parser.add_argument("--watch-devices", type=int, default=DEFAULT_WATCH_DEVICES)
    parser.add_argument("--large-gib", type=float, default=DEFAULT_LARGE_GIB)
    parser.add_argument(
        "--large-rss-gib", type=float, default=DEFAULT_LARGE_RSS_GIB, help="0: no RSS-growth run"
    )
    parser.add_argument("--large-rounds", type=int, default=DEFAULT_LARGE_ROUNDS)
    parser.add_argument(
        "--rows", type=parse_rows, default=list(ROWS), help=f"comma-separated: {','.join(ROWS)}"
    )
    parser.add_argument(
        "--stores", default=",".join(STORES), help="local,rgw (rgw: Ceph RGW, installed as root if missing)"
    )
    parser.add_argument(
        "--prefect-db", choices=PREFECT_DATABASES, help="default: postgres where it runs here"
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=20.0, help="seconds to wait for a quiet machine per sample"
    )
    parser.add_argument("--child-timeout", type=float, default=CHILD_TIMEOUT_SECONDS)
    parser.add_argument(
        "--workdir", type=Path, help="where trees, inputs and vaults go (default: the temp dir)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--quick", action="store_true", help="small sizes for a trial: " + " ".join(QUICK))
    args = parser.parse_args(argv)
    if args.quick:
        args = parser.parse_args([*QUICK, *argv])
    args.stores = [store for store in args.stores.split(",") if store]
    if not args.stores or set(args.stores) - set(STORES) or "local" not in args.stores:
        parser.error("--stores must be local or local,rgw")
    from bench.small_photos import new_workdir, write_results

    workdir = new_workdir(args.workdir, "evidence-bench-dock-")
    command = "python -m bench.dock_speed " + " ".join(argv)
    started = time.perf_counter()
    try:
        report = run_dock_speed(args, workdir, command.strip())
    except BenchmarkError as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stem = Sizes(args.redock_gib, args.photos, args.tiny_files, args.large_gib, args.large_rss_gib).stem()
    json_path, md_path = write_results(report, render_markdown(report), args.results, stem)
    print()
    print("\n".join(render_table([Row.from_json(row) for row in report["rows"]])))
    print(load_line(report["samples"]))
    print(f"\nwritten: {json_path}, {md_path} ({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
