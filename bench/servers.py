"""The servers a benchmark runs beside what it measures, each in a process of its own on 127.0.0.1 so
its memory and CPU are not the measured process's: moto's S3 (one Object-Lock bucket) and, for the
flow benchmarks, Prefect's server. Always stopped; output kept in a log file for the error message."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

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
