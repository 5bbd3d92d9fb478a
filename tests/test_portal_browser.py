"""The investigators' portal in a real browser (Debian's Chromium under Playwright) against a real
``evidence serve``: signing in with password and code, finding an incident, its thumbnails, playing and
seeking its H.264 video, a device file named as markup shown as text, sessions that expire, forms that
need their CSRF token, and a download whose bytes are the original's, every access on the item's trail.

One station, one service and one browser for the module; each story a new browser context and its own
account, so no story sees another's session, purpose or TOTP code.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from evidence.settings import Settings
from storage.accounts import sessions_table
from tests.browser import BrowserUnavailable, running_chromium
from tests.portal_station import (
    HOSTILE_NAME,
    VIDEO_SECONDS,
    PortalServer,
    PreparedStation,
    serving_portal,
)

SESSION_COOKIE = "evidence_session"
PURPOSE = "Reviewing the arrest for the CPS file"
STEP_TIMEOUT_MS = 15_000
"""Longest any one step (a page, a click, a wait for the player) may take on a busy two-core machine."""


@dataclass(frozen=True)
class Portal:
    station: PreparedStation
    server: PortalServer

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with serving_portal(tmp_path_factory.mktemp("portal")) as (station, server):
        yield Portal(station, server)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        with running_chromium(tmp_path_factory.getbasetemp() / "chromium-install.log") as chromium:
            yield chromium
    except BrowserUnavailable as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Chromium is required on CI: {err}", pytrace=False)
        pytest.skip(f"no Chromium: {err}")


@pytest.fixture
def context(browser: Any, portal: Portal) -> Iterator[Any]:
    """A fresh browser profile for one story: no cookies, no cache. Any dialog fails the story."""
    fresh = browser.new_context(
        base_url=portal.url, viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    fresh.set_default_timeout(STEP_TIMEOUT_MS)
    dialogs: list[str] = []
    fresh.on(
        "page",
        lambda page: page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss())),
    )
    try:
        yield fresh
    finally:
        fresh.close()
    assert dialogs == [], f"a dialog opened: {dialogs}"


# -- steps a person takes ----------------------------------------------------------------------------


def sign_in(page: Any, portal: Portal, user: str, *, code: str | None = None) -> Any:
    page.goto("/sign-in")
    fill_in_sign_in(page, portal, user, code=code)
    return page


def fill_in_sign_in(page: Any, portal: Portal, user: str, *, code: str | None = None) -> None:
    """Type user id, password and code into the sign-in form the page shows, and send it."""
    account = portal.station.accounts[user]
    form = page.locator("form", has=page.locator("input[name=totp]"))
    form.locator("input[name=user]").fill(account.user)
    form.locator("input[name=password]").fill(account.password)
    form.locator("input[name=totp]").fill(code if code is not None else account.code())
    with page.expect_navigation():
        form.locator("button[type=submit]").click()


def give_purpose(page: Any, purpose: str = PURPOSE) -> None:
    """Answer the page's question: why this person is looking."""
    form = page.locator("#purpose-form")
    form.locator("[name=purpose]").fill(purpose)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()


def asks_purpose(page: Any) -> bool:
    return bool(page.locator("#purpose-form").count() > 0)


def open_item(page: Any, evidence_id: str) -> None:
    page.goto(f"/items/{evidence_id}")
    assert asks_purpose(page), "an item opened in a new session must ask why"
    give_purpose(page)
    assert page.url.endswith(f"/items/{evidence_id}")


def session_cookie(context: Any) -> dict[str, Any] | None:
    return next((c for c in context.cookies() if c["name"] == SESSION_COOKIE), None)


# -- signing in ----------------------------------------------------------------------------------------


def test_sign_in_with_password_and_code(context: Any, portal: Portal) -> None:
    page = sign_in(context.new_page(), portal, "ian")
    assert page.url == f"{portal.url}/search"
    cookie = session_cookie(context)
    assert cookie is not None
    # the secret never reaches a script, never leaves over plain HTTP off loopback, never rides a
    # cross-site request
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] in ("Strict", "Lax")
    assert "ian" in page.locator("header").inner_text()


def test_wrong_code_is_refused(context: Any, portal: Portal) -> None:
    page = sign_in(context.new_page(), portal, "wes", code=portal.station.accounts["wes"].wrong_code())
    assert "/sign-in" in page.url
    assert "sign-in refused" in page.locator("[role=alert]").inner_text().lower()
    assert session_cookie(context) is None
    page.goto("/search")
    assert "/sign-in" in page.url


