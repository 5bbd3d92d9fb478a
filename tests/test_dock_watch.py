"""An officer docks a camera and walks away: the dock notices it and ingests it without being asked."""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from evidence.errors import DeviceBusy, InvalidInput
from evidence.layout import ITEMS_PREFIX
from flows.dock import DockWatcher
from flows.ingest import FileOutcome, IngestReport, Status
from tests.factories import make_device
from tests.station import make_station


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT (Ctrl-C)"])
@pytest.mark.slow
def test_docked_device_is_ingested_and_a_stop_signal_stops_cleanly(
    cli_env: dict[str, str], tmp_path: Path, stop: signal.Signals
) -> None:
    """A service manager stops the dock with SIGTERM, a person at the console with Ctrl-C (SIGINT):
    either way the watcher finishes what it started and exits 0, not with a traceback or 130."""
    station = make_station(tmp_path / "station")
    dock = tmp_path / "dock"
    dock.mkdir()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "cli", "dock", "watch", str(dock), "--poll-seconds", "0.2"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        staging = tmp_path / "staging" / "BWC-DOCK01"
        make_device(staging, photos=2, videos=1)
        staging.rename(dock / "BWC-DOCK01")  # a device appears at once, as a mount does
        (dock / "not-a-device").symlink_to(tmp_path / "staging")

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(station.vault.store.list(ITEMS_PREFIX))) < 3:
            assert watcher.poll() is None, watcher.communicate()[1]
            time.sleep(0.2)
        assert len(list(station.vault.store.list(ITEMS_PREFIX))) == 3
    finally:
        watcher.send_signal(stop)
        _, stderr = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, stderr
    assert "device docked: BWC-DOCK01" in stderr
    assert "not-a-device" not in stderr, "a link under the dock root is not a device"
    assert "stopping: finishing devices in progress" in stderr  # the watcher's handler, not a default
    assert "dock watcher stopped" in stderr
    assert "Traceback" not in stderr and "interrupted" not in stderr


# ------------------------------------------------------------------------------------------------
# Nothing stops an unattended dock. The watcher is driven poll by poll, each device's run replaced by
# a stand-in (the real one is a Prefect flow run, covered above and in test_ingest_flow.py).


class RunAtOnce(Executor):
    """Runs each device's ingest inside ``submit``: when a poll returns, the runs it started are over
    (the next poll reports them)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:
            future.set_exception(err)
        return future


class StandInRuns:
    """``flows.run.run_ingest`` for the watcher's devices: a device folder that is not there fails as
    the real preflight does; anything else is ingested, unless a test queued another answer."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.answers: dict[str, list[Callable[[], IngestReport]]] = {}

    def __call__(self, device_dir: Path, **options: Any) -> IngestReport:
        self.started.append(device_dir.name)
        queued = self.answers.get(device_dir.name)
        if queued:
            return queued.pop(0)()
        if not os.path.isdir(device_dir):
            raise InvalidInput(
                f"{device_dir} is not a directory: give the folder where the device is mounted"
            )
        return report_of(("IMG_0001.JPG", "ingested"))


def report_of(*outcomes: tuple[str, Status]) -> IngestReport:
    counts: dict[str, int] = {}
    for _, status in outcomes:
        counts[status] = counts.get(status, 0) + 1
    return IngestReport("BWC", tuple(FileOutcome(path, status) for path, status in outcomes), counts=counts)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> StandInRuns:
    import flows.run

    stand_in = StandInRuns()
    monkeypatch.setattr(flows.run, "run_ingest", stand_in)
    return stand_in


def printed(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined, no-any-return]


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=300)


def test_dock_watch_keeps_watching_when_its_root_disappears_and_comes_back(
    runs: StandInRuns, tmp_path: Path
) -> None:
    dock = tmp_path / "dock"
    (dock / "BWC-A").mkdir(parents=True)
    console = quiet_console()
    watcher = DockWatcher(dock, wipe=False, console=console)
    watcher.poll(RunAtOnce())

    shutil.rmtree(dock)  # the dock's share is unmounted
    for _ in range(3):
        watcher.poll(RunAtOnce())
    assert printed(console).count(f"dock {dock} cannot be read: No such file or directory") == 1

    (dock / "BWC-B").mkdir(parents=True)  # mounted again, with another device docked
    watcher.poll(RunAtOnce())
    watcher.poll(RunAtOnce())
    assert f"dock {dock} can be read again" in printed(console)
    assert runs.started == ["BWC-A", "BWC-B"]
    assert "device BWC-B: 1 ingested" in printed(console)


def vanishing(folder: Path, *, after_looks: int) -> Callable[..., os.stat_result]:
    """``Path.stat`` for a device folder that is removed after being looked at ``after_looks`` times
    (``is_dir``, ``is_symlink``, ``lstat`` and ``stat`` are each a look)."""
    real_stat = Path.stat
    looks = 0

    def stat(path: Path, *, follow_symlinks: bool = True) -> os.stat_result:
        nonlocal looks
        if path == folder:
            looks += 1
            if looks > after_looks:
                shutil.rmtree(folder, ignore_errors=True)
        return real_stat(path, follow_symlinks=follow_symlinks)

    return stat


