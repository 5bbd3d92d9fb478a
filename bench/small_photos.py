"""Many small photos through the Prefect flow ``ingest-device``: ``python -m bench.small_photos``.

What the issue asks: files per second through the Prefect flow, 1,000 photos. One device folder holds
1,000 real JPEGs with camera EXIF and GPS (``flows.simulate.make_jpeg``, random pixels, 130-300 KB),
and each run ingests all of them into a fresh vault:

- ``flow``: the real flow ``flows.ingest_flow.ingest_device`` (a Prefect task per file, a
  ``ThreadPoolTaskRunner`` of ``ingest_workers`` threads), with ``ingest_workers`` 2 and 4, against
  the embedded local store and against S3 (moto's server, a separate process, fresh per run);
- ``plain``: the same steps as plain calls, no Prefect, one file after another
  (``tests.station.Station.ingest``), so Prefect's cost per task shows; against the local store by
  default (``--plain-stores local,s3`` adds S3, about 90 s more).

Every run reports to one Prefect server started for the benchmark (``prefect server start`` on
127.0.0.1, on a throwaway PostgreSQL as the site runs it where PostgreSQL can run here, else SQLite;
``--prefect-db``), in processes of their own: start-up is not timed, and their CPU is counted
separately. Every run is a fresh process (``python -m bench.small_photos measure ...``) that sets up a
station (keys, vault initialised), warms up with a one-photo device into a vault of its own (the first
flow run in a process pays for the Prefect client and the flow's registration; a dock watcher pays
that once), then times the ingest alone and afterwards counts the vault (``vault_census``): every file
must be exactly one item with one manifest version, and every stored object must belong to one, or
the benchmark fails.

This module also holds what ``bench.concurrent_docks`` shares with it: the servers, the child
processes, the census, CPU accounting and the report helpers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bench.run_all import ingest_settings, machine_busy_seconds, machine_description
from bench.servers import BUCKET, REGION, BenchmarkError, MotoS3Server, ServerProcess, free_port

PACKAGES = ("prefect", "boto3", "moto", "cryptography", "pillow")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MB = 1_000_000
MiB = 1024 * 1024
GiB = 1024 * MiB

DEFAULT_PHOTOS = 1000
QUICK_PHOTOS = 100
WORKER_COUNTS = (2, 4)
STORES = ("local", "s3")
# Prefect's cost shows best where no S3 server competes for the CPUs; the plain path against moto adds
# about 90 s to a run that should stay under 5 minutes (--plain-stores local,s3 runs it).
PLAIN_STORES = ("local",)
# Random pixels do not compress: 1024x768 would be ~600 KB, more than a phone's 1024x768 photo. These
# sizes give 130-300 KB files, the size of a downscaled scene photo, with a real decode for thumbnails.
PHOTO_SIZES = ((512, 384), (576, 432), (640, 480), (704, 528))
DEVICE_SERIAL = "BWC-BENCH01"
OFFICER = "PC-1"
WARM_UP_SERIAL = "BWC-WARMUP"

CHILD_TIMEOUT_SECONDS = 1800.0
QUIET_CORES = 0.25
DEFAULT_QUIET_WAIT = 20.0

T = TypeVar("T")


# -- inputs -------------------------------------------------------------------------------------------


def make_photos(folder: Path, count: int, *, serial: str, seed: int) -> list[Path]:
    """``count`` distinct camera JPEGs (EXIF: make, model, body serial, capture time; GPS) named as a
    camera names them, captured 20 s apart while walking about central London."""
    from flows.simulate import DEFAULT_TAKEN, make_jpeg

    rng = random.Random(f"photos:{seed}")
    latitude, longitude = 51.501, -0.1419
    paths = []
    for index in range(count):
        latitude += rng.uniform(-0.0005, 0.0005)
        longitude += rng.uniform(-0.0005, 0.0005)
        paths.append(
            make_jpeg(
                folder / f"IMG_{index + 1:04d}.JPG",
                size=PHOTO_SIZES[index % len(PHOTO_SIZES)],
                serial=serial,
                taken=DEFAULT_TAKEN + timedelta(seconds=20 * index),
                gps=(round(latitude, 6), round(longitude, 6)),
                seed=10_000_000 * (seed + 1) + index,
            )
        )
    return paths


def make_photo_device(root: Path, photos: int, *, seed: int = 0) -> Path:
    """A docked camera holding only photos: ``root/DCIM/100BWC01/IMG_0001.JPG`` ..."""
    from flows.simulate import DEVICE_FOLDER

    make_photos(root / DEVICE_FOLDER, photos, serial=root.name, seed=seed)
    return root


def device_files(device_dirs: Sequence[Path]) -> list[Path]:
    return sorted(path for device in device_dirs for path in device.rglob("*") if path.is_file())


def total_bytes(paths: Sequence[Path]) -> int:
    return sum(path.stat().st_size for path in paths)


def warm_page_cache(paths: Sequence[Path]) -> None:
    """Every run starts from the same state: the inputs in memory, as a device read twice would be."""
    for path in paths:
        with path.open("rb", buffering=0) as source:
            while source.read(8 * MiB):
                pass


# -- the count that proves nothing was lost -----------------------------------------------------------


@dataclass(frozen=True)
class Census:
    """What the vault holds after a run, against the files on the devices."""

    files: int
    """Regular files on the devices (each must be exactly one item)."""
    items: int
    """Distinct items (manifests) in the vault."""
    manifest_versions: int
    """Manifest versions: more than ``items`` would mean an item was written twice."""
    missing: int
    """Device files with no item: lost."""
    unexpected: int
    """Items that match no device file."""
    object_versions: int
    """Versions of content and thumbnail objects stored."""
    unreferenced_objects: int
    """Object versions no manifest names: a second upload of a file, or debris of a failed one."""
    missing_objects: int
    """Object versions a manifest names that the store does not hold."""

    @property
    def ok(self) -> bool:
        return (
            self.files == self.items == self.manifest_versions
            and self.missing == self.unexpected == self.unreferenced_objects == self.missing_objects == 0
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def file_sha256(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def vault_census(vault: Any, files: Sequence[Path]) -> Census:
    """Count ``vault`` against ``files``: evidence ids are keyed hashes of the content, so each file's
    id is known without trusting any report of the run."""
    from evidence.layout import ITEMS_PREFIX, OBJECTS_PREFIX

    expected = {vault.evidence_id_for(file_sha256(path)) for path in files}
    manifests = [
        info
        for info in vault.store.list_versions(ITEMS_PREFIX)
        if info.key.endswith("/manifest.json") and not info.is_delete_marker
    ]
    items = {info.key.split("/")[1] for info in manifests}
    referenced: set[tuple[str, str]] = set()
    for evidence_id in items:
        manifest = vault.manifest(evidence_id)
        for stored in (manifest.content, manifest.thumbnail):
            if stored is not None:
                referenced.add((stored.key, stored.version_id))
    objects = {
        (info.key, info.version_id)
        for info in vault.store.list_versions(OBJECTS_PREFIX)
        if not info.is_delete_marker
    }
    return Census(
        files=len(files),
        items=len(items),
        manifest_versions=len(manifests),
        missing=len(expected - items),
        unexpected=len(items - expected),
        object_versions=len(objects),
        unreferenced_objects=len(objects - referenced),
        missing_objects=len(referenced - objects),
    )


# -- CPU accounting from /proc ------------------------------------------------------------------------


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def process_tree_cpu_seconds(root_pid: int) -> float | None:
    """User + system CPU of ``root_pid`` and every live descendant (a server may run workers), plus
    the children it has already waited for. None if the process is gone."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        own = int(fields[11]) + int(fields[12])  # utime, stime
        ticks[pid] = own + (int(fields[13]) + int(fields[14]) if pid == root_pid else 0)  # + cutime, cstime
    if root_pid not in ticks:
        return None
    total, frontier = 0, [root_pid]
    while frontier:
        pid = frontier.pop()
        total += ticks.get(pid, 0)
        frontier.extend(child for child, parent in parents.items() if parent == pid)
    return total / _clock_ticks()


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib() -> int:
    """``VmHWM`` of this process (``ru_maxrss`` can carry the parent's peak across exec)."""
    with suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclass(frozen=True)
