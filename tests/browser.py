"""Chromium for the portal's browser tests: Debian's own package, driven by Playwright.

Playwright's own browser downloads are impossible on the force's closed network (and ``playwright
install`` is never run): the tests drive Debian's ``chromium`` package through Playwright's bundled
driver, which needs no network. ``ensure_chromium`` installs the package when it is missing (as root,
one installer at a time across test runs and xdist workers, as ``tests/rgw.py`` installs Ceph);
``launch`` starts it headless with the flags a closed network needs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
PACKAGES = ("chromium",)
INSTALL_LOCK = Path("/tmp/evidence-pipeline-chromium-install.lock")
LAUNCH_ARGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root on CI, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home (variations, component updates, sync) at start-up; on a
    # closed network those connections are refused and the browser stalls or logs errors.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class BrowserUnavailable(Exception):
    """Chromium could not be installed or started; the message says why."""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` between processes (released by the kernel if its holder dies)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_chromium(log: Path) -> Path:
    """Debian's Chromium, installed first if missing: as root, one installer at a time."""
    if CHROMIUM.exists():
        return CHROMIUM
    with _locked(INSTALL_LOCK):
        if CHROMIUM.exists():  # another worker or run installed it while this one waited
            return CHROMIUM
        if os.geteuid() != 0:
            raise BrowserUnavailable(
                f"{CHROMIUM} is missing and this is not root: run `apt-get install {' '.join(PACKAGES)}` "
                "as root"
            )
        environment = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", *PACKAGES]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as output:

            def apt(command: list[str]) -> bool:
                done = subprocess.run(
                    command, stdout=output, stderr=subprocess.STDOUT, env=environment, check=False
                )
                return done.returncode == 0

            # the package lists may be missing or stale on a fresh machine: update only if needed
            installed = apt(install) or (apt(["apt-get", "update", "-q"]) and apt(install))
        if not installed or not CHROMIUM.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise BrowserUnavailable(f"installing {' '.join(PACKAGES)} failed:\n{tail}")
    return CHROMIUM


def launch(playwright: Any, log: Path) -> Any:
    """Headless Debian Chromium under Playwright (``playwright.sync_api.Browser``)."""
    executable = ensure_chromium(log)
    try:
        return playwright.chromium.launch(executable_path=str(executable), args=list(LAUNCH_ARGS))
    except Exception as err:  # Playwright's own Error: the driver's message names what failed
        raise BrowserUnavailable(f"{executable} did not start under Playwright: {err}") from err


@contextlib.contextmanager
def running_chromium(log: Path) -> Iterator[Any]:
    """Playwright's driver and one headless Chromium, both ended on leaving."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright, log)
        try:
            yield browser
        finally:
            browser.close()