def test_officer_may_not_open_evidence(context: Any, portal: Portal) -> None:
    page = sign_in(context.new_page(), portal, "olly")
    answer = page.goto(f"/items/{portal.station.video.evidence_id}")
    assert answer is not None and answer.status == 403
    assert page.locator("video").count() == 0 and page.locator("img[src*='/thumbnail']").count() == 0


# -- finding and seeing evidence ----------------------------------------------------------------------


def test_search_finds_the_incident_and_shows_its_thumbnails(context: Any, portal: Portal) -> None:
    page = sign_in(context.new_page(), portal, "ivy")
    search = page.locator("form.search")
    search.locator("[name=incident]").fill(portal.station.incident.lower())  # as typed, not as filed
    with page.expect_navigation():
        search.locator("button[type=submit]").click()
    results = page.locator("#results tbody tr")
    assert results.count() == len(portal.station.items)
    with page.expect_navigation():
        page.locator(f"#results a[href='/incidents/{portal.station.incident}']").first.click()
    assert asks_purpose(page), "an incident opened for the first time in a session must ask why"
    give_purpose(page)
    assert page.url.endswith(f"/incidents/{portal.station.incident}")
    thumbnails = page.locator("img[src$='/thumbnail']")
    expected = {f"/items/{item.evidence_id}/thumbnail" for item in portal.station.items}
    assert {thumbnails.nth(i).get_attribute("src") for i in range(thumbnails.count())} == expected
    page.wait_for_function("() => [...document.images].every(img => img.complete)")  # decoded or failed
    widths = page.evaluate("() => [...document.querySelectorAll('img')].map(img => img.naturalWidth)")
    assert widths and all(width > 0 for width in widths), widths
    page.reload()
    assert not asks_purpose(page), "the purpose is asked once per incident per session"


def test_h264_video_plays_and_seeks_with_a_range_request(context: Any, portal: Portal) -> None:
    video = portal.station.video
    page = sign_in(context.new_page(), portal, "vic")
    open_item(page, video.evidence_id)
    player = page.locator(f"video[src='/items/{video.evidence_id}/content']")
    assert player.count() == 1
    # A link at half the video's bitrate, as from a remote station: playing starts within a second or
    # two, while the player's own read from the start would take the video's whole length to reach the
    # middle; so the seek must fetch the middle with a Range request of its own (as it must for a body
    # camera's hundreds of megabytes on any link).
    network = context.new_cdp_session(page)
    network.send("Network.enable")
    network.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": video.size // VIDEO_SECONDS // 2,
            "uploadThroughput": -1,
        },
    )
    answers: list[tuple[str, int]] = []
    page.on(
        "response",
        lambda answer: (
            answers.append((answer.request.all_headers().get("range", ""), answer.status))
            if answer.url.endswith(f"/items/{video.evidence_id}/content")
            else None
        ),
    )
    page.reload()
    player.evaluate("video => { video.muted = true; return video.play() }")
    page.wait_for_function(
        "video => video.readyState >= 3 && video.currentTime > 0.3",
        arg=player.element_handle(),
    )
    # the player asks for ranges from the start (answers may be reported out of order)
    assert ("bytes=0-", 206) in answers and all(status == 206 for _, status in answers), answers
    first_answers = len(answers)
    middle, read = player.evaluate(
        "video => [video.duration / 2, video.buffered.end(video.buffered.length - 1)]"
    )
    assert read < middle, "the player had read to the middle before the seek: the machine stalled"
    player.evaluate("(video, to) => { video.currentTime = to }", middle)
    page.wait_for_function(
        "([video, from]) => !video.seeking && video.readyState >= 3 && video.currentTime > from + 0.5",
        arg=[player.element_handle(), middle],
    )
    starts = [
        int(header.removeprefix("bytes=").split("-")[0])
        for header, status in answers[first_answers:]
        if status == 206
    ]
    assert any(video.size / 4 < start < video.size * 3 / 4 for start in starts), (answers, video.size)


def test_device_file_named_as_markup_shows_as_text(context: Any, portal: Portal) -> None:
    page = sign_in(context.new_page(), portal, "hal")
    open_item(page, portal.station.hostile.evidence_id)
    assert page.locator("#original-name").inner_text() == HOSTILE_NAME
    # The CSP would stop the handler running anyway; the page must not even build the element.
    assert page.locator("img[src='x']").count() == 0
    page.goto(f"/incidents/{portal.station.incident}")
    give_purpose(page)
    assert page.locator("img[src='x']").count() == 0