class Timing:
    seconds: float
    cpu_seconds: float
    """This process, every thread."""
    server_cpu_seconds: dict[str, float]
    """Each watched server's process tree (``prefect``, ``s3``) during the operation."""
    others_cpu_seconds: float | None
    """CPU the rest of the machine used meanwhile: near 0 is a clean sample."""


def timed(operation: Callable[[], T], watched: Mapping[str, int]) -> tuple[T, Timing]:
    """Run ``operation`` once: its wall time, this process's CPU, the watched servers' CPU, and what
    everyone else on the (shared) machine used meanwhile."""

    def servers() -> dict[str, float]:
        return {
            name: cpu for name, pid in watched.items() if (cpu := process_tree_cpu_seconds(pid)) is not None
        }

    busy_before, servers_before, cpu_before = machine_busy_seconds(), servers(), own_cpu_seconds()
    started = time.perf_counter()
    result = operation()
    seconds = time.perf_counter() - started
    cpu, servers_after, busy_after = own_cpu_seconds() - cpu_before, servers(), machine_busy_seconds()
    server_cpu = {
        name: round(servers_after[name] - servers_before[name], 3)
        for name in servers_before.keys() & servers_after.keys()
    }
    others = None
    if busy_before is not None and busy_after is not None:
        others = max(0.0, busy_after - busy_before - cpu - sum(server_cpu.values()))
    return result, Timing(
        seconds=seconds,
        cpu_seconds=round(cpu, 3),
        server_cpu_seconds=server_cpu,
        others_cpu_seconds=None if others is None else round(others, 3),
    )


