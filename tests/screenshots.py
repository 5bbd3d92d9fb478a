"""Screenshots of the portal as an investigator sees it: ``python -m tests.screenshots [folder]`` writes
``search.png``, ``incident.png`` and ``item.png`` (1280x800) to ``docs/screenshots`` or ``folder``.

The same station, service and browser the browser tests use (``tests/portal_station.py``,
``tests/browser.py``): a throwaway station under a temporary folder, removed afterwards.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from tests.browser import running_chromium
from tests.portal_station import PROJECT_ROOT, PreparedStation, serving_portal

VIEWPORT = {"width": 1280, "height": 800}
PERSON = "ivy"
SPINNER_FADE_MS = 2000
PURPOSE = "Reviewing the arrest for the CPS file"


def take_screenshots(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="portal-screenshots-") as scratch:
        root = Path(scratch)
        with (
            serving_portal(root) as (station, server),
            running_chromium(root / "chromium-install.log") as browser,
        ):
            context = browser.new_context(base_url=server.url, viewport=VIEWPORT)
            try:
                return _walk_through(context.new_page(), station, folder)
            finally:
                context.close()


def _walk_through(page: Any, station: PreparedStation, folder: Path) -> list[Path]:
    account = station.accounts[PERSON]
    page.goto("/sign-in")
    page.locator("input[name=user]").fill(account.user)
    page.locator("input[name=password]").fill(account.password)
    page.locator("input[name=totp]").fill(account.code())
    with page.expect_navigation():
        page.locator("input[name=totp]").press("Enter")
    page.locator("[name=incident]").fill(station.incident)
    with page.expect_navigation():
        page.locator("[name=incident]").press("Enter")
    written = [_shot(page, folder / "search.png")]
    page.goto(f"/incidents/{station.incident}")
    _give_purpose(page)
    page.wait_for_function("() => [...document.images].every(img => img.complete)")
    written.append(_shot(page, folder / "incident.png"))
    page.goto(f"/items/{station.video.evidence_id}")
    if page.locator("#purpose-form").count():  # the incident's purpose stands for its items
        _give_purpose(page)
    player = page.locator("video")
    # as a person finds it: the first frame under the player's controls, once loaded; the player's
    # loading spinner fades out over a second or so after that, and nothing outside its closed shadow
    # DOM says when, so this picture (not a test) waits for it
    page.wait_for_function(
        "video => video.readyState >= 2 && video.networkState === video.NETWORK_IDLE",
        arg=player.element_handle(),
    )
    page.wait_for_timeout(SPINNER_FADE_MS)
    written.append(_shot(page, folder / "item.png"))
    return written


def _give_purpose(page: Any) -> None:
    form = page.locator("#purpose-form")
    form.locator("[name=purpose]").fill(PURPOSE)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()


def _shot(page: Any, path: Path) -> Path:
    """The page as shown, in 256 colours: the test photos are random pixels, which a full-colour PNG
    cannot compress, and the pages' text and flat colours lose nothing a reader would see."""
    picture = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def main(arguments: list[str]) -> int:
    folder = Path(arguments[0]) if arguments else PROJECT_ROOT / "docs" / "screenshots"
    for path in take_screenshots(folder):
        sys.stdout.write(f"{path} ({path.stat().st_size // 1024} KiB)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
