"""Chromium for the portal's browser tests: Debian's own package, driven by Playwright.

Playwright's own browser downloads are impossible on the force's closed network (and ``playwright
install`` is never run): the tests drive Debian's ``chromium`` package through Playwright's bundled
driver, which needs no network. ``ensure_chromium`` installs the package when it is missing (as root,
one installer at a time across test runs and xdist workers, as ``tests/rgw.py`` installs Ceph);
``launch`` starts it headless with the flags a closed network needs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests import debian

CHROMIUM = Path("/usr/bin/chromium")
PACKAGES = ("chromium",)
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


def ensure_chromium(log: Path) -> Path:
    """Debian's Chromium, installed first if missing: as root, one installer at a time."""
    if CHROMIUM.exists():
        return CHROMIUM
    with debian.locked(debian.INSTALL_LOCK):
        if CHROMIUM.exists():  # another worker or run installed it while this one waited
            return CHROMIUM
        if os.geteuid() != 0:
            raise BrowserUnavailable(
                f"{CHROMIUM} is missing and this is not root: run `apt-get install {' '.join(PACKAGES)}` "
                "as root"
            )
        installed = debian.install(PACKAGES, log)
        if not installed or not CHROMIUM.exists():
            raise BrowserUnavailable(f"installing {' '.join(PACKAGES)} failed:\n{debian.tail(log)}")
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