def wait_for_quiet(max_seconds: float, log: Callable[[str], None] = print) -> None:
    """The machine is shared: wait (up to ``max_seconds``) until other processes use under a quarter
    of a core, so a run measures this code rather than someone's test suite."""
    deadline = time.monotonic() + max_seconds
    announced = False
    while max_seconds > 0:
        before = machine_busy_seconds()
        time.sleep(1.0)
        after = machine_busy_seconds()
        if before is None or after is None or after - before < QUIET_CORES:
            return
        if time.monotonic() >= deadline:
            log(f"  (machine still busy: {after - before:.2f} cores used by others; measuring anyway)")
            return
        if not announced:
            log(f"  (waiting for the machine to go quiet: {after - before:.2f} cores used by others)")
            announced = True


# -- one measured run (the child side) ----------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One timed run as its process saw it."""

    name: str
    store: str
    files: int
    bytes: int
    seconds: float
    cpu_seconds: float
    prefect_server_cpu_seconds: float | None
    """Prefect's API server process tree (None when the API was not started by the benchmark)."""
    prefect_db_cpu_seconds: float | None
    """PostgreSQL behind it, if any (SQLite runs inside the server process)."""
    s3_server_cpu_seconds: float | None
    others_cpu_seconds: float | None
    peak_rss_kib: int
    counts: dict[str, int]
    """Outcomes the run's own reports gave, summed over devices."""
    census: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    prefect_refused_requests: int | None = None
    """Requests Prefect's server answered 503 (database busy) during the run; each makes a client
    sleep 2 s, 4 s, ... (with jitter) before trying again. None: not counted."""

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / MB

    @property
    def prefect_cpu_seconds(self) -> float | None:
        """Prefect's server and its database together."""
        if self.prefect_server_cpu_seconds is None:
            return None
        return self.prefect_server_cpu_seconds + (self.prefect_db_cpu_seconds or 0.0)

    @property
    def cpu_ms_per_file(self) -> float:
        """Every process this run kept busy (ingest, Prefect and its database, S3 server), per file."""
        total = self.cpu_seconds + (self.prefect_cpu_seconds or 0.0) + (self.s3_server_cpu_seconds or 0.0)
        return 1000 * total / self.files

    @property
    def verified(self) -> bool:
        return bool(self.census.get("ok"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "files_per_s": round(self.files_per_s, 2),
            "mb_per_s": round(self.mb_per_s, 2),
            "cpu_ms_per_file": round(self.cpu_ms_per_file, 2),
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Measurement:
        names = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in record.items() if key in names})


def measured(
    name: str,
    store: str,
    *,
    vault: Any,
    files: Sequence[Path],
    counts: Mapping[str, int],
    timing: Timing,
    settings: Mapping[str, Any],
) -> Measurement:
    census = vault_census(vault, files)
    return Measurement(
        name=name,
        store=store,
        files=len(files),
        bytes=total_bytes(files),
        seconds=round(timing.seconds, 4),
        cpu_seconds=timing.cpu_seconds,
        prefect_server_cpu_seconds=timing.server_cpu_seconds.get("prefect"),
        prefect_db_cpu_seconds=timing.server_cpu_seconds.get("prefect-db"),
        s3_server_cpu_seconds=timing.server_cpu_seconds.get("s3"),
        others_cpu_seconds=timing.others_cpu_seconds,
        peak_rss_kib=peak_rss_kib(),
        counts=dict(counts),
        census=census.to_json(),
        settings=dict(settings),
    )


def add_counts(total: dict[str, int], counts: Mapping[str, int]) -> None:
    for status, count in counts.items():
        total[status] = total.get(status, 0) + count


