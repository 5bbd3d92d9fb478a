"""``evidence dock watch``: ingest every device that appears under a dock folder.

Polling rather than inotify: docks mount devices (USB mass storage, MTP bridges, network shares), and
file-system events do not reliably report a mount appearing. A device folder is ingested once per
appearance; a device that is undocked and docked again is ingested again (re-ingest stores nothing
new). Deferred files (still being written) make the device due again after a short wait.

Nobody watches an unattended dock, so nothing that happens to one device or to the dock folder may
stop it: the dock share unmounted, a device pulled out while it is looked at, a folder it cannot
read, a run that fails or finds the device busy with another run. Each is one line on the console;
the watcher goes on polling, and a device whose run did not finish is tried again, waiting longer
each time (a permanent fault must not have the station re-read a whole device every few seconds).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR
from types import FrameType

from rich.console import Console

from evidence.errors import DeviceBusy, EvidenceError, InvalidInput
from flows.console import visible, visible_message
from flows.ingest import IngestReport

log = logging.getLogger(__name__)
MAX_DEVICES_AT_ONCE = 4
RETRY_FIRST_SECONDS = 30.0
"""A device whose run did not finish (busy, failed, files left on it) is tried again after this..."""
RETRY_LONGEST_SECONDS = 30 * 60.0
"""...doubling each time it still does not finish, up to this."""


@dataclass(frozen=True)
class Docked:
    """One appearance of a device folder (its inode changes when it is mounted again)."""

    path: Path
    inode: int


def docked_devices(dock_root: Path) -> tuple[set[Docked], list[str]]:
    """The device folders under the dock now, and what could not be examined. Raises ``OSError``
    when the dock folder itself cannot be listed (an unmounted share)."""
    found, problems = set(), []
    for entry in dock_root.iterdir():
        try:
            # not following links: a link under the dock root is not a device, and following it could
            # ingest any folder
            info = entry.lstat()
        except FileNotFoundError:
            continue  # undocked between the listing and this look: the device is simply not here
        except OSError as err:
            problems.append(f"{entry.name}: cannot be examined: {err.strerror or err}")
            continue
        if S_ISDIR(info.st_mode):
            found.add(Docked(entry, info.st_ino))
    return found, problems


def ingest_docked(device_dir: Path, *, wipe: bool) -> IngestReport:
    from flows.run import run_ingest

    return run_ingest(device_dir, device_serial=None, officer_id=None, wipe=wipe, quiet=True)


class DockWatcher:
    def __init__(
        self,
        dock_root: Path,
        *,
        wipe: bool,
        console: Console,
        ingest: Callable[[Path], IngestReport] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not dock_root.is_dir():
            raise InvalidInput(f"{dock_root} is not a directory: give the folder devices are mounted under")
        self.dock_root = dock_root
        self._shown_root = visible(str(dock_root))
        self.wipe = wipe
        self.console = console
        self.stopping = threading.Event()
        self._ingest_device = ingest or functools.partial(ingest_docked, wipe=wipe)
        self._clock = clock
        self._done: set[Docked] = set()
        self._running: dict[Docked, Future[IngestReport]] = {}
        self._retry: dict[Docked, tuple[float, float]] = {}  # device -> (when to try again, wait before)
        self._problems: set[str] = set()  # said once, not at every poll
        self._dock_unreadable = False
        self._ending = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            raise KeyboardInterrupt  # second signal: stop now; re-running finishes the job
        self.console.print("stopping: finishing devices in progress (signal again to stop at once)")
        self.stopping.set()

    def poll(self, pool: Executor) -> None:
        for device, future in list(self._running.items()):
            if future.done():
                del self._running[device]
                self._finished(device, future)
        try:
            present, problems = docked_devices(self.dock_root)
        except OSError as err:
            if not self._dock_unreadable:
                self.console.print(
                    f"dock {self._shown_root} cannot be read: {visible_message(str(err.strerror or err))}; "
                    "still watching for it"
                )
                self._dock_unreadable = True
            return  # what is known of the devices stands until the dock can be read again
        if self._dock_unreadable:
            self.console.print(f"dock {self._shown_root} can be read again")
            self._dock_unreadable = False
        for problem in sorted(set(problems) - self._problems):
            self.console.print(f"dock {self._shown_root}: {visible_message(problem)}")
        self._problems = set(problems)
        self._done &= present  # undocked devices are forgotten, so docking again triggers a new run
        self._retry = {device: due for device, due in self._retry.items() if device in present}
        now = self._clock()
        for device in sorted(present - self._done - self._running.keys(), key=lambda d: d.path.name):
            if device in self._retry:
                if now < self._retry[device][0]:
                    continue
                self.console.print(f"device {visible(device.path.name)}: ingesting again")
            else:
                self.console.print(f"device docked: {visible(device.path.name)}; ingesting")
            # in a copy of the watcher's context: its Prefect session (one warm client) serves every run
            run_in_context = contextvars.copy_context().run
            self._running[device] = pool.submit(run_in_context, self._ingest_device, device.path)

    def _finished(self, device: Docked, future: Future[IngestReport]) -> None:
        name = visible(device.path.name)
        try:
            report = future.result()
        except DeviceBusy as err:
            self.console.print(f"device {name}: busy: {visible_message(str(err))}; {self._try_again(device)}")
            return
        except EvidenceError as err:
            self.console.print(
                f"device {name}: failed: {visible_message(str(err))}; {self._try_again(device)}"
            )
            return
        except Exception as err:  # a fault in one device's run must not stop the dock
            log.debug("ingest of docked device %s failed", name, exc_info=True)
            self.console.print(
                f"device {name}: failed unexpectedly ({type(err).__name__}: {visible_message(str(err))}); "
                f"{self._try_again(device)}"
            )
            return
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items())) or "empty"
        if not report.complete:
            self.console.print(f"device {name}: {counts}; {self._try_again(device)}")
            return
        self.console.print(f"device {name}: {counts}")
        self._retry.pop(device, None)
        if not report.by_status("deferred"):
            self._done.add(device)

    def _try_again(self, device: Docked) -> str:
        if self._ending:
            return "the watcher's next start tries it again"
        waited = self._retry.get(device, (0.0, 0.0))[1]
        wait = min(waited * 2, RETRY_LONGEST_SECONDS) if waited else RETRY_FIRST_SECONDS
        self._retry[device] = (self._clock() + wait, wait)
        return f"trying again in {wait:.0f} s"

    def run(self, *, poll_seconds: float, once: bool) -> None:
        with ThreadPoolExecutor(max_workers=MAX_DEVICES_AT_ONCE, thread_name_prefix="dock") as pool:
            while not self.stopping.is_set():
                try:
                    self.poll(pool)
                except Exception as err:  # the last guard: an unattended dock keeps watching
                    log.debug("dock poll failed", exc_info=True)
                    self.console.print(
                        f"dock {self._shown_root}: {type(err).__name__}: {visible_message(str(err))}; still watching"
                    )
                if once:
                    break
                self.stopping.wait(poll_seconds)
            self._ending = True
            for device, future in list(self._running.items()):
                future.exception()  # wait, so the process exits only once every device run ended
                self._finished(device, future)


def watch_dock(dock_root: Path, *, wipe: bool, poll_seconds: float, once: bool, console: Console) -> None:
    from flows.run import prefect_session, quiet_prefect

    watcher = DockWatcher(dock_root, wipe=wipe, console=console)
    quiet_prefect()
    previous = {sig: signal.signal(sig, watcher.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Prefect and the flow are imported and the client started once, here, not in a device's
        # time; the session opens without asking the server, so a server that is down fails only the
        # runs (tried again later), never the watcher
        with prefect_session():
            import flows.ingest_flow  # noqa: F401

            console.print(f"watching {visible(str(dock_root))} for docked devices (Ctrl-C to stop)")
            watcher.run(poll_seconds=poll_seconds, once=once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("dock watcher stopped")
