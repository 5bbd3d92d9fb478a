"""``evidence dock watch``: ingest every device that appears under a dock folder.

Polling rather than inotify: docks mount devices (USB mass storage, MTP bridges, network shares), and
file-system events do not reliably report a mount appearing. A device folder is ingested once per
appearance; a device that is undocked and docked again is ingested again (re-ingest stores nothing
new). Deferred files (still being written) make the device due again after a short wait.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console

from evidence.errors import EvidenceError, InvalidInput
from flows.console import visible, visible_message
from flows.ingest import IngestReport

log = logging.getLogger(__name__)
MAX_DEVICES_AT_ONCE = 4


@dataclass(frozen=True)
class Docked:
    """One appearance of a device folder (its inode changes when it is mounted again)."""

    path: Path
    inode: int


def docked_devices(dock_root: Path) -> set[Docked]:
    found = set()
    for entry in dock_root.iterdir():
        # a link under the dock root is not a device: following it could ingest any folder
        if entry.is_dir() and not entry.is_symlink():
            found.add(Docked(entry, entry.stat().st_ino))
    return found


class DockWatcher:
    def __init__(self, dock_root: Path, *, wipe: bool, console: Console) -> None:
        if not dock_root.is_dir():
            raise InvalidInput(f"{dock_root} is not a directory: give the folder devices are mounted under")
        self.dock_root = dock_root
        self.wipe = wipe
        self.console = console
        self.stopping = threading.Event()
        self._done: set[Docked] = set()
        self._running: dict[Docked, Future[IngestReport]] = {}

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            raise KeyboardInterrupt  # second signal: stop now; re-running finishes the job
        self.console.print("stopping: finishing devices in progress (signal again to stop at once)")
        self.stopping.set()

    def poll(self, pool: ThreadPoolExecutor) -> None:
        present = docked_devices(self.dock_root)
        self._done &= present  # undocked devices are forgotten, so docking again triggers a new run
        for device, future in list(self._running.items()):
            if future.done():
                del self._running[device]
                self._finished(device, future)
        for device in sorted(present - self._done - self._running.keys(), key=lambda d: d.path.name):
            self.console.print(f"device docked: {visible(device.path.name)}; ingesting")
            self._running[device] = pool.submit(self._ingest, device)

    def _ingest(self, device: Docked) -> IngestReport:
        from flows.run import run_ingest

        return run_ingest(device.path, device_serial=None, officer_id=None, wipe=self.wipe, quiet=True)

    def _finished(self, device: Docked, future: Future[IngestReport]) -> None:
        try:
            report = future.result()
        except EvidenceError as err:
            self.console.print(
                f"device {visible(device.path.name)}: failed: {visible_message(str(err))}; it will be retried"
            )
            return
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items())) or "empty"
        self.console.print(f"device {visible(device.path.name)}: {counts}")
        if report.complete and not report.by_status("deferred"):
            self._done.add(device)

    def run(self, *, poll_seconds: float, once: bool) -> None:
        with ThreadPoolExecutor(max_workers=MAX_DEVICES_AT_ONCE, thread_name_prefix="dock") as pool:
            while not self.stopping.is_set():
                self.poll(pool)
                if once:
                    break
                self.stopping.wait(poll_seconds)
            for device, future in list(self._running.items()):
                future.exception()  # wait, so the process exits only once every device run ended
                self._finished(device, future)


def watch_dock(dock_root: Path, *, wipe: bool, poll_seconds: float, once: bool, console: Console) -> None:
    watcher = DockWatcher(dock_root, wipe=wipe, console=console)
    previous = {sig: signal.signal(sig, watcher.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        console.print(f"watching {visible(str(dock_root))} for docked devices (Ctrl-C to stop)")
        watcher.run(poll_seconds=poll_seconds, once=once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("dock watcher stopped")