def test_dock_watch_keeps_watching_when_a_device_folder_vanishes_while_it_is_examined(
    runs: StandInRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An undocked device's folder goes between the dock's listing and the look at it (a race seen
    after ~3,200 mkdir/rmdir cycles, here forced after each number of looks); the device is tried
    again when it comes back."""
    for looks in range(4):
        dock = tmp_path / f"dock-{looks}"
        (dock / "BWC-STAYS").mkdir(parents=True)
        leaving = dock / "BWC-LEAVING"
        leaving.mkdir()
        console = quiet_console()
        watcher = DockWatcher(dock, wipe=False, console=console)
        with monkeypatch.context() as patched:
            patched.setattr(Path, "stat", vanishing(leaving, after_looks=looks))
            watcher.poll(RunAtOnce())
            watcher.poll(RunAtOnce())
        assert "device BWC-STAYS: 1 ingested" in printed(console), looks

        leaving.mkdir(exist_ok=True)  # docked again (with a single look a poll, it may not have left yet)
        watcher.poll(RunAtOnce())
        watcher.poll(RunAtOnce())
        assert "device BWC-LEAVING: 1 ingested" in printed(console), (looks, printed(console))


def test_dock_watch_says_once_that_a_device_folder_cannot_be_examined_and_keeps_watching(
    runs: StandInRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chmod does not stop root, so the refusal is simulated where the kernel would give it."""
    dock = tmp_path / "dock"
    (dock / "BWC-OK").mkdir(parents=True)
    (dock / "BWC-LOCKED").mkdir()
    real_stat = Path.stat

    def stat(path: Path, *, follow_symlinks: bool = True) -> os.stat_result:
        if path.name == "BWC-LOCKED":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_stat(path, follow_symlinks=follow_symlinks)

    console = quiet_console()
    watcher = DockWatcher(dock, wipe=False, console=console)
    with monkeypatch.context() as patched:
        patched.setattr(Path, "stat", stat)
        for _ in range(3):
            watcher.poll(RunAtOnce())

    assert printed(console).count("BWC-LOCKED: cannot be examined: Permission denied") == 1
    assert runs.started == ["BWC-OK"] and "device BWC-OK: 1 ingested" in printed(console)


def test_dock_watch_keeps_watching_when_a_device_run_fails_unexpectedly(
    runs: StandInRuns, tmp_path: Path
) -> None:
    dock = tmp_path / "dock"
    (dock / "BWC-BROKEN").mkdir(parents=True)
    (dock / "BWC-FINE").mkdir()

    def fault() -> IngestReport:
        raise RuntimeError("a fault in the run itself")

    runs.answers["BWC-BROKEN"] = [fault]
    console = quiet_console()
    watcher = DockWatcher(dock, wipe=False, console=console)
    watcher.poll(RunAtOnce())
    watcher.poll(RunAtOnce())

    lines = printed(console).splitlines()
    assert (
        "device BWC-BROKEN: failed unexpectedly (RuntimeError: a fault in the run itself); trying again in 30 s"
        in lines
    )
    assert "device BWC-FINE: 1 ingested" in lines


def test_dock_watch_tries_a_busy_or_unfinished_device_again_later_waiting_longer_each_time(
    runs: StandInRuns, tmp_path: Path
) -> None:
    """A person's ``evidence ingest`` holds the device: the watcher neither gives up on it nor asks
    every poll; files left on the device (unreadable, a storage fault) are tried again the same way."""
    dock = tmp_path / "dock"
    (dock / "BWC-SHARED").mkdir(parents=True)

    def busy() -> IngestReport:
        raise DeviceBusy("device BWC-SHARED is being ingested by another run on this station (pid 77 ...)")

    runs.answers["BWC-SHARED"] = [busy, lambda: report_of(("a.jpg", "ingested"), ("b.jpg", "failed"))]
    now = [1000.0]
    console = quiet_console()
    watcher = DockWatcher(dock, wipe=False, console=console, clock=lambda: now[0])

    def poll_at(moment: float) -> None:
        now[0] = moment
        watcher.poll(RunAtOnce())

    poll_at(1000)
    poll_at(1001)  # busy: again in 30 s
    poll_at(1030)
    assert runs.started == ["BWC-SHARED"]
    poll_at(1031)  # ingesting again: a file failed, so again in 60 s
    poll_at(1032)
    poll_at(1091)
    assert runs.started == ["BWC-SHARED"] * 2
    poll_at(1092)  # everything in: done while it stays docked
    for moment in (1093, 2000, 9000):
        poll_at(moment)

    assert runs.started == ["BWC-SHARED"] * 3
    said = printed(console)
    assert "device BWC-SHARED: busy: device BWC-SHARED is being ingested by another run" in said
    assert "(pid 77 ...); trying again in 30 s" in said
    assert "device BWC-SHARED: 1 failed, 1 ingested; trying again in 60 s" in said
    assert said.count("device BWC-SHARED: ingesting again") == 2
    assert said.rstrip().endswith("device BWC-SHARED: 1 ingested")


def test_dock_watch_messages_show_control_and_bidi_characters_in_device_names_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dock's folder names come from whatever mounted there: its console lines show them with
    escape sequences, bidi controls and newlines made visible (the ingest itself is not the point)."""
    from evidence.errors import InvalidInput
    from flows import run
    from flows.console import err
    from flows.dock import watch_dock

    dock = tmp_path / "dock"
    (dock / "BWC\x1b[2J\u202e\nforged").mkdir(parents=True)

    def unreadable(device_dir: Path, **options: object) -> None:
        raise InvalidInput(f"{device_dir} cannot be read")

    monkeypatch.setattr(run, "run_ingest", unreadable)
    watch_dock(dock, wipe=False, poll_seconds=0, once=True, console=err)
    shown = capsys.readouterr().err

    assert not {c for c in shown if c != "\n" and unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}}
    lines = " ".join(shown.split())  # rich wraps long lines at spaces
    assert "device docked: BWC\\x1b[2J\\u202e\\nforged; ingesting" in lines, shown
    assert "device BWC\\x1b[2J\\u202e\\nforged: failed: " in lines, shown
    assert "BWC\\x1b[2J\\u202e\\nforged cannot be read;" in lines, shown  # the error names it too
