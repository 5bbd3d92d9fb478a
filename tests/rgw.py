"""Ceph RGW, a real S3 server, for the tests and benchmarks that need one (issue 9).

``start_rgw(directory)`` installs Ceph's Debian packages if they are missing (as root, one installer
at a time) and starts a throwaway single-node cluster under ``directory``: one monitor, one memstore
OSD (object data in RAM, gone when it stops) and one RADOS Gateway speaking HTTP and HTTPS on
127.0.0.1, with auth off inside the cluster and one S3 user owning every bucket. Ports are chosen
free at start, so it runs beside a developer's own RGW and beside other test runs. It returns an
``RgwInstance`` whose ``stop()`` ends exactly the processes it started: their pids are recorded under
``directory/pids`` and each is checked against its command line (binary and this cluster's config
file) before a SIGTERM, then a SIGKILL; nothing is ever stopped by name. A watchdog process stops them
too if the process that owns the server dies without stopping it (a killed test run).

A pytest run shares one server between its xdist workers (``rgw_for_session``): the first worker that
needs it starts it under the run's temp root, holding a file lock, and writes its description there;
the others read it; the controller stops it at the end of the run (``stop_session_rgw``). A run with
no RGW test installs and starts nothing. ``RGW_TEST_SERVER`` names the JSON description of a server
already running (keys: https_url, http_url, ca_bundle, access_key, secret_key, region, ceph_conf),
which is used instead and never stopped.

The recipe is ``../shared/s3-servers/ceph-rgw/start-rgw.sh`` and ``stop-rgw.sh``, ported here.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config

from tests import debian

GiB = 1024**3
PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "ceph-common", "uuid-runtime")
BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool", "ceph-authtool")
# Stopped in this order: the gateway first, the monitor last.
DAEMONS = (("rgw.a", "radosgw"), ("osd.0", "ceph-osd"), ("mon.a", "ceph-mon"))
WATCHDOG = "watchdog"
OSD_PORTS = 16  # an OSD binds 8 (public, cluster and two heartbeat messengers, v2 and v1 each)
STOP_GRACE = 15.0
# the bucket owner's keys: a throwaway server on loopback, so the same keys every time
ACCESS_KEY = "RGWTESTACCESSKEY0001"
SECRET_KEY = "rgwTestSecretKey0000000000000000000000001"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class RgwUnavailable(Exception):
    """RGW could not be installed or started; the message says why, with the tail of its logs."""


@dataclass(frozen=True)
class RgwServer:
    https_url: str
    http_url: str
    ca_bundle: Path
    access_key: str
    """The owner of every bucket the tests create (an RGW user with full rights on them)."""
    secret_key: str
    region: str
    ceph_conf: Path

    def environment(self, https: bool = True) -> dict[str, str]:
        """boto3's own variables pointing at this server as its bucket owner."""
        return {
            "AWS_ENDPOINT_URL_S3": self.https_url if https else self.http_url,
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self, access_key: str | None = None, secret_key: str | None = None, **config: Any) -> Any:
        """A plain boto3 client over HTTPS, as the owner or as another RGW user."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.https_url,
            verify=str(self.ca_bundle),
            region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=botocore.config.Config(**config) if config else None,
        )

    def create_user(self, uid: str) -> tuple[str, str]:
        """A new RGW user (``radosgw-admin user create``): its access key and secret key."""
        answer = subprocess.run(
            [
                "radosgw-admin",
                "-c",
                str(self.ceph_conf),
                "user",
                "create",
                f"--uid={uid}",
                f"--display-name={uid}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        key = json.loads(answer.stdout)["keys"][0]
        return str(key["access_key"]), str(key["secret_key"])

    def describe(self) -> dict[str, str]:
        """The JSON description ``RGW_TEST_SERVER`` takes."""
        return {name: str(value) for name, value in asdict(self).items()}

    @classmethod
    def described(cls, data: dict[str, Any]) -> RgwServer:
        return cls(
            https_url=data["https_url"],
            http_url=data["http_url"],
            ca_bundle=Path(data["ca_bundle"]),
            access_key=data["access_key"],
            secret_key=data["secret_key"],
            region=data["region"],
            ceph_conf=Path(data["ceph_conf"]),
        )


def remove_bucket(client: Any, bucket: str) -> None:
    """Empty ``bucket`` (every open upload aborted; every version and delete marker deleted, a lock's
    governance bypassed as its owner) and remove it: RGW keeps objects in a memory store of a few GiB
    that a whole session, or a benchmark run, shares."""
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(
                Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"], BypassGovernanceRetention=True
            )
    client.delete_bucket(Bucket=bucket)


def unique_bucket(prefix: str = "evidence") -> str:
    """A bucket name no other test uses: RGW, unlike moto's server, is not reset between tests."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- installing ---------------------------------------------------------------------------------------


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def ensure_ceph_installed(log: Path) -> None:
    """Install Ceph's Debian packages if a binary is missing: as root, one installer at a time."""
    if not missing_binaries():
        return
    with debian.locked(debian.INSTALL_LOCK):
        missing = missing_binaries()  # another run may have installed them while this one waited
        if not missing:
            return
        if os.geteuid() != 0:
            raise RgwUnavailable(
                f"Ceph is not installed ({', '.join(missing)} missing) and this is not root: run "
                f"`apt-get install --no-install-recommends {' '.join(PACKAGES)}` as root"
            )
        installed = debian.install(PACKAGES, log, recommends=False)
        if not installed or missing_binaries():
            raise RgwUnavailable(f"installing {' '.join(PACKAGES)} failed:\n{_tail(log)}")