def prepare_station(station_dir: Path, vault_url: str, *, workers: int, officers: Mapping[str, str]) -> Any:
    """A station with keys and an initialised vault, its devices registered, and this process's
    environment pointing at it: the flow and ``run_ingest`` read their settings from there, as a
    station's service does."""
    from tests.station import make_station

    station_dir.mkdir(parents=True, exist_ok=True)
    registry = "".join(
        f'[devices."{serial}"]\nofficer = "{officer}"\ntype = "body-worn"\n\n'
        for serial, officer in officers.items()
    )
    (station_dir / "devices.toml").write_text(registry, encoding="utf-8")
    station = make_station(station_dir, vault_url=vault_url, ingest_workers=workers)
    os.environ.update(
        {
            "EVIDENCE_DATA_DIR": str(station_dir),
            "EVIDENCE_VAULT_URL": vault_url,
            "EVIDENCE_SETTLE_SECONDS": "0",
            "EVIDENCE_INGEST_WORKERS": str(workers),
        }
    )
    return station


def warm_up(station_dir: Path, vault_url: str, *, through_prefect: bool) -> None:
    """One photo through the same path into a vault of its own (never the measured one): imports,
    the Prefect client, the flow's registration and the store's client are then paid for."""
    from flows.simulate import DEVICE_FOLDER, make_jpeg
    from tests.station import make_station

    warm_dir = station_dir / "warm-up"
    warm_url = (
        (warm_dir / "vault").resolve().as_uri() if vault_url.startswith("file:") else vault_url + "-warm-up"
    )
    device = station_dir / "warm-up-device" / WARM_UP_SERIAL
    make_jpeg(device / DEVICE_FOLDER / "IMG_0001.JPG", seed=987_654_321)
    station = make_station(warm_dir, vault_url=warm_url)
    if through_prefect:
        from flows.ingest_flow import ingest_device
        from flows.run import quiet_prefect

        quiet_prefect()
        ingest_device(str(device), settings_overrides={"data_dir": str(warm_dir), "vault_url": warm_url})
    else:
        station.ingest(device, serial=None, officer=None)


def run_name(path: str, workers: int | None) -> str:
    return f"flow, {workers} workers" if path == "flow" else "plain, no Prefect"


def measure_photos(
    path: str,
    device: Path,
    station_dir: Path,
    vault_url: str,
    *,
    store: str,
    workers: int,
    watched: Mapping[str, int],
    prefect_database: str = "given",
) -> Measurement:
    """Child side: ingest ``device`` once by ``path`` (``flow`` or ``plain``), timed, then count."""
    station = prepare_station(station_dir, vault_url, workers=workers, officers={device.name: OFFICER})
    warm_up(station_dir, vault_url, through_prefect=path == "flow")
    files = device_files([device])
    warm_page_cache(files)
    if path == "flow":
        from flows.ingest_flow import ingest_device

        report, timing = timed(lambda: ingest_device(str(device)), watched)
    else:
        report, timing = timed(lambda: station.ingest(device, serial=None, officer=None), watched)
    return measured(
        run_name(path, workers if path == "flow" else None),
        store,
        vault=station.vault,
        files=files,
        counts=report.counts,
        timing=timing,
        settings={
            "path": path,
            "ingest_workers": workers if path == "flow" else 1,
            "prefect_database": prefect_database if path == "flow" else None,
        },
    )


# -- the servers (the parent side) --------------------------------------------------------------------