# -- sessions and forms -------------------------------------------------------------------------------


def test_expired_session_returns_to_sign_in(context: Any, portal: Portal) -> None:
    page = sign_in(context.new_page(), portal, "iris")
    assert page.url.endswith("/search")
    expire_sessions(portal, "iris")
    incident = f"/incidents/{portal.station.incident}"
    page.goto(incident)
    assert "/sign-in" in page.url and page.locator("input[name=totp]").count() == 1
    assert page.locator("#incident-items").count() == 0
    # signing in again (this step's code is spent) goes back to the page she asked for
    fill_in_sign_in(page, portal, "iris", code=portal.station.accounts["iris"].code(steps_ahead=1))
    assert page.url == portal.url + incident


def test_post_without_csrf_token_is_refused(context: Any, portal: Portal) -> None:
    page = sign_in(context.new_page(), portal, "cyd")
    # what another site's form could make her browser send: her cookie, but not the page's token
    for form_action, fields in (
        ("/sign-out", {}),
        (f"/incidents/{portal.station.incident}/purpose", {"purpose": "a purpose someone else chose"}),
    ):
        refused = context.request.post(portal.url + form_action, form=fields, max_redirects=0)
        assert refused.status == 403, form_action
    page.goto(f"/incidents/{portal.station.incident}")
    assert asks_purpose(page), "the refused purpose was not kept"
    # the same sign-out from the portal's own form, token and all, is done
    with page.expect_navigation():
        page.locator("form[action='/sign-out'] button[type=submit]").click()
    assert "/sign-in" in page.url and session_cookie(context) is None
    page.goto("/search")
    assert "/sign-in" in page.url


def expire_sessions(portal: Portal, user: str) -> None:
    """Move the person's sessions' last use (and start) back past the idle limit in the accounts
    database, as if they had left the browser for longer than the service allows."""
    settings = Settings(data_dir=portal.station.data_dir)
    long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=settings.session_idle_minutes + 1)
    engine = sa.create_engine(settings.accounts_url)
    try:
        with engine.begin() as connection:
            moved = connection.execute(
                sessions_table.update()
                .where(sessions_table.c.user_id == user, sessions_table.c.ended_at.is_(None))
                .values(last_seen_at=long_ago, created_at=long_ago)
            )
        assert moved.rowcount == 1
    finally:
        engine.dispose()


# -- the trail ------------------------------------------------------------------------------------------


def test_download_is_the_original_and_every_access_is_on_the_trail(
    browser: Any, context: Any, portal: Portal, tmp_path: Path
) -> None:
    video = portal.station.video
    page = sign_in(context.new_page(), portal, "tom")
    page.goto(f"/incidents/{portal.station.incident}")
    give_purpose(page)
    page.wait_for_function("() => [...document.images].every(img => img.complete)")
    page.locator(f"a[href='/items/{video.evidence_id}']").click()
    page.wait_for_load_state()
    if asks_purpose(page):  # the incident's purpose may stand for its items
        give_purpose(page)
    player = page.locator("video")
    player.evaluate("video => { video.muted = true; return video.play() }")
    page.wait_for_function("video => video.currentTime > 0.3", arg=player.element_handle())
    with page.expect_download() as waiting:
        page.locator("#download").click()
    saved = tmp_path / "original.mp4"
    waiting.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == video.sha256
    mine = [row for row in trail_of(browser, portal, video.evidence_id) if row["user"] == "tom"]
    assert {row["action"] for row in mine} >= {"thumbs", "view", "play", "download"}, mine
    assert {(row["via"], row["sign_in"], row["purpose"]) for row in mine} == {
        ("portal", "password+totp", PURPOSE)
    }
    assert len({row["session"] for row in mine}) == 1


def trail_of(browser: Any, portal: Portal, evidence_id: str) -> list[dict[str, str]]:
    """The item's audit trail as a storage admin reads it: the page (its chain verified), and its CSV."""
    admin = browser.new_context(base_url=portal.url)
    try:
        page = sign_in(admin.new_page(), portal, "sam")
        page.goto(f"/audit/items/{evidence_id}")
        assert page.locator("#custody-verification").get_attribute("class") == "ok"
        assert page.locator("#trail tbody tr").count() > 1
        answer = admin.request.get(f"{portal.url}/audit/items/{evidence_id}?format=csv")
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(answer.text())))
    finally:
        admin.close()