# -- starting ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ports:
    mon_v2: int
    mon_v1: int
    http: int
    https: int
    osd_min: int
    osd_max: int


def _free_port_block(count: int) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1, below the ephemeral range (where
    clients' outgoing connections take theirs) and away from Ceph's defaults (6789, 6800-7300, 7480)."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    for _ in range(200):
        base = random.randrange(10_000, ephemeral_low - count)
        if all(_port_is_free(port) for port in range(base, base + count)):
            return base
    raise RgwUnavailable(f"no {count} consecutive free ports on 127.0.0.1 below {ephemeral_low}")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_ports() -> _Ports:
    base = _free_port_block(4 + OSD_PORTS)
    return _Ports(base, base + 1, base + 2, base + 3, base + 4, base + 3 + OSD_PORTS)


def _ceph_conf(directory: Path, fsid: str, ports: _Ports, certificate: Path, memstore_bytes: int) -> str:
    mon_host = f"[v2:127.0.0.1:{ports.mon_v2},v1:127.0.0.1:{ports.mon_v1}]"
    return f"""# written by tests/rgw.py: one node, loopback only, no auth, no redundancy, data in RAM
[global]
fsid = {fsid}
mon_host = {mon_host}
public_addr = 127.0.0.1
public_network = 127.0.0.0/8
cluster_network = 127.0.0.0/8
ms_bind_ipv4 = true
ms_bind_ipv6 = false
ms_bind_port_min = {ports.osd_min}
ms_bind_port_max = {ports.osd_max}
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = {directory}/run
# no admin sockets: nothing here uses them, and a long temp path would overflow a socket's name
admin_socket =
log_file = {directory}/log/$name.log
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
mon_data_avail_warn = 1
mon_warn_on_insecure_global_id_reclaim_allowed = false
[mon]
mon_data = {directory}/mon.$id
mon_initial_members = a
# propose map changes every 50 ms instead of 1 s: radosgw creates its pools one by one
paxos_propose_interval = 0.05
[osd]
osd_data = {directory}/osd.$id
osd_objectstore = memstore
memstore_device_bytes = {memstore_bytes}
[client.rgw.a]
# tcp_nodelay: without it, every answer sent in two writes (a listing, a GET, most small answers)
# waits ~40 ms for the client's delayed ACK (Nagle): 50 ms a request instead of 5
rgw_frontends = beast endpoint=127.0.0.1:{ports.http} ssl_endpoint=127.0.0.1:{ports.https} \
ssl_certificate={certificate} tcp_nodelay=1
# radosgw's default ms_mon_client_mode is "secure", which cannot work with auth none
ms_mon_client_mode = crc
rgw_dns_name = localhost
"""


@dataclass
class RgwInstance:
    """A server ``start_rgw`` started: its description, and ``stop()``."""

    server: RgwServer
    directory: Path
    startup_seconds: float

    def stop(self) -> None:
        stop_rgw(self.directory)

    def __enter__(self) -> RgwInstance:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_rgw(
    directory: Path,
    *,
    memstore_bytes: int = 4 * GiB,
    owner_pid: int | None = None,
    timeout: float = 120.0,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    region: str = "us-east-1",
) -> RgwInstance:
    """Install if needed, then start a fresh RGW under ``directory`` (which must not hold one already).

    ``memstore_bytes`` is the OSD's capacity: object data lives in RAM, only as much as is stored.
    ``owner_pid`` (default: this process) is watched: when it is gone, the server is stopped.
    On any failure everything started so far is stopped and ``RgwUnavailable`` says why.
    """
    directory = directory.resolve()
    started = time.monotonic()
    ensure_ceph_installed(directory / "log" / "install.log")
    for attempt in (1, 2):
        try:
            server = _bootstrap(
                directory, memstore_bytes, owner_pid or os.getpid(), timeout, access_key, secret_key, region
            )
            return RgwInstance(server, directory, time.monotonic() - started)
        except RgwUnavailable as err:
            stop_rgw(directory)
            # A port taken between choosing it and binding it (another run's cluster starting at
            # the same moment) is worth one more try on other ports; anything else is not.
            if attempt == 2 or "Address already in use" not in str(err):
                raise
            shutil.rmtree(directory, ignore_errors=True)
    raise AssertionError("unreachable")


def _bootstrap(
    directory: Path,
    memstore_bytes: int,
    owner_pid: int,
    timeout: float,
    access_key: str,
    secret_key: str,
    region: str,
) -> RgwServer:
    from tests.tls import loopback_certificate

    for name in ("pids", "log", "run", "mon.a", "osd.0"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    if any((directory / "pids").iterdir()):
        raise RgwUnavailable(f"{directory} already holds a server; stop it first")
    conf = directory / "ceph.conf"
    ports = _choose_ports()
    certificate = loopback_certificate(directory / "tls", "rgw")
    fsid = str(uuid.uuid4())
    conf.write_text(_ceph_conf(directory, fsid, ports, certificate.combined, memstore_bytes))
    deadline = time.monotonic() + timeout

    def run(command: str) -> str:
        """Run one set-up command (a shell-like line, paths quoted) to completion; its output."""
        what = " ".join(command.split()[:3])
        try:
            done = subprocess.run(
                shlex.split(command),
                capture_output=True,
                text=True,
                timeout=max(5.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise RgwUnavailable(f"`{what}` timed out:\n{_logs_tail(directory)}") from err
        if done.returncode != 0:
            raise RgwUnavailable(f"`{what}` failed: {done.stdout}{done.stderr}\n{_logs_tail(directory)}")
        return done.stdout

    # the watchdog first: from here on, a killed owner leaves nothing running
    _spawn(directory, WATCHDOG, [sys.executable, "-m", "tests.rgw", "watch", str(owner_pid), str(directory)])

    config = f"-c {shlex.quote(str(conf))}"
    monmap, keyring = shlex.quote(str(directory / "monmap")), shlex.quote(str(directory / "mon.keyring"))
    mon_addresses = f"[v2:127.0.0.1:{ports.mon_v2},v1:127.0.0.1:{ports.mon_v1}]"
    run(f"monmaptool --create --fsid {fsid} --addv a {mon_addresses} --enable-all-features "
        f"--set-min-mon-release pacific {monmap}")  # fmt: skip
    run(f"ceph-authtool --create-keyring {keyring} --gen-key -n mon. --cap mon 'allow *'")
    run(f"ceph-mon {config} -i a --mkfs --monmap {monmap} --keyring {keyring}")
    _spawn(directory, "mon.a", ["ceph-mon", "-c", str(conf), "-i", "a", "-f"])

    osd_uuid = str(uuid.uuid4())
    # `ceph` waits for the monitor's quorum itself (it retries its connection until the timeout)
    osd_id = run(f"ceph {config} --connect-timeout {int(timeout)} osd new {osd_uuid}").strip()
    if osd_id != "0":
        raise RgwUnavailable(f"expected OSD id 0, the monitor gave {osd_id!r}")
    run(f"ceph-osd {config} -i 0 --mkfs --osd-uuid {osd_uuid}")
    _spawn(directory, "osd.0", ["ceph-osd", "-c", str(conf), "-i", "0", "-f"])
    # radosgw waits for the OSD itself: it creates its pools and writes to them as it starts
    _spawn(directory, "rgw.a", ["radosgw", "-c", str(conf), "-n", "client.rgw.a", "-f"])
    http_url = f"http://127.0.0.1:{ports.http}"
    while not _answers(http_url):
        for name, _binary in DAEMONS:
            if not _is_ours(directory, name):
                raise RgwUnavailable(f"{name} exited during start-up:\n{_logs_tail(directory)}")
        if time.monotonic() > deadline:
            raise RgwUnavailable(
                f"RGW did not answer on {http_url} in {timeout:.0f} s:\n{_logs_tail(directory)}"
            )
        time.sleep(0.2)
    run(f"radosgw-admin {config} user create --uid=evidence-tests --display-name=evidence-pipeline-tests "
        f"--access-key={shlex.quote(access_key)} --secret-key={shlex.quote(secret_key)}")  # fmt: skip
    return RgwServer(
        https_url=f"https://127.0.0.1:{ports.https}",
        http_url=http_url,
        ca_bundle=certificate.certificate,
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        ceph_conf=conf,
    )


def _spawn(directory: Path, name: str, command: list[str]) -> None:
    """Start a daemon in a session of its own (it outlives the test worker that started it) and
    record its pid at once, so that a stop after an interruption finds it."""
    binary = shutil.which(command[0]) or command[0]
    with (directory / "log" / f"{name}.out").open("ab") as output:
        process = subprocess.Popen(
            [binary, *command[1:]],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=PROJECT_ROOT if name == WATCHDOG else directory,
            env=os.environ | {"PYTHONPATH": str(PROJECT_ROOT)} if name == WATCHDOG else None,
        )
    (directory / "pids" / f"{name}.pid").write_text(f"{process.pid}\n")
    # Popen may return before /proc shows the new program's command line: wait for it, so that
    # ``_is_ours`` is not misled in the first milliseconds
    deadline = time.monotonic() + 5
    while not _is_ours(directory, name) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:  # noqa: S310 (our own loopback URL)
            return bool(answer.status == 200)
    except OSError:
        return False


# -- stopping ------------------------------------------------------------------------------------------


def _command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _recorded_pid(directory: Path, name: str) -> int | None:
    try:
        text = (directory / "pids" / f"{name}.pid").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _is_ours(directory: Path, name: str) -> bool:
    """The recorded pid of ``name`` is alive and still runs what was started under ``directory``
    (a pid the kernel gave to another process since is not ours; a zombie has no command line)."""
    pid = _recorded_pid(directory, name)
    if pid is None:
        return False
    command = _command_line(pid)
    if name == WATCHDOG:
        return command[1:4] == ["-m", "tests.rgw", "watch"] and command[-1:] == [str(directory)]
    binary = dict(DAEMONS)[name]
    return (
        len(command) >= 3
        and Path(command[0]).name == binary
        and command[1:3] == ["-c", str(directory / "ceph.conf")]
    )


def stop_rgw(directory: Path, grace: float = STOP_GRACE) -> None:
    """Stop what ``start_rgw`` started under ``directory`` and nothing else: the watchdog, then the
    gateway, the OSD and the monitor, each by its recorded pid once its command line proves it ours;
    SIGTERM, then SIGKILL after ``grace`` seconds. Raises ``RgwUnavailable`` if one survives."""
    directory = directory.resolve()
    survivors = []
    for name in (WATCHDOG, *(name for name, _binary in DAEMONS)):
        pid = _recorded_pid(directory, name)
        if pid is None:
            continue
        if _is_ours(directory, name):
            _terminate(directory, name, pid, grace)
            if _is_ours(directory, name):
                survivors.append(f"{name} (pid {pid})")
                continue
        (directory / "pids" / f"{name}.pid").unlink(missing_ok=True)
    if survivors:
        raise RgwUnavailable(f"could not stop {', '.join(survivors)} of the RGW under {directory}")


def _terminate(directory: Path, name: str, pid: int, grace: float) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not _is_ours(directory, name):
                return
            time.sleep(0.05)


def _reap(pid: int) -> None:
    # a daemon this very process started is its child: collect it, or it stays a zombie until exit
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/pid/stat): with the pid, an identity
    that a recycled pid does not share. None once it has exited (a zombie included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def watch(owner_pid: int, directory: Path, poll: float = 1.0) -> None:
    """Stop the server under ``directory`` once ``owner_pid`` has gone; return when it has been
    stopped by anyone."""
    owner = _start_time(owner_pid)
    while True:
        if not any(_is_ours(directory, name) for name, _binary in DAEMONS) and _started(directory):
            return
        if owner is None or _start_time(owner_pid) != owner:
            (directory / "pids" / f"{WATCHDOG}.pid").unlink(missing_ok=True)
            stop_rgw(directory)
            return
        time.sleep(poll)


def _started(directory: Path) -> bool:
    # the watchdog is started before the daemons: until the monitor's pid is recorded, wait
    return (directory / "pids" / "mon.a.pid").exists() or not (directory / "pids").exists()


# -- logs ----------------------------------------------------------------------------------------------


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(f"  {line}" for line in text[-lines:])


def _logs_tail(directory: Path) -> str:
    """The last lines of every daemon's output and log, for the error a failed start reports."""
    blocks = []
    for path in sorted((directory / "log").glob("*")):
        tail = _tail(path)
        if tail:
            blocks.append(f"--- {path}\n{tail}")
    return "\n".join(blocks) or f"(no logs under {directory / 'log'})"


# -- one server per test run ---------------------------------------------------------------------------

SESSION_DIRECTORY = "rgw"
DESCRIPTION = "server.json"
FAILURE = "failed.txt"


def rgw_for_session(run_root: Path, owner_pid: int) -> RgwServer:
    """The run's RGW: the one ``RGW_TEST_SERVER`` describes, or the one under ``run_root`` (the temp
    root every xdist worker shares), started by the first caller. Raises ``RgwUnavailable`` with the
    reason, the same in every worker once a start has failed."""
    described = os.environ.get("RGW_TEST_SERVER")
    if described:
        try:
            return RgwServer.described(json.loads(Path(described).read_text()))
        except (OSError, ValueError, KeyError) as err:
            raise RgwUnavailable(
                f"RGW_TEST_SERVER={described} is not a server's description: {err!r}"
            ) from err
    directory = run_root / SESSION_DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    with debian.locked(run_root / "rgw.lock"):
        if (directory / DESCRIPTION).exists():
            return RgwServer.described(json.loads((directory / DESCRIPTION).read_text()))
        if (directory / FAILURE).exists():
            raise RgwUnavailable((directory / FAILURE).read_text())
        try:
            instance = start_rgw(directory, owner_pid=owner_pid)
        except RgwUnavailable as err:
            (directory / FAILURE).write_text(str(err))
            raise
        description = instance.server.describe() | {"startup_seconds": f"{instance.startup_seconds:.1f}"}
        (directory / DESCRIPTION).write_text(json.dumps(description, indent=1))
        return instance.server


def stop_session_rgw(run_root: Path) -> None:
    """At the end of a run: stop the run's RGW if a worker started one (never an ``RGW_TEST_SERVER``)."""
    directory = run_root / SESSION_DIRECTORY
    if not (directory / "pids").is_dir():
        return
    with debian.locked(run_root / "rgw.lock"):
        stop_rgw(directory)


def main(arguments: list[str]) -> int:
    """``python -m tests.rgw start DIR`` (prints the server's description), ``stop DIR``, and the
    watchdog's ``watch PID DIR``."""
    match arguments:
        case ["start", directory]:
            instance = start_rgw(Path(directory), owner_pid=os.getppid())
            print(json.dumps(instance.server.describe(), indent=1))
        case ["stop", directory]:
            stop_rgw(Path(directory))
        case ["watch", owner_pid, directory]:
            watch(int(owner_pid), Path(directory))
        case _:
            print("usage: python -m tests.rgw start DIR | stop DIR", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