def clean_environment(workdir: Path) -> dict[str, str]:
    """This process's environment without station, AWS or Prefect settings (a real account, a local
    evidence.toml or a configured Prefect server must not leak in), plus moto's dummy credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVIDENCE_", "AWS_", "PREFECT_"))}
    return env | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
        "PREFECT_HOME": str(workdir / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(PROJECT_ROOT),
    }


class PrefectServer(ServerProcess):
    """``prefect server start`` as a station or the site runs it (services on, no UI), on SQLite in
    its home directory or on the database ``database_url`` names."""

    name = "prefect-server"
    start_seconds = 120.0

    def __init__(self, workdir: Path, database_url: str | None = None) -> None:
        super().__init__(workdir, clean_environment(workdir))
        self.database_url = database_url

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def command(self) -> list[str]:
        prefect = str(Path(sys.executable).with_name("prefect"))
        return [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port), "--no-ui"]

    def environment(self) -> dict[str, str]:
        # every request refused because the database was busy is logged, so runs can count them
        env = super().environment() | {"PREFECT_API_LOG_RETRYABLE_ERRORS": "true"}
        if self.database_url is not None:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        return env

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False


def postgres_unavailable() -> str | None:
    """Why a throwaway PostgreSQL cannot be run here, or None if it can (its binaries, and root to
    run it as the ``postgres`` user: PostgreSQL refuses to run as root)."""
    if not all(shutil.which(tool) for tool in ("initdb", "pg_ctl", "runuser")):
        return "PostgreSQL's initdb and pg_ctl (and runuser) are not installed"
    if os.geteuid() != 0:
        return "running PostgreSQL as the postgres user needs root"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no postgres user"
    return None


@contextmanager
def throwaway_postgres() -> Iterator[tuple[str, int]]:
    """A PostgreSQL cluster for Prefect's state, on 127.0.0.1 only, deleted afterwards: its
    SQLAlchemy URL and the postmaster's pid. Trust authentication: nothing but this run can reach it
    and it holds nothing but run history."""
    reason = postgres_unavailable()
    if reason is not None:
        raise BenchmarkError(f"cannot run PostgreSQL for Prefect: {reason} (use --prefect-db sqlite)")
    # not under ``workdir``: mkdtemp makes it private to root, and the cluster runs as postgres
    base = Path(tempfile.mkdtemp(prefix="evidence-bench-prefect-pg-"))
    base.chmod(0o755)
    data = base / "data"
    shutil.chown(base, "postgres")
    port = free_port()

    def as_postgres(*command: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise BenchmarkError(f"{command[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    try:
        as_postgres("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c max_connections=200"
        as_postgres("pg_ctl", "-D", str(data), "-o", options, "-w", "-l", str(base / "log"), "start")
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", postmaster
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "pg_ctl", "-D", str(data), "-m", "fast", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)


PREFECT_DATABASES = ("postgres", "sqlite")
RETRYABLE_ERROR_LOG = "Encountered retryable exception in request"  # prefect/server/api/server.py


@dataclass(frozen=True)
class PrefectApi:
    """Where runs report, and which processes serve it (their CPU is counted)."""

    url: str
    database: str
    """``postgres``, ``sqlite`` or ``given`` (an API the caller started: not measured)."""
    watched: dict[str, int] = field(default_factory=dict)
    log_path: Path | None = None

    def refused_requests(self) -> int | None:
        """Requests the server has answered 503 so far (a database error a client retries after
        backing off), from its log; None for an API this benchmark did not start."""
        if self.log_path is None:
            return None
        try:
            return self.log_path.read_text(errors="replace").count(RETRYABLE_ERROR_LOG)
        except OSError:
            return None

    def describe(self) -> str:
        if self.database == "given":
            return "an API given by the caller (its CPU not measured)"
        backing = "PostgreSQL 127.0.0.1" if self.database == "postgres" else "SQLite"
        return f"`prefect server start` on {backing} (services on, no UI), processes of their own"


def default_prefect_database() -> str:
    """PostgreSQL, as the site runs Prefect (infra/compose.yaml), where it can run here."""
    return "postgres" if postgres_unavailable() is None else "sqlite"


@contextmanager
def prefect_api(workdir: Path, api_url: str | None = None, database: str = "sqlite") -> Iterator[PrefectApi]:
    """The Prefect API every run reports to: ``api_url`` if given, else a server started here (on
    ``database``) and stopped afterwards."""
    if api_url is not None:
        yield PrefectApi(api_url, "given")
        return
    with ExitStack() as stack:
        watched: dict[str, int] = {}
        database_url = None
        if database == "postgres":
            database_url, watched["prefect-db"] = stack.enter_context(throwaway_postgres())
        server = stack.enter_context(PrefectServer(workdir, database_url))
        assert isinstance(server, PrefectServer)
        watched["prefect"] = server.pid
        yield PrefectApi(server.api_url, database, watched, server.log_path)


@contextmanager
def store_for_run(store: str, workdir: Path, run_dir: Path) -> Iterator[tuple[str, MotoS3Server | None]]:
    """A fresh vault URL for one run (and, for S3, a fresh moto server)."""
    if store == "local":
        yield (run_dir / "station" / "vault").resolve().as_uri(), None
        return
    with MotoS3Server(workdir, clean_environment(workdir)) as server:
        assert isinstance(server, MotoS3Server)
        yield f"s3://{BUCKET}/{run_dir.name}", server


def run_child(
    module: str,
    arguments: Sequence[str],
    *,
    workdir: Path,
    prefect: PrefectApi,
    s3: MotoS3Server | None,
) -> Measurement:
    """``python -m MODULE measure ...`` in a fresh process; its result comes back through a file.
    Fails if the vault does not hold every device file exactly once."""
    result = workdir / f"result-{uuid.uuid4().hex[:8]}.json"
    log = result.with_suffix(".log")
    env = clean_environment(workdir) | {"PREFECT_API_URL": prefect.url}
    watched = dict(prefect.watched)
    if s3 is not None:
        env["AWS_ENDPOINT_URL"] = s3.endpoint
        watched["s3"] = s3.pid
    command = [sys.executable, "-m", module, "measure", *arguments, "--result", str(result)]
    command += [f"--watch={name}={pid}" for name, pid in watched.items()]
    command += [f"--prefect-db={prefect.database}"]
    refused_before = prefect.refused_requests()
    with log.open("wb") as output:
        try:
            finished = subprocess.run(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=PROJECT_ROOT,
                env=env,
                timeout=CHILD_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise BenchmarkError(f"{module} measure did not finish in {CHILD_TIMEOUT_SECONDS:.0f} s") from err
    if finished.returncode != 0 or not result.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BenchmarkError(
            f"{module} measure {' '.join(arguments)} failed ({finished.returncode}):\n{tail}"
        )
    measurement = Measurement.from_json(json.loads(result.read_text()))
    refused_after = prefect.refused_requests()
    if refused_before is not None and refused_after is not None:
        measurement = replace(measurement, prefect_refused_requests=refused_after - refused_before)
    result.unlink()
    log.unlink()
    if not measurement.verified:
        raise BenchmarkError(
            f"{measurement.name} on {measurement.store}: the vault does not hold every file exactly once: "
            f"{measurement.census} (reports said {measurement.counts})"
        )
    return measurement


def add_measure_options(parser: argparse.ArgumentParser) -> None:
    """What every ``measure`` child takes besides its positional arguments."""
    parser.add_argument("--store", choices=STORES, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--watch", action="append", default=[], help="NAME=PID of a server to count CPU of")
    parser.add_argument("--prefect-db", default="given", help="what the Prefect API runs on (for the record)")
    parser.add_argument("--result", type=Path, required=True)


def parse_watch(values: Sequence[str]) -> dict[str, int]:
    watched = {}
    for value in values:
        name, _, pid = value.partition("=")
        watched[name] = int(pid)
    return watched


# -- the report ---------------------------------------------------------------------------------------


def row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [row(header), row(["---"] * len(header)), *(row(cells) for cells in rows)]


def optional(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def others_cores(measurement: Measurement) -> str:
    if measurement.others_cpu_seconds is None:
        return ""
    return f"{measurement.others_cpu_seconds / measurement.seconds:.2f}"


PREFECT_NOTES = (
    "`Prefect 503s`: requests Prefect's server refused while the run's process lived because its "
    "database was busy (SQLite allows one writer; `database is locked` becomes HTTP 503), counted from "
    "the server's log; the client sleeps about 2 s, then 4 s, ... before each retry. Every flow run "
    "also ends up to 1 s after its last task: Prefect's heartbeat thread sleeps in 1 s steps and the "
    "engine waits for it (`prefect/flow_engine.py`, `_send_heartbeats`)."
)


def runs_table(measurements: Sequence[Measurement]) -> list[str]:
    header = ["run", "store", "files", "MB", "seconds", "files/s", "MB/s", "ingest CPU s"]
    header += ["Prefect CPU s", "S3 server CPU s", "CPU ms per file (all)", "others' CPU (cores)"]
    header += ["Prefect 503s", "verified"]
    rows = [
        [
            m.name,
            m.store,
            str(m.files),
            f"{m.bytes / MB:.1f}",
            f"{m.seconds:.2f}",
            f"{m.files_per_s:.1f}",
            f"{m.mb_per_s:.2f}",
            f"{m.cpu_seconds:.2f}",
            optional(m.prefect_cpu_seconds),
            optional(m.s3_server_cpu_seconds),
            f"{m.cpu_ms_per_file:.1f}",
            others_cores(m),
            "" if m.prefect_refused_requests is None else str(m.prefect_refused_requests),
            "yes" if m.verified else "NO",
        ]
        for m in measurements
    ]
    return table(header, rows)


def census_line(measurements: Sequence[Measurement]) -> str:
    verified = sum(m.verified for m in measurements)
    return (
        f"Verified: {verified} of {len(measurements)} runs left every device file as exactly one item "
        "(one manifest version each) and no stored object outside a manifest; a run that did not "
        "would have stopped the benchmark."
    )


def write_results(
    report: Mapping[str, Any], markdown: str, results_dir: Path, stem: str
) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results_dir / f"{stem}.json", results_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path


def build_report(
    measurements: Sequence[Measurement],
    *,
    photos: int,
    photo_bytes: int,
    prefect: str,
    date: datetime | None = None,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for m in measurements:
        figures.setdefault(m.store, {})[m.name] = {
            "files_per_s": round(m.files_per_s, 1),
            "mb_per_s": round(m.mb_per_s, 2),
            "ms_per_file": round(1000 * m.seconds / m.files, 1),
            "cpu_ms_per_file": round(m.cpu_ms_per_file, 1),
        }
    return {
        "benchmark": "small photos through the Prefect flow",
        "date": (date or datetime.now(UTC)).isoformat(timespec="seconds"),
        "machine": machine_description(PACKAGES),
        "station_defaults": ingest_settings(),
        "photos": photos,
        "photo_bytes": photo_bytes,
        "photo_sizes": [f"{width}x{height}" for width, height in PHOTO_SIZES],
        "prefect_server": prefect,
        "figures": figures,
        "runs": [m.to_json() for m in measurements],
    }


def prefect_cost_table(measurements: Sequence[Measurement]) -> list[str]:
    """Per store: the plain path against each flow run, per file."""
    rows = []
    for store in STORES:
        plain = next((m for m in measurements if m.store == store and m.name.startswith("plain")), None)
        if plain is None:
            continue
        for flow in (m for m in measurements if m.store == store and m.name.startswith("flow")):
            rows.append(
                [
                    store,
                    flow.name,
                    f"{1000 * plain.seconds / plain.files:.1f}",
                    f"{1000 * flow.seconds / flow.files:.1f}",
                    f"{plain.cpu_ms_per_file:.1f}",
                    f"{flow.cpu_ms_per_file:.1f}",
                    f"{flow.cpu_ms_per_file - plain.cpu_ms_per_file:+.1f}",
                ]
            )
    header = ["store", "flow run", "plain wall ms/file", "flow wall ms/file", "plain CPU ms/file"]
    header += ["flow CPU ms/file", "Prefect's CPU per file (ms)"]
    return table(header, rows) if rows else []


def render_markdown(report: Mapping[str, Any]) -> str:
    measurements = [Measurement.from_json(run) for run in report["runs"]]
    machine, defaults = report["machine"], report["station_defaults"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    lines = [
        "# Small photos through the Prefect flow",
        "",
        f"Run {report['date']} by `python -m bench.small_photos`; how it measures: the module's docstring "
        "and `bench/README.md`.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB memory, "
        f"Python {machine['python']}, {machine['platform']}; {packages}.",
        "",
        f"Input: one device folder of {report['photos']:,} JPEGs with EXIF and GPS "
        f"({report['photo_bytes'] / MB:.1f} MB, {report['photo_bytes'] / report['photos'] / 1000:.0f} KB "
        f"on average; {', '.join(report['photo_sizes'])} pixels in turn), read from the page cache. Prefect: "
        f"{report['prefect_server']}. S3: moto's server, a separate process on 127.0.0.1, fresh per run. "
        f"Station defaults: part size {defaults['part_size'] // MiB} MiB, upload concurrency "
        f"{defaults['upload_concurrency']}, settle time 0 s. MB = 10^6 bytes. One sample per run.",
        "",
        "## Runs",
        "",
        *runs_table(measurements),
        "",
        census_line(measurements),
        "",
        "CPU columns: `ingest CPU s` is the measured process (all threads); `Prefect CPU s` is Prefect's "
        "server and its database, `S3 server CPU s` moto's, each a whole process tree during the timed "
        "run; `CPU ms per file (all)` adds them up. They all share the same CPUs.",
        "",
        PREFECT_NOTES,
        "",
    ]
    cost = prefect_cost_table(measurements)
    if cost:
        lines += [
            "## What Prefect costs per file",
            "",
            "The plain path ingests one file after another; the flow runs `ingest_workers` tasks at once, "
            "so wall times differ for two reasons. CPU per file (every process) does not depend on "
            "parallelism: the difference is what a Prefect task costs (task run creation, state "
            "changes and logs sent to the API, the server storing them).",
            "",
            *cost,
            "",
        ]
    return "\n".join(lines)


# -- the benchmark (the parent side) ------------------------------------------------------------------


def check_disk(workdir: Path, needed: int) -> None:
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise BenchmarkError(
            f"{workdir} has {free / GiB:.1f} GiB free; this run needs about {needed / GiB:.1f} GiB"
        )


def run_small_photos(
    workdir: Path,
    *,
    photos: int = DEFAULT_PHOTOS,
    stores: Sequence[str] = STORES,
    worker_counts: Sequence[int] = WORKER_COUNTS,
    plain_stores: Sequence[str] = PLAIN_STORES,
    prefect_api_url: str | None = None,
    prefect_database: str | None = None,
    quiet_wait: float = 0.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate ``photos`` JPEGs once, then ingest them by each path into each store; the report
    (``build_report``). ``prefect_api_url``: report to that API instead of starting a server;
    ``prefect_database``: what a started server runs on (default: PostgreSQL where it can run here)."""
    device = workdir / "devices" / DEVICE_SERIAL
    check_disk(workdir, 3 * photos * 300_000 + GiB // 2)
    log(f"generating {photos} photos ...")
    make_photo_device(device, photos)
    files = device_files([device])
    photo_bytes = total_bytes(files)
    measurements = []
    database = prefect_database or default_prefect_database()
    with prefect_api(workdir, prefect_api_url, database) as prefect:
        for store in stores:
            paths = [("flow", workers) for workers in worker_counts]
            if store in plain_stores:
                paths.append(("plain", 1))
            for number, (path, workers) in enumerate(paths):
                run_dir = workdir / f"run-{store}-{path}-{number}"
                wait_for_quiet(quiet_wait, log)
                with store_for_run(store, workdir, run_dir) as (vault_url, s3):
                    arguments = [path, str(device), str(run_dir / "station"), vault_url]
                    measurement = run_child(
                        "bench.small_photos",
                        [*arguments, f"--store={store}", f"--workers={workers}"],
                        workdir=workdir,
                        prefect=prefect,
                        s3=s3,
                    )
                shutil.rmtree(run_dir, ignore_errors=True)
                measurements.append(measurement)
                log(
                    f"  {measurement.name:<18} {store:<5}: {measurement.seconds:7.2f} s  "
                    f"{measurement.files_per_s:6.1f} files/s  {measurement.mb_per_s:6.2f} MB/s  "
                    f"others' CPU {others_cores(measurement) or '?'} cores"
                )
    return build_report(measurements, photos=photos, photo_bytes=photo_bytes, prefect=prefect.describe())


def results_stem(photos: int) -> str:
    return "small_photos" if photos == DEFAULT_PHOTOS else f"small_photos-{photos}"


def measure_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.small_photos measure")
    parser.add_argument("path", choices=("flow", "plain"))
    parser.add_argument("device", type=Path)
    parser.add_argument("station", type=Path, help="station directory to create")
    parser.add_argument("vault_url")
    add_measure_options(parser)
    args = parser.parse_args(argv)
    measurement = measure_photos(
        args.path,
        args.device,
        args.station,
        args.vault_url,
        store=args.store,
        workers=args.workers,
        watched=parse_watch(args.watch),
        prefect_database=args.prefect_db,
    )
    args.result.write_text(json.dumps(measurement.to_json()))
    return 0


def add_run_options(parser: argparse.ArgumentParser, quiet_wait: float) -> None:
    """Options both benchmarks take."""
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated: local,s3")
    parser.add_argument(
        "--prefect-db",
        choices=PREFECT_DATABASES,
        help="what Prefect's server runs on (default: postgres where it can run here, else sqlite)",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=quiet_wait, help="seconds to wait for a quiet machine"
    )
    parser.add_argument("--workdir", type=Path, help="where inputs and vaults go (default: the temp dir)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)


def parse_stores(parser: argparse.ArgumentParser, text: str) -> list[str]:
    stores = [store for store in text.split(",") if store]
    if not stores or any(store not in STORES for store in stores):
        parser.error(f"--stores must be a comma-separated list of {', '.join(STORES)}")
    return stores


def new_workdir(base: Path | None, prefix: str) -> Path:
    base = base or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.small_photos [--quick]``; ``measure ...`` is one run, in the child."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["measure"]:
        return measure_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m bench.small_photos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--photos", type=int, default=DEFAULT_PHOTOS)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PHOTOS} photos: a smoke run")
    parser.add_argument(
        "--workers", default=",".join(map(str, WORKER_COUNTS)), help="ingest_workers per flow run"
    )
    parser.add_argument(
        "--plain-stores",
        default=",".join(PLAIN_STORES),
        help="stores the path without Prefect runs against (default local; '' for none, local,s3 for both)",
    )
    add_run_options(parser, DEFAULT_QUIET_WAIT)
    args = parser.parse_args(argv)
    photos = QUICK_PHOTOS if args.quick else args.photos
    stores = parse_stores(parser, args.stores)
    if photos < 1:
        parser.error("--photos must be at least 1")
    workdir = new_workdir(args.workdir, "evidence-bench-photos-")
    started = time.perf_counter()
    try:
        report = run_small_photos(
            workdir,
            photos=photos,
            stores=stores,
            worker_counts=[int(n) for n in args.workers.split(",") if n],
            plain_stores=[store for store in args.plain_stores.split(",") if store],
            prefect_database=args.prefect_db,
            quiet_wait=args.quiet_wait,
        )
    except BenchmarkError as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    markdown = render_markdown(report)
    json_path, md_path = write_results(report, markdown, args.results, results_stem(photos))
    measurements = [Measurement.from_json(run) for run in report["runs"]]
    print()
    print("\n".join([*runs_table(measurements), "", *prefect_cost_table(measurements)]))
    print(f"\nwritten: {json_path}, {md_path} ({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
