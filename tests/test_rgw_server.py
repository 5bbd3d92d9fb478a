"""The real S3 server the suite runs against (``tests.rgw``): one Ceph RGW per test run, over HTTPS with
a certificate of its own, on ports of its own, stopped with exactly what started it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import SSLError

from tests import debian
from tests import rgw as rgw_module
from tests.rgw import (
    BINARIES,
    RgwServer,
    RgwUnavailable,
    rgw_for_session,
    start_rgw,
    stop_rgw,
    unique_bucket,
)

DAEMONS = ("mon.a", "osd.0", "rgw.a")


def eventually(condition: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_run_has_one_rgw_over_https_that_only_its_own_certificate_opens(rgw: RgwServer) -> None:
    bucket = unique_bucket("https")
    rgw.client().create_bucket(Bucket=bucket)
    assert bucket in {b["Name"] for b in rgw.client().list_buckets()["Buckets"]}
    assert rgw.https_url.startswith("https://127.0.0.1:")
    stranger = boto3.session.Session().client(
        "s3",
        endpoint_url=rgw.https_url,
        region_name=rgw.region,
        aws_access_key_id=rgw.access_key,
        aws_secret_access_key=rgw.secret_key,
    )
    with pytest.raises(SSLError):  # trusting the usual authorities only
        stranger.list_buckets()
    if not os.environ.get("RGW_TEST_SERVER"):
        # not a developer's RGW (6789, 7480, 7443): ports of its own, a directory of the run's own
        assert rgw.ceph_conf.parent.name == "rgw" and rgw.ceph_conf.parent.parent.name.startswith("pytest-")
        ports = {int(url.rsplit(":", 1)[1]) for url in (rgw.https_url, rgw.http_url)}
        assert not ports & {6789, 7480, 7443}


def test_a_second_rgw_runs_beside_it_and_goes_with_its_owner(rgw: RgwServer, tmp_path: Path) -> None:
    """Another cluster (a benchmark's, another worktree's run) starts beside the run's on other ports;
    when the process that owns it dies without stopping it, its watchdog stops exactly its daemons."""
    if rgw_module.missing_binaries():
        pytest.skip("Ceph is not installed here (the run's RGW is RGW_TEST_SERVER's)")
    owner = subprocess.Popen(["sleep", "300"])
    try:
        instance = start_rgw(tmp_path / "second", owner_pid=owner.pid, memstore_bytes=256 * 1024**2)
    except BaseException:
        owner.kill()
        raise
    second = instance.server
    assert {second.https_url, second.http_url}.isdisjoint({rgw.https_url, rgw.http_url})
    bucket = unique_bucket("second")
    second.client().create_bucket(Bucket=bucket)
    assert bucket not in {b["Name"] for b in rgw.client().list_buckets()["Buckets"]}
    pids = {name: int((instance.directory / "pids" / f"{name}.pid").read_text()) for name in DAEMONS}
    for name, pid in pids.items():
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert command[1:3] == [b"-c", str(second.ceph_conf).encode()], name

    owner.kill()  # and left unreaped a while: a zombie is gone too
    assert eventually(lambda: not any((instance.directory / "pids").iterdir())), "the watchdog stopped it"
    assert not any(alive(pid) for pid in pids.values())
    assert rgw.client().list_buckets()["Buckets"] is not None, "the run's RGW is untouched"
    owner.wait()


def test_a_recorded_pid_that_is_not_the_daemon_any_more_is_left_alone(tmp_path: Path) -> None:
    """After a crash the kernel may give a recorded pid to another process: stopping checks the command
    line (binary and this cluster's config file) and never signals a stranger."""
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        (tmp_path / "pids").mkdir()
        for name in DAEMONS:
            (tmp_path / "pids" / f"{name}.pid").write_text(f"{stranger.pid}\n")
        stop_rgw(tmp_path, grace=1)
        assert stranger.poll() is None, "still running"
        assert list((tmp_path / "pids").iterdir()) == []
    finally:
        stranger.kill()
        stranger.wait()


def test_workers_share_one_start_and_one_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first worker to need RGW starts it and describes it; the others read the description. A
    start that failed is not retried by every worker: they all report the first one's reason."""
    monkeypatch.delenv("RGW_TEST_SERVER", raising=False)
    starts: list[Path] = []
    server = RgwServer(
        "https://127.0.0.1:1", "http://127.0.0.1:2", tmp_path / "ca.pem", "a", "s", "r", tmp_path
    )

    class Started:
        def __init__(self, directory: Path) -> None:
            self.server, self.startup_seconds = server, 1.0
            starts.append(directory)

    monkeypatch.setattr(rgw_module, "start_rgw", lambda directory, **_: Started(directory))
    assert rgw_for_session(tmp_path / "run", os.getpid()) == server
    assert rgw_for_session(tmp_path / "run", os.getpid()) == server
    assert starts == [tmp_path / "run" / "rgw"]
    assert json.loads((tmp_path / "run" / "rgw" / "server.json").read_text())["https_url"] == server.https_url

    def failing(directory: Path, **_: Any) -> None:
        starts.append(directory)
        raise RgwUnavailable("ceph-mon --mkfs failed: no space left")

    monkeypatch.setattr(rgw_module, "start_rgw", failing)
    for _ in range(2):
        with pytest.raises(RgwUnavailable, match="no space left"):
            rgw_for_session(tmp_path / "other-run", os.getpid())
    assert starts[1:] == [tmp_path / "other-run" / "rgw"]


def test_a_server_named_by_rgw_test_server_is_used_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    description = tmp_path / "server.json"
    server = RgwServer(
        "https://h:1", "http://h:2", tmp_path / "ca.pem", "key", "secret", "eu", tmp_path / "c"
    )
    description.write_text(json.dumps(server.describe()))
    monkeypatch.setenv("RGW_TEST_SERVER", str(description))
    monkeypatch.setattr(rgw_module, "start_rgw", None)  # never called
    assert rgw_for_session(tmp_path / "run", os.getpid()) == server
    monkeypatch.setenv("RGW_TEST_SERVER", str(tmp_path / "missing.json"))
    with pytest.raises(RgwUnavailable, match=r"missing\.json"):
        rgw_for_session(tmp_path / "run", os.getpid())


def test_ceph_is_installed_once_when_missing_with_the_package_lists_updated_if_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a fresh machine the binaries are missing: apt-get installs the packages (after an update when
    the first try fails, as it does with no package lists); one installer at a time."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "apt-calls"
    bin_dir.mkdir()
    binaries = " ".join(f"{bin_dir}/{name}" for name in BINARIES)
    (bin_dir / "apt-get").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$1" in update) exit 0;; esac\n'
        f"/bin/grep -q update {calls} || exit 100\n"  # no package lists until an update
        f"for b in {binaries}; do echo '#!/bin/sh' > $b; /bin/chmod +x $b; done\n"
    )
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # this machine's own Ceph out of sight
    monkeypatch.setattr(debian, "INSTALL_LOCK", tmp_path / "install.lock")
    monkeypatch.setattr(rgw_module.os, "geteuid", lambda: 0)
    assert rgw_module.missing_binaries() == list(BINARIES)

    rgw_module.ensure_ceph_installed(tmp_path / "install.log")

    lines = calls.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["install", "update", "install"]
    assert all(package in lines[0].split() for package in rgw_module.PACKAGES)
    assert rgw_module.missing_binaries() == []
    rgw_module.ensure_ceph_installed(tmp_path / "install.log")  # present now: apt is not run again
    assert len(calls.read_text().splitlines()) == 3


