"""One large file through one path, measured in a process of its own.

``python -m bench.large_file MODE FILE [options]`` does one operation on FILE and prints one JSON line:
wall seconds, bytes, CPU seconds, and this process's peak RSS. Peak RSS is a high-water mark over a
process's whole life, so a fresh process per operation is what makes the figure belong to that
operation alone; the S3 endpoint is a separate process (``bench.run_all`` runs moto's server) and its
memory is not counted.

Modes:

- ``one-pass-limit``: SHA-256 (hashlib) and AES-256-GCM (cryptography) over 1 MiB reads, nothing else.
  The one-pass limit the issue names: what reading, hashing and encrypting alone cost, in one thread.
- ``boto3-upload``: ``boto3.client("s3").upload_file`` with the default ``TransferConfig``: plain S3.
- ``ingest-s3``: the project's ingest (``flows.ingest.ingest_file``) of a device folder holding only
  FILE, into ``s3://BUCKET/<fresh prefix>`` on ``AWS_ENDPOINT_URL``: metadata sniffing, one read pass of
  hash + encrypt + multipart upload, commit, manifest, verification, custody event, catalog entry.
- ``ingest-local``: the same into the embedded local store (a ``file://`` vault under ``--workdir``).

For the ingest modes the set-up (keys, vault initialisation) is not timed; the device scan and
``ingest_file`` are. Their time is also split into phases by wrapping the functions named in
``instrumented`` for the duration of the run, and S3 calls are timed through botocore's event hooks
(``--no-phases`` turns both off).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
CHUNK_SIZE = MiB
MODES = ("one-pass-limit", "boto3-upload", "ingest-s3", "ingest-local")
S3_MODES = ("boto3-upload", "ingest-s3")
INGEST_MODES = ("ingest-s3", "ingest-local")
BENCH_DEVICE_SERIAL = "BENCH-01"


@dataclass(frozen=True)
class Measurement:
    """One operation on one file, as the child process saw it."""

    mode: str
    size: int
    seconds: float
    cpu_seconds: float
    """User + system CPU of the whole process (every thread) during the timed operation."""
    main_thread_cpu_seconds: float
    peak_rss_kib: int
    """Peak RSS of the process at the end (``VmHWM``, see ``_peak_rss_kib``), imports and set-up included."""
    setup_rss_kib: int
    """Peak RSS just before the timed operation: what imports and set-up alone needed."""
    ru_maxrss_kib: int
    """``getrusage(RUSAGE_SELF).ru_maxrss`` at the end, for the record (can include the parent's peak)."""
    status: str | None = None
    """Ingest outcome (``ingested`` proves a new item was stored, not found as a duplicate)."""
    phases: dict[str, float] = field(default_factory=dict)
    """Exclusive wall seconds per ingest phase (see ``PhaseClock``)."""
    phase_cpu: dict[str, float] = field(default_factory=dict)
    """Exclusive CPU seconds of the main thread per ingest phase."""
    s3_calls: dict[str, dict[str, float]] = field(default_factory=dict)
    """S3 modes: per API operation, the number of calls and their wall and CPU seconds summed over
    the threads that made them (parts go up several at a time, so the sums can exceed ``seconds``)."""

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"mb_per_s": round(self.mb_per_s, 1)}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Measurement:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in record.items() if k in names})


# -- the operations -----------------------------------------------------------------------------------


