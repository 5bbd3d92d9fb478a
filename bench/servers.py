"""The servers a benchmark runs beside what it measures, each in processes of its own on 127.0.0.1 so
their memory and CPU are not the measured process's: moto's S3 (one Object-Lock bucket), Ceph RGW (a
real S3 server) and, for the flow benchmarks, Prefect's server. Always stopped; output kept in a log
file for the error message."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REGION = "eu-west-2"
BUCKET = "evidence-bench"


class BenchmarkError(Exception):
    """The benchmark could not run or produced an unusable result; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server process, started by ``start`` (or ``with``), ready when ``ready`` says so."""

    name = "server"
    start_seconds = 60.0

    def __init__(self, workdir: Path, environment: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / f"{self.name}-{self.port}.log"
        self._environment = dict(environment) | {"TMPDIR": str(workdir)}
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(self._environment)

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.environment(), cwd=self.workdir
            )
        deadline = time.monotonic() + self.start_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BenchmarkError(f"{self.name} exited at start-up:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise BenchmarkError(f"{self.name} was not ready on port {self.port} in {self.start_seconds:.0f} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)

    def cpu_seconds(self) -> float:
        fields = self._proc_file("stat").rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self) -> int:
        for line in self._proc_file("status").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _proc_file(self, name: str) -> str:
        return Path(f"/proc/{self.pid}/{name}").read_text()

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MotoS3Server(ServerProcess):
    """moto's S3 server with one Object-Lock bucket; a fresh one per run, so it holds only that run."""

    name = "moto-s3"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # moto's server, with its ListObjectVersions kept from copying every stored byte (tests.moto_speed)
        return [sys.executable, "-m", "tests.moto_speed", "-H", "127.0.0.1", "-p", str(self.port)]

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def start(self) -> None:
        super().start()
        import boto3

        # moto accepts any credentials; explicit ones keep a real AWS profile out of it
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 (moto's dummy credentials)
            region_name=REGION,
        )
        session.client("s3", endpoint_url=self.endpoint).create_bucket(
            Bucket=BUCKET,
            ObjectLockEnabledForBucket=True,
            CreateBucketConfiguration={"LocationConstraint": REGION},
        )


class CephRgwServer:
    """Ceph RGW 16 (``tests.rgw.start_rgw``: a memstore OSD, HTTPS on 127.0.0.1) for a whole benchmark
    run, with a fresh Object-Lock bucket per measurement that is emptied afterwards, because a memstore
    keeps every stored byte in RAM. Its figures are the sum over its daemons (monitor, OSD, gateway)."""

    name = "ceph-rgw"
    DAEMONS = ("mon.a", "osd.0", "rgw.a")

    def __init__(self, workdir: Path, memstore_bytes: int) -> None:
        self.directory = workdir / "rgw"
        self.memstore_bytes = memstore_bytes
        self._instance: Any = None

    def __enter__(self) -> CephRgwServer:
        from tests.rgw import RgwUnavailable, start_rgw

        try:
            self._instance = start_rgw(self.directory, memstore_bytes=self.memstore_bytes)
        except RgwUnavailable as err:
            raise BenchmarkError(f"Ceph RGW could not be started: {err}") from err
        return self

    def __exit__(self, *exc: object) -> None:
        if self._instance is not None:
            self._instance.stop()
            self._instance = None

    @property
    def server(self) -> Any:
        assert self._instance is not None, "start the server first (with ...)"
        return self._instance.server

    @property
    def endpoint(self) -> str:
        return str(self.server.https_url)

    def environment(self) -> dict[str, str]:
        """What a child needs besides the endpoint: the certificate and the bucket owner's keys."""
        server = self.server
        return {
            "AWS_CA_BUNDLE": str(server.ca_bundle),
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_DEFAULT_REGION": server.region,
        }

    def new_bucket(self) -> str:
        from tests.rgw import unique_bucket

        bucket = unique_bucket("bench")
        self.server.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        return bucket

    def remove_bucket(self, bucket: str) -> None:
        """Every version (locked ones through the owner's governance bypass), every open upload, the
        bucket, then RGW's garbage collection now rather than in two hours: the RAM back."""
        from tests.rgw import remove_bucket

        remove_bucket(self.server.client(), bucket)
        subprocess.run(
            ["radosgw-admin", "-c", str(self.server.ceph_conf), "gc", "process", "--include-all"],
            capture_output=True,
            timeout=600,
            check=False,
        )

    def _pids(self) -> list[int]:
        pids = []
        for name in self.DAEMONS:
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((self.directory / "pids" / f"{name}.pid").read_text().strip()))
        return pids

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self._pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def peak_rss_kib(self) -> int:
        total = 0
        for pid in self._pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        return total
