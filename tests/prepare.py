"""What the suite needs from outside Python, installed before it runs: ``make test`` starts this while
lint and the type check run, so the downloads overlap them instead of holding up a test worker.

One after another, never at once: Ceph RGW and Chromium both come from apt, whose locks a second
``apt-get`` would meet. Each step is the one its fixture takes when the thing is missing (as root,
under the same file lock), so a failure here is only reported: the fixture tries again, and with
``CI=true`` a test that cannot have it fails.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests import browser, oidc_provider, rgw

LOG = Path("/tmp/evidence-pipeline-test-prepare.log")


def main() -> int:
    steps: list[tuple[str, Callable[[], object]]] = [
        ("Ceph RGW", lambda: rgw.ensure_ceph_installed(LOG)),
        ("Chromium", lambda: browser.ensure_chromium(LOG)),
        ("the test OpenID Connect provider (npm ci)", oidc_provider.install_provider),
    ]
    for name, step in steps:
        started = time.monotonic()
        try:
            step()
        except Exception as err:  # reported; the fixture that needs it decides
            print(f"tests.prepare: {name} not ready ({err}); its tests will try again", file=sys.stderr)
        else:
            print(f"tests.prepare: {name} ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