def one_pass_limit(path: Path) -> str:
    """Read, hash and encrypt ``path`` as cheaply as Python can: the ceiling for a one-pass ingest."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    digest = hashlib.sha256()
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    index = 0
    with path.open("rb", buffering=0) as source:
        while chunk := source.read(CHUNK_SIZE):
            digest.update(chunk)
            aead.encrypt(index.to_bytes(12, "big"), chunk, None)
            index += 1
    return digest.hexdigest()


def prepare_boto3_upload(path: Path, bucket: str, clock: PhaseClock | None) -> Callable[[], None]:
    """A client made the plain way (endpoint and credentials from the environment) and, timed, its
    ``upload_file`` with the default ``TransferConfig``: what storing the file costs without us."""
    import boto3

    client = boto3.client("s3")
    if clock is not None:
        clock.watch_s3_calls(client)
    key = f"bench/{uuid.uuid4().hex}"
    return lambda: client.upload_file(str(path), bucket, key)


class PhaseClock:
    """Exclusive wall and CPU time per phase of one ingest. A timed call nested in another counts for
    the inner phase only, so the phases never add up to more than the whole; what is left over is
    reading the file and glue code. CPU is the calling thread's: wall minus CPU is time spent waiting
    (for an upload slot, the server, the disk, or a core)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.s3_calls: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._nesting = threading.local()

    def timed(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            stack = self._stack()
            stack.append([0.0, 0.0])  # wall and CPU time of timed calls nested in this one
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed, elapsed_cpu = time.perf_counter() - start, time.thread_time() - start_cpu
                nested, nested_cpu = stack.pop()
                if stack:
                    stack[-1][0] += elapsed
                    stack[-1][1] += elapsed_cpu
                self.add(phase, elapsed - nested, elapsed_cpu - nested_cpu)

        return run

    def watch_s3_calls(self, client: Any) -> None:
        """Time every S3 call ``client`` makes, on whichever thread makes it (parts go up on the
        upload threads): count, wall and that thread's CPU seconds per operation, from parameter
        checks to the parsed response, so signing and sending the body are included."""
        started = threading.local()

        def start(model: Any, **_: Any) -> None:
            started.call = (model.name, time.perf_counter(), time.thread_time())

        def finish(**_: Any) -> None:
            name, wall, cpu = started.call
            with self._lock:
                call = self.s3_calls.setdefault(name, {"count": 0, "seconds": 0.0, "cpu_seconds": 0.0})
                call["count"] += 1
                call["seconds"] += time.perf_counter() - wall
                call["cpu_seconds"] += time.thread_time() - cpu

        events = client.meta.events
        events.register("before-parameter-build.s3", start)
        events.register("after-call.s3", finish)
        events.register("after-call-error.s3", finish)

    def add(self, phase: str, seconds: float, cpu_seconds: float = 0.0) -> None:
        with self._lock:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
            self.cpu_seconds[phase] = self.cpu_seconds.get(phase, 0.0) + cpu_seconds

    def _stack(self) -> list[list[float]]:
        if not hasattr(self._nesting, "stack"):
            self._nesting.stack = []
        stack: list[list[float]] = self._nesting.stack
        return stack


def _patch(patches: ExitStack, owner: object, name: str, replacement: object) -> None:
    """Replace ``owner.name`` until ``patches`` closes: a class or module attribute is put back, an
    instance attribute (shadowing the class's method) is removed again."""
    own = vars(owner)
    if name in own:
        patches.callback(setattr, owner, name, own[name])
    else:
        patches.callback(delattr, owner, name)
    setattr(owner, name, replacement)


@contextmanager
def instrumented(vault: Any, clock: PhaseClock) -> Iterator[None]:
    """Time the phases of ``ingest_file`` without changing what it does."""
    import flows.ingest
    from evidence import stream
    from storage.vault import Vault

    with ExitStack() as patches:
        for module_function, phase in (
            ("extract_media_info", "metadata"),
            ("make_thumbnail", "thumbnail"),
            ("note_item", "catalog"),
        ):
            original = getattr(flows.ingest, module_function)
            _patch(patches, flows.ingest, module_function, clock.timed(phase, original))
        for method in ("update", "finalize"):
            original = vars(stream.StreamEncryptor)[method]
            _patch(patches, stream.StreamEncryptor, method, clock.timed("hash + encrypt", original))
        _patch(patches, Vault, "verify_stored", clock.timed("verify", vars(Vault)["verify_stored"]))
        _patch(patches, Vault, "record_ingest", clock.timed("custody event", vars(Vault)["record_ingest"]))
        store = vault.store
        _patch(patches, store, "put_bytes", clock.timed("small writes", store.put_bytes))
        begin_upload = store.begin_upload

        def begin_timed_upload(*args: Any, **kwargs: Any) -> Any:
            upload = begin_upload(*args, **kwargs)
            upload.write = clock.timed("upload write", upload.write)
            upload.commit = clock.timed("upload commit", upload.commit)
            return upload

        _patch(patches, store, "begin_upload", begin_timed_upload)
        client = getattr(store, "client", None)
        if client is not None:
            clock.watch_s3_calls(client)
        yield


def prepare_ingest(
    path: Path, vault_url: str, data_dir: Path, clock: PhaseClock | None, **settings: Any
) -> Callable[[], str]:
    """Set up a station (keys, initialised vault) and return the timed part: scan and ingest."""
    from evidence.device import scan_device
    from flows.ingest import ingest_file, resolve_device
    from tests.station import make_station

    station = make_station(data_dir, vault_url=vault_url, **settings)
    device_dir = path.parent
    context = resolve_device(station.settings, device_dir, serial=BENCH_DEVICE_SERIAL, officer="PC-1")

    def ingest() -> str:
        started, started_cpu = time.perf_counter(), time.thread_time()
        scan = scan_device(device_dir, settle_seconds=0)
        if clock is not None:
            clock.add("scan", time.perf_counter() - started, time.thread_time() - started_cpu)
        if [item.path.name for item in scan.files] != [path.name] or scan.rejected or scan.deferred:
            raise SystemExit(f"{device_dir} must hold only {path.name}: the benchmark ingests one file")
        if clock is None:
            return ingest_file(station.vault, scan.files[0], context, station.catalog).status
        with instrumented(station.vault, clock):
            return ingest_file(station.vault, scan.files[0], context, station.catalog).status

    return ingest


# -- one measured operation -------------------------------------------------------------------------


def _ru_maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _peak_rss_kib() -> int:
    """This process's peak resident set size: ``VmHWM``, the high-water mark of its own address space.
    ``ru_maxrss`` is not used where ``VmHWM`` exists because Linux carries the parent's peak into it
    across a vfork + exec (as Python's subprocess does): a child of a 300 MiB parent reports 300 MiB."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return _ru_maxrss_kib()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    mode: str,
    path: Path,
    *,
    bucket: str | None = None,
    workdir: Path | None = None,
    phases: bool = True,
    profile_to: Path | None = None,
    **settings: Any,
) -> Measurement:
    """Set up ``mode``, then time it once over ``path``. ``settings`` go to the station (ingest modes)."""
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode in S3_MODES and not bucket:
        raise SystemExit(f"{mode} needs --bucket (and AWS_ENDPOINT_URL naming the S3 endpoint)")
    size = path.stat().st_size
    clock = PhaseClock() if phases and mode != "one-pass-limit" else None
    with ExitStack() as cleanup:
        operation: Callable[[], str | None]
        if mode == "one-pass-limit":

            def operation() -> None:
                one_pass_limit(path)

        elif mode == "boto3-upload":
            assert bucket is not None
            operation = prepare_boto3_upload(path, bucket, clock)
        else:
            station_dir = Path(tempfile.mkdtemp(prefix="bench-station-", dir=workdir))
            cleanup.callback(shutil.rmtree, station_dir, ignore_errors=True)
            if mode == "ingest-s3":
                vault_url = f"s3://{bucket}/bench-{uuid.uuid4().hex[:12]}"  # fresh: never a duplicate
            else:
                vault_url = (station_dir / "vault").resolve().as_uri()
            operation = prepare_ingest(path, vault_url, station_dir, clock, **settings)

        setup_rss = _peak_rss_kib()
        profiler = cProfile.Profile() if profile_to is not None else None
        cpu_before, main_cpu_before = _cpu_seconds(), time.thread_time()
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        status = operation()
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
        main_cpu = time.thread_time() - main_cpu_before
        if profiler is not None and profile_to is not None:
            profiler.dump_stats(profile_to)
    return Measurement(
        mode=mode,
        size=size,
        seconds=seconds,
        cpu_seconds=round(cpu, 3),
        main_thread_cpu_seconds=round(main_cpu, 3),
        peak_rss_kib=_peak_rss_kib(),
        setup_rss_kib=setup_rss,
        ru_maxrss_kib=_ru_maxrss_kib(),
        status=status,
        phases={name: round(s, 4) for name, s in clock.seconds.items()} if clock else {},
        phase_cpu={name: round(s, 4) for name, s in clock.cpu_seconds.items()} if clock else {},
        s3_calls={
            name: {k: round(v, 4) for k, v in call.items()} for name, call in sorted(clock.s3_calls.items())
        }
        if clock
        else {},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.large_file", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("file", type=Path, help="the input; for ingest modes, alone in its folder")
    parser.add_argument("--bucket", help="S3 bucket (S3 modes; endpoint from AWS_ENDPOINT_URL)")
    parser.add_argument("--workdir", type=Path, help="where the station and local vault go (temporary)")
    parser.add_argument("--part-size", type=int, help="EVIDENCE_PART_SIZE for the ingest modes")
    parser.add_argument("--upload-concurrency", type=int, help="EVIDENCE_UPLOAD_CONCURRENCY likewise")
    parser.add_argument("--no-phases", action="store_true", help="do not time the ingest phases")
    parser.add_argument("--cprofile", type=Path, help="write cProfile stats (main thread) here")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        parser.error(f"{args.file} is not a file")
    settings = {
        name: value
        for name, value in (("part_size", args.part_size), ("upload_concurrency", args.upload_concurrency))
        if value is not None
    }
    result = measure(
        args.mode,
        args.file,
        bucket=args.bucket,
        workdir=args.workdir,
        phases=not args.no_phases,
        profile_to=args.cprofile,
        **settings,
    )
    print(json.dumps(result.to_json(), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