def test_missing_ceph_without_root_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(debian, "INSTALL_LOCK", tmp_path / "install.lock")
    monkeypatch.setattr(rgw_module.os, "geteuid", lambda: 1000)
    with pytest.raises(
        RgwUnavailable, match=r"not root: run `apt-get install --no-install-recommends ceph-mon"
    ):
        rgw_module.ensure_ceph_installed(tmp_path / "install.log")


def test_two_workers_needing_ceph_at_once_run_one_installer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, calls = tmp_path / "bin", tmp_path / "apt-calls"
    bin_dir.mkdir()
    binaries = " ".join(f"{bin_dir}/{name}" for name in BINARIES)
    (bin_dir / "apt-get").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f"/bin/mkdir {tmp_path}/running || exit 99\n"  # a second apt-get at the same time fails, as apt does
        "/bin/sleep 0.3\n"
        f"for b in {binaries}; do echo '#!/bin/sh' > $b; /bin/chmod +x $b; done\n"
        f"/bin/rmdir {tmp_path}/running\n"
    )
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(debian, "INSTALL_LOCK", tmp_path / "install.lock")
    monkeypatch.setattr(rgw_module.os, "geteuid", lambda: 0)

    with ThreadPoolExecutor(2) as workers:
        done = [workers.submit(rgw_module.ensure_ceph_installed, tmp_path / f"log{n}") for n in (1, 2)]
        for future in done:
            future.result()
    assert len(calls.read_text().splitlines()) == 1
